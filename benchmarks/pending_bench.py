"""Completing deferred rebuilds: `refresh_pgviews --pending` with --jobs 1 against --jobs N.

VIEWS materialized views (default 4) declared with ``defer_rebuild = True`` read one table of
BENCH_ROWS rows (default 1,000,000) and group it. Each round changes every view's SQL, syncs (the
new versions wait beside the old ones, WITH NO DATA), then times complete_pending() (what
`refresh_pgviews --pending` runs): the populations, then the one swap. Rounds alternate the job
counts; medians of BENCH_REPS rounds (default 5) per job count.

    python benchmarks/pending_bench.py            # the server named by PG* variables
    BENCH_JOBS=1,2,4 python benchmarks/pending_bench.py

Environment: PGHOST/PGPORT/PGUSER, BENCH_ROWS, BENCH_REPS, BENCH_VIEWS, BENCH_JOBS (default
1,2), PGVIEWS_DB_SUFFIX (keeps the database apart from other runs on the same server).
"""

from __future__ import annotations

import io
import os
import statistics
import tempfile
import time
from pathlib import Path

import psycopg
from benchproject import admin, fresh_database, matview, setup_django, write_app, write_settings

ROWS = int(os.environ.get("BENCH_ROWS", "1000000"))
REPS = int(os.environ.get("BENCH_REPS", "5"))
VIEWS = int(os.environ.get("BENCH_VIEWS", "4"))
JOBS = [int(j) for j in os.environ.get("BENCH_JOBS", "1,2").split(",")]
SUFFIX = os.environ.get("PGVIEWS_DB_SUFFIX", "")
DB = "pgviews_c_pb" + SUFFIX
TMP = Path(tempfile.mkdtemp(prefix="bench_pending_"))


def sql_of(i: int, version: int) -> str:
    return f"SELECT k % 1000 AS g, count(*) AS n, sum(v + {version}) AS s FROM pb_t GROUP BY 1"


def write_project() -> None:
    classes = []
    for i in range(VIEWS):
        classes += matview(f"Mv{i}", sql_of(i, 0), f"pb_mv{i}", "defer_rebuild = True")
    write_app(TMP, "pb", classes)
    write_settings(TMP, "pb", DB)


def main() -> None:
    write_project()
    fresh_database(
        DB,
        f"CREATE TABLE pb_t (k int, v int); INSERT INTO pb_t SELECT g, g % 7 FROM generate_series(1, {ROWS}) g; "
        "ANALYZE pb_t",
    )
    setup_django(TMP, "pb")
    from django.apps import apps
    from django.core.management import call_command
    from django.db import connection

    from django_pgviews_c.pending import complete_pending
    from django_pgviews_c.sync import sync_pgviews

    call_command("migrate", "--run-syncdb", verbosity=0, stdout=io.StringIO())
    models = [apps.get_model("pb", f"Mv{i}") for i in range(VIEWS)]
    with psycopg.connect(dbname=DB, autocommit=True) as c:
        version = c.execute("SHOW server_version").fetchone()[0]
    print(f"PostgreSQL {version}; {VIEWS} deferred views over {ROWS} rows; medians of {REPS} rounds")
    times: dict[int, list[float]] = {j: [] for j in JOBS}
    version_no = 0
    for _ in range(REPS):
        for jobs in JOBS:
            version_no += 1
            for i, model in enumerate(models):
                model.sql = sql_of(i, version_no)
            [result] = sync_pgviews(verbosity=0)
            assert set(result.states.values()) == {"pending rebuild"}, result.states
            t = time.perf_counter()
            done = complete_pending(jobs=jobs, verbosity=0)
            times[jobs].append(time.perf_counter() - t)
            assert len(done.swapped) == VIEWS and not done.failed, done
    base = statistics.median(times[JOBS[0]])
    for jobs in JOBS:
        median = statistics.median(times[jobs])
        runs = ", ".join(f"{t:.2f}" for t in times[jobs])
        print(
            f"--pending --jobs {jobs}: {median:.3f} s ({base / median:.2f}x of --jobs {JOBS[0]}); runs {runs}"
        )
    connection.close()
    admin(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')


if __name__ == "__main__":
    main()
