"""Staleness benchmarks, side by side (medians of BENCH_REPS runs, default 5):

1. A periodic refresh of 200 materialized views reading 50 tables, 5 of which changed:
   `refresh_pgviews --stale` against a full `refresh_pgviews` (both --jobs 1 and --jobs 2), and
   against django-pgviews-redux's `refresh_pgviews` (REDUX_PYTHON, default .venv-bench/bin/python,
   which `bash benchmarks/run.sh` creates; skipped when it has no django_pgviews).
2. The staleness check (one catalog query plus the history read) for 200 and 2,000 views.
3. What recording the history adds to Model.refresh() on a tiny view: PGVIEWS_HISTORY off, on
   the ordinary way (capture, refresh, record: three round trips, as before the one-trip path;
   what a refresh inside a transaction still does) and on in one round trip (outside one), both
   as it is (calling the functions of migration 0004) and with the statements sent as text (as
   where those functions are missing). benchmarks/record_breakdown.py takes it apart.
4. The write cost of the exact staleness mode: N single-row INSERTs and UPDATEs on a table
   without and with its trigger, each statement its own transaction and all in one transaction.

    python benchmarks/freshness_bench.py          # the server named by PG* variables
    python benchmarks/freshness_bench.py 3 4      # some sections only

Environment: PGHOST/PGPORT/PGUSER, BENCH_REPS, BENCH_ROWS (rows per table, default 20000),
BENCH_WRITES (statements per write run, default 2000), PGVIEWS_DB_SUFFIX (keeps the databases
apart from other runs on the same server).
"""

from __future__ import annotations

import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

REPS = int(os.environ.get("BENCH_REPS", "5"))
WRITES = int(os.environ.get("BENCH_WRITES", "2000"))
SECTIONS = set(sys.argv[1:]) or {"1", "2", "3", "4"}
ROWS = int(os.environ.get("BENCH_ROWS", "20000"))
SUFFIX = os.environ.get("PGVIEWS_DB_SUFFIX", "")
TABLES = 50
ROOT = Path(__file__).resolve().parent.parent
TMP = Path(tempfile.mkdtemp(prefix="bench_fresh_"))


def write_project(views_big: int, views_small: int) -> None:
    """An app `fb` with `views_big` matviews over 50 tables (fbig) and a database with
    `views_small` tiny ones for the check at scale (fsmall), plus one tiny matview (fbtiny)."""
    app = TMP / "fb"
    app.mkdir()
    (app / "__init__.py").write_text("")
    lines = [
        "from django.db import models",
        "from django_pgviews_c import view as pg",
        "",
        "class Tiny(pg.MaterializedView):",
        "    sql = 'SELECT 1 AS x'",
        "    x = models.IntegerField(primary_key=True)",
        "    class Meta:",
        "        db_table = 'fbtiny'",
        "        managed = False",
        "",
        "class Exact(pg.MaterializedView):",
        "    staleness = 'exact'",
        "    sql = 'SELECT count(*) AS n FROM fb_exact'",
        "    n = models.BigIntegerField(primary_key=True)",
        "    class Meta:",
        "        db_table = 'fbexact'",
        "        managed = False",
    ]
    for prefix, count in (("Big", views_big), ("Small", views_small)):
        for i in range(count):
            table = f"fb_t{i % TABLES}"
            sql = (
                f"SELECT k % 100 AS g, count(*) AS n, sum(v) AS s FROM {table} GROUP BY 1"
                if prefix == "Big"
                else f"SELECT count(*) AS n FROM {table}"
            )
            lines += [
                f"class {prefix}{i}(pg.MaterializedView):",
                f"    sql = {sql!r}",
                "    n = models.BigIntegerField(primary_key=True)",
                "    class Meta:",
                f"        db_table = '{prefix.lower()}_mv{i}'",
                "        managed = False",
            ]
    (app / "models.py").write_text("\n".join(lines) + "\n")
    # The same 200 materialized views declared for django-pgviews-redux (same tables), whose
    # refresh_pgviews runs in its own process (REDUX_PYTHON: a venv with django_pgviews).
    redux = TMP / "fbr"
    redux.mkdir()
    (redux / "__init__.py").write_text("")
    redux_lines = "\n".join(lines).replace("django_pgviews_c", "django_pgviews")
    (redux / "models.py").write_text(redux_lines.split("class Small0(")[0] + "\n")
    (TMP / "fbr_settings.py").write_text(
        "from fb_settings import DATABASES  # noqa\n"
        "DATABASES = {'default': DATABASES['default']}\n"
        "INSTALLED_APPS = ['django.contrib.contenttypes', 'django_pgviews', 'fbr']\n"
        "MATERIALIZED_VIEWS_DISABLE_SYNC_ON_MIGRATE = True\n"
        "SECRET_KEY = 'bench'\nUSE_TZ = True\nDEFAULT_AUTO_FIELD = 'django.db.models.AutoField'\n"
    )
    (TMP / "fbr_run.py").write_text(
        "import io, os, sys, time\n"
        "os.environ['DJANGO_SETTINGS_MODULE'] = 'fbr_settings'\n"
        "import django\ndjango.setup()\n"
        "from django.core.management import call_command\n"
        "for _ in range(int(sys.argv[1])):\n"
        "    t = time.perf_counter()\n"
        "    call_command('refresh_pgviews', stdout=io.StringIO())\n"
        "    print(time.perf_counter() - t, flush=True)\n"
    )
    (TMP / "fb_router.py").write_text(
        "class Router:\n"
        "    def allow_migrate(self, db, app_label, model_name=None, **hints):\n"
        "        if app_label != 'fb' or model_name in ('tiny', 'exact'):\n"
        "            return None if app_label != 'fb' else db == 'default'\n"
        "        return db == ('default' if model_name.startswith('big') else 'small')\n"
    )
    common = {"ENGINE": "django.db.backends.postgresql", "USER": os.environ.get("PGUSER", "postgres"),
              "HOST": os.environ.get("PGHOST", "127.0.0.1"), "PORT": os.environ.get("PGPORT", "5432")}  # fmt: skip
    (TMP / "fb_settings.py").write_text(
        f"DATABASES = {{'default': {dict(common, NAME='pgviews_c_fb' + SUFFIX)!r},\n"
        f"             'small': {dict(common, NAME='pgviews_c_fbsmall' + SUFFIX)!r}}}\n"
        "DATABASE_ROUTERS = ['fb_router.Router']\n"
        "INSTALLED_APPS = ['django.contrib.contenttypes', 'django_pgviews_c', 'fb']\n"
        "SECRET_KEY = 'bench'\nUSE_TZ = True\nDEFAULT_AUTO_FIELD = 'django.db.models.AutoField'\n"
    )


def admin(sql: str, dbname: str = "postgres") -> None:
    with psycopg.connect(dbname=dbname, autocommit=True) as c:
        c.execute(sql)


def median_of(fn, reps: int = REPS) -> tuple[float, list[float]]:
    runs = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t)
    return statistics.median(runs), runs


def main() -> None:
    write_project(200 if SECTIONS & {"1", "2"} else 0, 2000 if "2" in SECTIONS else 0)
    for db in ("pgviews_c_fb", "pgviews_c_fbsmall"):
        admin(f'DROP DATABASE IF EXISTS "{db}{SUFFIX}" WITH (FORCE)')
        admin(f'CREATE DATABASE "{db}{SUFFIX}"')
        tables = "".join(
            f"CREATE TABLE fb_t{i} (k int, v int); "
            f"INSERT INTO fb_t{i} SELECT g, g % 7 FROM generate_series(1, {ROWS if db.endswith('fb') else 10}) g; "
            for i in range(TABLES)
        )
        tables += "CREATE TABLE fb_exact (k int PRIMARY KEY, v int); CREATE TABLE fb_plain (k int PRIMARY KEY, v int); "
        admin(tables, db + SUFFIX)
    sys.path.insert(0, str(TMP))
    os.environ["DJANGO_SETTINGS_MODULE"] = "fb_settings"
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    for alias in ("default", "small"):
        call_command("migrate", "--run-syncdb", database=alias, verbosity=0)
    quiet = {"stdout": io.StringIO()}
    call_command("refresh_pgviews", **quiet)  # every view gets its first record
    call_command("refresh_pgviews", "--database", "small", **quiet)
    with psycopg.connect(dbname="pgviews_c_fb" + SUFFIX, autocommit=True) as c:
        version = c.execute("SHOW server_version").fetchone()[0]

    def change_five() -> None:
        before = _write_counters()
        with psycopg.connect(dbname="pgviews_c_fb" + SUFFIX, autocommit=True) as c:
            for i in CHANGED:
                c.execute("SELECT pg_stat_force_next_flush()")
                c.execute(f"UPDATE fb_t{i} SET v = v + 1 WHERE k <= 10")
        _wait_for_counters(before)

    print(f"PostgreSQL {version}; {ROWS} rows per table; medians of {REPS} runs")
    if "1" in SECTIONS:
        section_1(change_five, quiet)
    if "2" in SECTIONS:
        section_2()
    if "3" in SECTIONS:
        section_3()
    if "4" in SECTIONS:
        section_4()
    for db in ("pgviews_c_fb", "pgviews_c_fbsmall"):
        connection.close()
        from django.db import connections

        connections["small"].close()
        admin(f'DROP DATABASE IF EXISTS "{db}{SUFFIX}" WITH (FORCE)')


CHANGED = (0, 10, 20, 30, 40)  # the tables change_five writes: 20 of the 200 views read them
_COUNTERS_SQL = (
    "SELECT relname, n_tup_ins + n_tup_upd + n_tup_del FROM pg_stat_user_tables WHERE relname = ANY(%s)"
)


def _write_counters() -> dict[str, int]:
    """The write counters of the changed tables, as the statistics show them now."""
    with psycopg.connect(dbname="pgviews_c_fb" + SUFFIX, autocommit=True) as c:
        c.execute("SELECT pg_stat_clear_snapshot()")
        return dict(c.execute(_COUNTERS_SQL, [[f"fb_t{i}" for i in CHANGED]]).fetchall())


def _wait_for_counters(before: dict[str, int], bound: float = 30.0) -> None:
    """Wait until the statistics show the writes on every changed table (the writing session
    flushes its counters as it disconnects, which another backend sees a moment later), so that
    the timed pass finds all 20 views stale; bounded, then it says which table lags."""
    deadline = time.monotonic() + bound
    while True:
        now = _write_counters()
        behind = [t for t, n in before.items() if now.get(t, 0) <= n]
        if not behind:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the statistics did not show the writes on {behind} within {bound:.0f} s")
        time.sleep(0.005)


def section_1(change_five, quiet) -> None:
    from django.core.management import call_command

    print()
    print("1. periodic refresh, 200 matviews over 50 tables, 5 tables changed (20 views stale)")
    for jobs in (1, 2):

        def stale_run(jobs=jobs):
            out = io.StringIO()
            call_command("refresh_pgviews", "--stale", "--jobs", str(jobs), stdout=out)
            assert "refreshed 20 materialized views" in out.getvalue(), out.getvalue()[-300:]

        # Interleaved rounds (a --stale pass, then a full refresh): the machine's load moves both
        # alike, so each round's ratio says more than a ratio of two medians taken minutes apart.
        stale_times, full_times = [], []
        for _ in range(REPS):
            change_five()
            t = time.perf_counter()
            stale_run()
            stale_times.append(time.perf_counter() - t)
            t = time.perf_counter()
            call_command("refresh_pgviews", "--jobs", str(jobs), **quiet)
            full_times.append(time.perf_counter() - t)
        full, stale = statistics.median(full_times), statistics.median(stale_times)
        ratios = sorted(s / f for s, f in zip(stale_times, full_times, strict=True))
        print(
            f"   --jobs {jobs}: full refresh {full:7.3f}s   --stale {stale:7.3f}s   ratio {stale / full:5.3f}x"
            f"   (rounds: median {statistics.median(ratios):5.3f}x, max {ratios[-1]:5.3f}x)"
        )
        if jobs == 1:
            stale_jobs1 = stale
    redux_python = os.environ.get("REDUX_PYTHON", str(ROOT / ".venv-bench" / "bin" / "python"))
    probe = (
        subprocess.run([redux_python, "-c", "import django_pgviews"], capture_output=True)
        if Path(redux_python).exists()
        else None
    )
    if probe is not None and probe.returncode == 0:
        done = subprocess.run(
            [redux_python, str(TMP / "fbr_run.py"), str(REPS)],
            cwd=TMP, capture_output=True, text=True, check=True,
            env={**os.environ, "PYTHONPATH": str(TMP)},
        )  # fmt: skip
        redux = statistics.median(float(x) for x in done.stdout.split())
        print(
            f"   django-pgviews-redux 1.3 refresh_pgviews (full, serial) {redux:7.3f}s; "
            f"our --stale --jobs 1 is {stale_jobs1 / redux:5.3f}x of it"
        )
    else:
        print(f"   django-pgviews-redux: not installed for {redux_python} (bash benchmarks/run.sh makes one)")


def section_2() -> None:
    from django_pgviews_c.freshness import freshness

    print()
    print("2. the staleness check (catalog query + history read), every view fresh")
    for alias, n in (("default", 200), ("small", 2000)):
        freshness(using=alias)
        check, _ = median_of(lambda alias=alias: freshness(using=alias), reps=max(REPS, 10))
        print(f"   {n:5d} views: {check * 1000:8.1f} ms")


def section_3() -> None:
    from django.db import connection
    from django.test.utils import override_settings
    from fb.models import Tiny

    from django_pgviews_c import history, historyfn

    print()
    print("3. Model.refresh() on a tiny view: history off, on the ordinary way, on in one trip")
    connection.ensure_connection()
    one_trip = history.refresh_recorded
    with_functions = historyfn.uses_functions
    results: dict[str, list[float]] = {}
    variants = {
        "off": (False, one_trip, with_functions),
        "ordinary": (True, lambda *a, **k: False, with_functions),
        "one trip": (True, one_trip, with_functions),
        "one trip, text": (True, one_trip, lambda connection: False),
    }
    for _ in range(max(REPS, 7)):  # interleaved rounds of 100: the machine's load moves
        for name, (on, path, functions) in variants.items():
            history.refresh_recorded = path
            historyfn.uses_functions = functions
            with override_settings(PGVIEWS_HISTORY=on):
                t = time.perf_counter()
                for _ in range(100):
                    Tiny.refresh()
                results.setdefault(name, []).append((time.perf_counter() - t) / 100)
    history.refresh_recorded = one_trip
    historyfn.uses_functions = with_functions
    for how, pick in (("best round", min), ("median round", statistics.median)):
        best = {name: pick(times) for name, times in results.items()}
        off = best["off"]
        print(
            f"   {how:12s}: history off {off * 1000:6.3f} ms   ordinary (3 round trips) "
            f"{best['ordinary'] * 1000:6.3f} ms ({best['ordinary'] / off - 1:+.0%})   "
            f"one trip {best['one trip'] * 1000:6.3f} ms ({best['one trip'] / off - 1:+.0%})   "
            f"one trip, statements as text {best['one trip, text'] * 1000:6.3f} ms "
            f"({best['one trip, text'] / off - 1:+.0%})"
        )
    ratios = {
        name: statistics.median(t / o for t, o in zip(times, results["off"], strict=True)) - 1
        for name, times in results.items()
        if name != "off"
    }
    print(
        "   median of each round's ratio to history off: "
        + ", ".join(f"{n} {r:+.0%}" for n, r in ratios.items())
    )


def section_4() -> None:
    from django.core.management import call_command

    from django_pgviews_c.models import ExactCounter

    print()
    print(f"4. exact mode's write cost: {WRITES} single-row statements on a table without / with its trigger")
    call_command("sync_pgviews", verbosity=0)  # the trigger on fb_exact (Exact reads it)
    with psycopg.connect(dbname="pgviews_c_fb" + SUFFIX, autocommit=True) as c:
        assert (
            c.execute(
                "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'fb_exact'::regclass AND tgname = 'pgviews_c_exact'"
            ).fetchone()[0]
            == 1
        )
        assert (
            c.execute("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'fb_plain'::regclass").fetchone()[0]
            == 0
        )

        def run(table: str, kind: str, one_transaction: bool) -> float:
            c.execute(f"TRUNCATE {table}")
            if kind == "UPDATE":
                c.execute(f"INSERT INTO {table} SELECT g, 0 FROM generate_series(1, {WRITES}) g")
            sql = (
                f"INSERT INTO {table} VALUES (%s, 0)"
                if kind == "INSERT"
                else f"UPDATE {table} SET v = v + 1 WHERE k = %s"
            )
            t = time.perf_counter()
            if one_transaction:
                with c.transaction():
                    for i in range(1, WRITES + 1):
                        c.execute(sql, [i])
            else:
                for i in range(1, WRITES + 1):
                    c.execute(sql, [i])
            return time.perf_counter() - t

        for one_transaction in (False, True):
            for kind in ("INSERT", "UPDATE"):
                times: dict[str, list[float]] = {"fb_plain": [], "fb_exact": []}
                for _ in range(REPS):  # interleaved
                    for table in times:
                        times[table].append(run(table, kind, one_transaction))
                plain, exact = (statistics.median(times[t]) for t in ("fb_plain", "fb_exact"))
                how = "in one transaction" if one_transaction else "each its own transaction"
                print(
                    f"   {kind:6s} {how:25s} without {plain / WRITES * 1e6:7.1f} us   "
                    f"with {exact / WRITES * 1e6:7.1f} us per statement   ratio {exact / plain:5.2f}x"
                )
    print(f"   (counter of fb_exact: {ExactCounter.objects.get(rel=_oid('fb_exact')).writes} statements)")


def _oid(table: str) -> int:
    with psycopg.connect(dbname="pgviews_c_fb" + SUFFIX) as c:
        return c.execute("SELECT %s::regclass::oid::bigint", [table]).fetchone()[0]


if __name__ == "__main__":
    main()
