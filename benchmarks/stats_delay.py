"""How long until a committed write is visible in the cumulative statistics counters
(pg_stat_all_tables), which the staleness check reads. Prints one table per scenario.

    python benchmarks/stats_delay.py          # the server named by PG* variables
    eval "$(python tools/pgserver.py --embedded --env)"; python benchmarks/stats_delay.py

Scenarios (each BENCH_REPS times, default 5):
  first write      a new session writes once and stays connected, idle
  burst then idle  a session writes twice within a second and stays idle
  busy writer      a session keeps writing (a commit every 50 ms); the delay of one write
  disconnect       a session writes once and disconnects
Environment: PGHOST/PGPORT/PGUSER, BENCH_REPS.
"""

from __future__ import annotations

import os
import statistics
import threading
import time

import psycopg

REPS = int(os.environ.get("BENCH_REPS", "5"))
DB = "pgviews_c_stats_delay" + os.environ.get("PGVIEWS_DB_SUFFIX", "")


def connect(dbname: str = DB) -> psycopg.Connection:
    return psycopg.connect(dbname=dbname, autocommit=True)


def counter(reader: psycopg.Connection) -> int:
    reader.execute("SELECT pg_stat_clear_snapshot()")
    row = reader.execute(
        "SELECT n_tup_ins + n_tup_upd + n_tup_del FROM pg_stat_all_tables WHERE relid = 'sd_t'::regclass"
    ).fetchone()
    return row[0] if row else 0


def wait_seen(reader: psycopg.Connection, target: int, since: float, limit: float = 90.0) -> float:
    while counter(reader) < target:
        if time.perf_counter() - since > limit:
            return float("inf")
        time.sleep(0.005)
    return time.perf_counter() - since


def first_write(reader):
    w = connect()
    base = counter(reader)
    w.execute("INSERT INTO sd_t VALUES (1)")
    t = time.perf_counter()
    d = wait_seen(reader, base + 1, t)
    w.close()
    return d


def burst_then_idle(reader):
    w = connect()
    base = counter(reader)
    w.execute("INSERT INTO sd_t VALUES (1)")
    w.execute("INSERT INTO sd_t VALUES (2)")
    t = time.perf_counter()
    d = wait_seen(reader, base + 2, t)
    w.close()
    return d


def busy_writer(reader):
    w = connect()
    stop = threading.Event()

    def loop():
        while not stop.is_set():
            w.execute("INSERT INTO sd_t VALUES (3)")
            time.sleep(0.05)

    th = threading.Thread(target=loop)
    th.start()
    time.sleep(1.5)
    base = counter(reader)
    t = time.perf_counter()
    # The writes committed by now: base + the ones still pending; wait for one more than base.
    d = wait_seen(reader, base + 1, t)
    stop.set()
    th.join()
    w.close()
    return d


def disconnect(reader):
    w = connect()
    base = counter(reader)
    w.execute("INSERT INTO sd_t VALUES (4)")
    w.close()
    t = time.perf_counter()
    return wait_seen(reader, base + 1, t)


def main() -> None:
    with connect("postgres") as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{DB}"')
        admin.execute(f'CREATE DATABASE "{DB}"')
        version = admin.execute("SHOW server_version").fetchone()[0]
    try:
        with connect() as reader:
            reader.execute("CREATE TABLE sd_t (v int)")
            print(f"PostgreSQL {version}: seconds until a committed write is counted ({REPS} runs)")
            print(f"{'scenario':<18} {'min':>7} {'median':>7} {'max':>7}")
            for name, fn in (
                ("first write", first_write),
                ("burst then idle", burst_then_idle),
                ("busy writer", busy_writer),
                ("disconnect", disconnect),
            ):
                runs = [fn(reader) for _ in range(REPS)]
                print(f"{name:<18} {min(runs):7.3f} {statistics.median(runs):7.3f} {max(runs):7.3f}")
    finally:
        with connect("postgres") as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')


if __name__ == "__main__":
    main()
