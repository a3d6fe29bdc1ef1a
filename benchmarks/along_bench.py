"""A slow materialized view over a deferred rebuild: what its readers wait for during --pending.

A (``defer_rebuild = True``) groups a table of BENCH_ROWS rows (default 100,000); B reads A and
sleeps BENCH_SLEEP seconds (default 2) in its query (``pg_sleep``), as a costly view would. Each
round changes A's SQL, syncs (A's new version waits; B waits along with it), then runs
complete_pending() (what `refresh_pgviews --pending` runs) while a reader session selects from B
in a loop; it reports the longest single read of B during the run, B's populate time and the
swap's time (the run's wall time less the populations). Two layouts, each in a process and a
database of its own: B in the current schema (``along``: it waits along, its query runs in its
own populate, outside the swap) and B in another schema (``other``: it cannot wait along, it is
re-created inside the swap, under its locks, which is how every reader of a deferred rebuild was
completed before). Medians of BENCH_REPS rounds (default 3).

    python benchmarks/along_bench.py            # both layouts, the server named by PG* variables

Environment: PGHOST/PGPORT/PGUSER, BENCH_ROWS, BENCH_SLEEP, BENCH_REPS, BENCH_LAYOUT (along or
other; unset: both, one after the other), PGVIEWS_DB_SUFFIX.
"""

from __future__ import annotations

import io
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg
from benchproject import admin, fresh_database, matview, setup_django, write_app, write_settings

ROWS = int(os.environ.get("BENCH_ROWS", "100000"))
SLEEP = float(os.environ.get("BENCH_SLEEP", "2"))
REPS = int(os.environ.get("BENCH_REPS", "3"))
SUFFIX = os.environ.get("PGVIEWS_DB_SUFFIX", "")
LAYOUT = os.environ.get("BENCH_LAYOUT", "")
DB = f"pgviews_c_ab_{LAYOUT}{SUFFIX}"
TMP = Path(tempfile.mkdtemp(prefix="bench_along_"))


def a_sql(version: int) -> str:
    return f"SELECT k % 1000 AS g, count(*) AS n, sum(v + {version}) AS s FROM ab_t GROUP BY 1"


def write_project() -> None:
    b_sql = f"SELECT a.g, a.n, a.s FROM ab_a a, (SELECT pg_catalog.pg_sleep({SLEEP}) AS z) AS slow"
    table = "ab_b" if LAYOUT == "along" else "ab_other.ab_b"
    write_app(
        TMP,
        "ab",
        matview("A", a_sql(0), "ab_a", "defer_rebuild = True")
        + matview("B", b_sql, table, "dependencies = ['ab.A']"),
    )
    write_settings(TMP, "ab", DB)


class Reader(threading.Thread):
    """Selects from one table in a loop until stopped; keeps the longest single read."""

    def __init__(self, table: str) -> None:
        super().__init__()
        self.table, self.longest, self.reads = table, 0.0, 0
        self.stop = threading.Event()

    def run(self) -> None:
        with psycopg.connect(dbname=DB, autocommit=True) as c:
            while not self.stop.is_set():
                t = time.perf_counter()
                c.execute(f"SELECT count(*) FROM {self.table}").fetchone()
                self.longest = max(self.longest, time.perf_counter() - t)
                self.reads += 1


def main() -> None:
    if not LAYOUT:
        import subprocess

        for layout in ("along", "other"):
            env = dict(os.environ, BENCH_LAYOUT=layout)
            subprocess.run([sys.executable, __file__], env=env, check=True)
        return
    write_project()
    fresh_database(
        DB,
        "CREATE SCHEMA ab_other; CREATE TABLE ab_t (k int, v int); INSERT INTO ab_t "
        f"SELECT g, g % 7 FROM generate_series(1, {ROWS}) g; ANALYZE ab_t",
    )
    setup_django(TMP, "ab")
    from django.apps import apps
    from django.core.management import call_command
    from django.db import connection

    from django_pgviews_c.pending import complete_pending
    from django_pgviews_c.sync import sync_pgviews

    call_command("migrate", "--run-syncdb", verbosity=0, stdout=io.StringIO())
    model_a = apps.get_model("ab", "A")
    with psycopg.connect(dbname=DB, autocommit=True) as c:
        version = c.execute("SHOW server_version").fetchone()[0]
    print(f"PostgreSQL {version}; B sleeps {SLEEP} s over A ({ROWS} rows); medians of {REPS} rounds")
    rows: dict[str, dict[str, list[float]]] = {}
    for rep in range(1, REPS + 1):
        model_a.sql = a_sql(rep)
        [result] = sync_pgviews(verbosity=0)
        assert result.states["ab.A"] == "pending rebuild", result.states
        along = LAYOUT == "along"
        assert result.states["ab.B"] == ("pending rebuild" if along else "in sync"), result.reasons
        reader = Reader("ab_b" if along else "ab_other.ab_b")
        reader.start()
        t = time.perf_counter()
        done = complete_pending(verbosity=0)
        wall = time.perf_counter() - t
        reader.stop.set()
        reader.join()
        assert sorted(done.swapped) == (["ab.A", "ab.B"] if along else ["ab.A"]), done
        assert not done.failed, done
        swap = wall - sum(seconds for seconds, _ in done.timings.values())
        label = "B waits along" if along else "B in another schema (re-created in the swap)"
        got = rows.setdefault(label, {"longest read of B": [], "swap": [], "B populate": [], "wall": []})
        got["longest read of B"].append(reader.longest)
        got["swap"].append(swap)
        got["B populate"].append(done.timings["ab.B"][0] if along else 0.0)
        got["wall"].append(wall)
    for label, got in rows.items():
        parts = ", ".join(f"{k} {statistics.median(v):.3f} s" for k, v in got.items())
        print(f"{label}: {parts}")
    connection.close()
    admin(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')


if __name__ == "__main__":
    main()
