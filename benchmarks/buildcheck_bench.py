"""What the check after a renaming migrate costs (django_pgviews_c/buildcheck.py): every view
the sync kept is built beside itself from its declaration in a transaction that is rolled back.
Medians of BENCH_REPS runs (default 5) for N declared views (half plain views, half materialized
views, over 10 tables of BENCH_ROWS rows; each declaration is built as a plain view), all
buildable (one round trip per 400 views), and after a column that every tenth view reads was
renamed (a refused batch is replayed one view at a time, each under a savepoint).

    python benchmarks/buildcheck_bench.py             # N = 100, 1000
    python benchmarks/buildcheck_bench.py 100 3000    # other sizes

Environment: PGHOST/PGPORT/PGUSER, BENCH_REPS, BENCH_ROWS (default 10000), PGVIEWS_DB_SUFFIX
(keeps the database apart from other runs on the same server). Each size runs in a process of
its own (the models of a project are declared once per process).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPS = int(os.environ.get("BENCH_REPS", "5"))
ROWS = int(os.environ.get("BENCH_ROWS", "10000"))
SUFFIX = os.environ.get("PGVIEWS_DB_SUFFIX", "")
DB = "bench_buildcheck" + SUFFIX
TABLES = 10
ROOT = Path(__file__).resolve().parent.parent


def write_app(path: Path, n: int) -> None:
    app = path / "bc"
    app.mkdir()
    (app / "__init__.py").write_text("")
    lines = ["from django.db import models", "from django_pgviews_c import view as pg", ""]
    for i in range(n):
        kind = "MaterializedView" if i % 2 else "View"
        lines += [
            f"class V{i}(pg.{kind}):",
            f"    sql = 'SELECT k % 100 AS g, count(*) AS n, sum(v) AS s FROM bc_t{i % TABLES} GROUP BY 1'",
            "    g = models.IntegerField(primary_key=True)",
            "    n = models.BigIntegerField()",
            "    class Meta:",
            f"        db_table = 'bc_v{i}'",
            "        managed = False",
            "",
        ]
    (app / "models.py").write_text("\n".join(lines))


def run_size(n: int) -> None:
    import psycopg

    admin = {
        "host": os.environ.get("PGHOST", "127.0.0.1"),
        "port": os.environ.get("PGPORT", "5432"),
        "user": os.environ.get("PGUSER", "postgres"),
    }
    with psycopg.connect(dbname="postgres", autocommit=True, **admin) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB}")
        conn.execute(f"CREATE DATABASE {DB}")
    try:
        _measure(n, admin)
    finally:
        with psycopg.connect(dbname="postgres", autocommit=True, **admin) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")


def _measure(n: int, admin: dict[str, str]) -> None:
    import django
    from django.conf import settings

    tmp = Path(tempfile.mkdtemp(prefix="bench_buildcheck_"))
    write_app(tmp, n)
    sys.path.insert(0, str(tmp))
    settings.configure(
        INSTALLED_APPS=["django_pgviews_c", "bc"],
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": DB,
                **{k.upper(): v for k, v in admin.items()},
            }
        },
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        PGVIEWS_HISTORY=False,
    )
    django.setup()
    from django.db import connection

    from django_pgviews_c.buildcheck import unbuildable
    from django_pgviews_c.declarations import view_models
    from django_pgviews_c.sync import sync_pgviews

    with connection.cursor() as cursor:
        for t in range(TABLES):
            cursor.execute(
                f"CREATE TABLE bc_t{t} AS SELECT g AS k, g % 7 AS v FROM generate_series(1, {ROWS}) g"
            )
    sync_pgviews("default", verbosity=0)
    models = view_models()
    known = {m._meta.label for m in models}

    def timed() -> tuple[float, int]:
        times, found = [], 0
        for _ in range(REPS):
            started = time.perf_counter()
            found = len(unbuildable(connection, models, known))
            times.append(time.perf_counter() - started)
        return statistics.median(times), found

    from django_pgviews_c.declarations import Declarations

    started = time.perf_counter()
    for _ in range(REPS):
        Declarations(models, connection, known)
    decls_ms = (time.perf_counter() - started) / REPS * 1000
    ok, found_ok = timed()
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE bc_t0 RENAME COLUMN v TO w")  # every 10th view reads it
    broken, found_broken = timed()
    print(
        f"{n:>6} views: all build {ok * 1000:8.1f} ms ({found_ok} refused) | "
        f"after a rename {broken * 1000:8.1f} ms ({found_broken} refused, the batch replayed); "
        f"of which reading the declarations {decls_ms:6.1f} ms"
    )


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--size":
        run_size(int(sys.argv[2]))
        return
    sizes = [int(a) for a in sys.argv[1:]] or [100, 1000]
    print(f"check of the declarations after a renaming migrate, median of {REPS} runs")
    for n in sizes:
        subprocess.run([sys.executable, __file__, "--size", str(n)], check=True, cwd=ROOT)


if __name__ == "__main__":
    main()
