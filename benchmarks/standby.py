#!/usr/bin/env python3
"""Readers on a hot standby while the primary refreshes or swaps a materialized view.

Starts a private primary and streaming standby (tools/pgreplica.py), a project whose router
sends reads to the standby (tests/standbyproj), and, for each operation, readers that loop a
query on the standby (one group reads the materialized view the operation touches, one group
another materialized view) while the primary runs the operation through manage.py. Prints how
many reads succeeded, how many were canceled by the conflict with recovery, and how long reads
took (a read that waited on a replayed lock took longer).

    .venv/bin/python benchmarks/standby.py [--delay 1s] [--rows 200000] [--read-seconds 0.3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

from pgreplica import Readers, ReplicaPair  # noqa: E402

_REFRESH = "from tests.standbyproj.shop.models import SaleTotals; SaleTotals.refresh(concurrently={})"
# name -> (manage.py arguments, PGVIEWS_STANDBY_VARIANT). Each touches shop_sale_totals only,
# except refresh_pgviews, which refreshes both materialized views.
OPERATIONS = {
    "SaleTotals.refresh(concurrently=True)": (["shell", "-v0", "-c", _REFRESH.format(True)], "1"),
    "SaleTotals.refresh()": (["shell", "-v0", "-c", _REFRESH.format(False)], "1"),
    "sync_pgviews swaps a rebuilt view": (["sync_pgviews"], "2"),
    "refresh_pgviews --concurrently (both views)": (["refresh_pgviews", "--concurrently"], "1"),
}


def manage(pair: ReplicaPair, args: list[str], variant: str = "1") -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.standbyproj.settings",
        "PYTHONPATH": str(ROOT),
        "PGVIEWS_STANDBY_PRIMARY_PORT": str(pair.primary["port"]),
        "PGVIEWS_STANDBY_REPLICA_PORT": str(pair.replica["port"]),
        "PGVIEWS_STANDBY_VARIANT": variant,
    }
    return subprocess.run(
        [sys.executable, "-m", "django", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def prepare(pair: ReplicaPair, dbname: str, rows: int) -> None:
    with pair.connect(pair.primary) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{dbname}"')
        conn.execute(f'CREATE DATABASE "{dbname}"')
    for args in (["migrate", "--run-syncdb", "-v0"],):
        out = manage(pair, args)
        if out.returncode:
            raise SystemExit(out.stdout + out.stderr)
    with pair.connect(pair.primary, dbname=dbname) as conn:
        conn.execute(
            "INSERT INTO shop_sale (product, amount) SELECT g %% 1000, g %% 100 FROM generate_series(1, %s) g",
            [rows],
        )
    out = manage(pair, ["sync_pgviews", "-v0"])
    if out.returncode:
        raise SystemExit(out.stdout + out.stderr)
    pair.wait_replayed()


def measure(pair: ReplicaPair, dbname: str, args: list[str], variant: str, read_seconds: float) -> dict:
    replica = {**pair.replica, "dbname": dbname}
    # Each read holds its lock on the relation for about read_seconds.
    touched = f"SELECT count(*) FROM shop_sale_totals, pg_sleep({read_seconds}) "
    other = f"SELECT count(*) FROM shop_big_sales, pg_sleep({read_seconds}) "
    with Readers(replica, touched, threads=3) as readers, Readers(replica, other, threads=2) as bystanders:
        with pair.connect(pair.primary, dbname=dbname) as conn:  # give the operation work to do
            conn.execute("UPDATE shop_sale SET amount = amount + 1 WHERE id % 10 = 0")
        started = time.perf_counter()
        out = manage(pair, args, variant)
        primary_seconds = time.perf_counter() - started
        pair.wait_replayed(timeout=300)
        replayed_seconds = time.perf_counter() - started
        seen = len(readers.ok)
        deadline = time.monotonic() + 30
        while len(readers.ok) < seen + 3 and time.monotonic() < deadline:  # reads after replay
            time.sleep(0.05)
    return {
        "exit": out.returncode,
        "stderr": out.stderr.strip().splitlines()[-1:] if out.returncode else [],
        "primary_s": round(primary_seconds, 3),
        "replayed_after_s": round(replayed_seconds, 3),
        "readers_of_view": readers.summary(),
        "readers_of_other_view": bystanders.summary(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--delay", default="1s", help="the standby's max_standby_streaming_delay")
    parser.add_argument("--feedback", default="off", help="the standby's hot_standby_feedback")
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--read-seconds", type=float, default=0.3)
    args = parser.parse_args()
    dbname = "pgviews_standby" + os.environ.get("PGVIEWS_DB_SUFFIX", "")
    settings = {"max_standby_streaming_delay": args.delay, "hot_standby_feedback": args.feedback}
    with ReplicaPair(standby_settings=settings) as pair:
        prepare(pair, dbname, args.rows)
        report = {"standby": settings, "rows": args.rows, "read_seconds": args.read_seconds}
        for name, (command, variant) in OPERATIONS.items():
            report[name] = measure(pair, dbname, command, variant, args.read_seconds)
            if variant != "1":  # put the declaration back for the next operation
                manage(pair, ["sync_pgviews", "-v0"])
                pair.wait_replayed()
        print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
