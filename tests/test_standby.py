"""Behind a hot standby: a primary and a streaming replica made by tools/pgreplica.py
(pg_basebackup -R), a project whose router sends reads to the replica (tests/standbyproj).

ACCESS EXCLUSIVE locks taken on the primary are written to the WAL and replayed on the standby,
where they wait for the standby's readers of that relation, and after
max_standby_streaming_delay cancel them. What the product promises, and these tests check:
views are made and refreshed on the primary whatever the router says about reads; a concurrent
refresh reaches the standby without a lock that stops its readers; a plain refresh or a sync's
swap stops only readers of the view it touches, with PostgreSQL's "conflict with recovery"
error, and the operation itself succeeds on the primary; `sync_pgviews --plan` says which steps
reach standbys. Readers hold their locks in an open transaction, so nothing depends on timing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import pgreplica  # noqa: E402

from tests import processes  # noqa: E402

psycopg = pytest.importorskip("psycopg")

DBNAME = "pgviews_standby" + os.environ.get("PGVIEWS_DB_SUFFIX", "")
TOTALS = "SELECT product, total FROM shop_sale_totals ORDER BY product"
REFRESH = "from tests.standbyproj.shop.models import SaleTotals; SaleTotals.refresh(concurrently={})"


@pytest.fixture(scope="module")
def pair():
    reason = pgreplica.cannot_run()
    if reason:
        pytest.skip(reason)
    # A short delay: a replayed lock that waits on a reader cancels it quickly.
    with pgreplica.ReplicaPair(standby_settings={"max_standby_streaming_delay": "200ms"}) as pair:
        with pair.connect(pair.primary) as conn:
            conn.execute(f'CREATE DATABASE "{DBNAME}"')
        for args in (["migrate", "--run-syncdb", "-v0"],):
            _manage_ok(pair, args)
        with pair.connect(pair.primary, dbname=DBNAME) as conn:
            conn.execute(
                "INSERT INTO shop_sale (product, amount) SELECT g % 10, 1 FROM generate_series(1, 100) g"
            )
        _manage_ok(pair, ["sync_pgviews", "-v0"])
        _manage_ok(pair, ["refresh_pgviews", "-v0"])  # every test starts from the sales above
        pair.wait_replayed()
        yield pair


def _manage(pair, args: list[str], variant: str = "1") -> subprocess.CompletedProcess:
    return processes.django(
        *args,
        settings="tests.standbyproj.settings",
        timeout=120,
        PGVIEWS_STANDBY_PRIMARY_PORT=str(pair.primary["port"]),
        PGVIEWS_STANDBY_REPLICA_PORT=str(pair.replica["port"]),
        PGVIEWS_STANDBY_VARIANT=variant,
    )


def _manage_ok(pair, args: list[str], variant: str = "1") -> str:
    out = _manage(pair, args, variant)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def _add_sales(pair, product: int, amount: int) -> None:
    with pair.connect(pair.primary, dbname=DBNAME) as conn:
        conn.execute("INSERT INTO shop_sale (product, amount) VALUES (%s, %s)", [product, amount])


def _reader(pair, table: str):
    """A standby session that read ``table`` and keeps its ACCESS SHARE lock: an open
    READ COMMITTED transaction (no snapshot held between statements, so only a lock can
    conflict with the replay)."""
    conn = pair.connect(pair.replica, dbname=DBNAME, autocommit=False)
    conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    return conn


def _totals(conn) -> dict[int, int]:
    return dict(conn.execute(TOTALS).fetchall())


def test_reads_go_to_the_standby_and_views_are_made_and_refreshed_on_the_primary(pair):
    _add_sales(pair, 1, 1000)
    code = (
        "from django.db import connections; "
        "from tests.standbyproj.shop.models import SaleTotals; "
        "SaleTotals.refresh(); "
        "print(SaleTotals.objects.all().db); "
        "print(connections['replica'].cursor().execute('SELECT pg_is_in_recovery()').fetchone()[0]); "
        "print(SaleTotals.objects.using('default').get(product=1).total)"
    )
    out = _manage_ok(pair, ["shell", "-v0", "-c", code]).split()
    assert out == ["replica", "True", "1010"]
    pair.wait_replayed()
    with pair.connect(pair.replica, dbname=DBNAME) as conn:
        assert _totals(conn)[1] == 1010  # the router's reads see the refreshed data
        kinds = conn.execute(
            "SELECT matviewname::text FROM pg_matviews WHERE schemaname = 'public' ORDER BY 1"
        ).fetchall()
    assert kinds == [("shop_big_sales",), ("shop_sale_totals",)]


def test_a_concurrent_refresh_stops_no_reader_on_the_standby(pair):
    reader = _reader(pair, "shop_sale_totals")
    bystander = _reader(pair, "shop_big_sales")
    try:
        before = _totals(reader)[2]
        _add_sales(pair, 2, 500)
        _manage_ok(pair, ["shell", "-v0", "-c", REFRESH.format(True)])
        pair.wait_replayed()  # the replay did not wait for the reader's lock
        # The reader's transaction, holding its lock all along, is still alive and sees the
        # refreshed rows (once the standby has applied the commit: polled, bounded); so is the
        # reader of the other view.
        deadline = time.monotonic() + 60
        while _totals(reader)[2] != before + 500 and time.monotonic() < deadline:
            pair.wait_replayed()
        if _totals(reader)[2] != before + 500:  # say what each side holds
            with pair.connect(pair.primary, dbname=DBNAME) as conn:
                primary = _totals(conn)[2]
            with pair.connect(pair.replica, dbname=DBNAME) as conn:
                fresh = _totals(conn)[2]
            pytest.fail(
                f"before {before}; the reader sees {_totals(reader)[2]}, a new standby session "
                f"{fresh}, the primary {primary}"
            )
        assert bystander.execute("SELECT count(*) FROM shop_big_sales").fetchone()[0] >= 0
    finally:
        reader.close()
        bystander.close()


def _assert_canceled_by_recovery(conn, table: str) -> None:
    with pytest.raises(psycopg.Error) as info:
        conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    # The session was idle in its transaction: the standby ends it (a running statement would
    # get "canceling statement due to conflict with recovery" instead, as benchmarks/standby.py
    # shows).
    assert info.value.sqlstate == "40001"
    assert str(info.value).startswith("terminating connection due to conflict with recovery")
    assert info.value.diag.message_detail == "User was holding a relation lock for too long."


@pytest.mark.parametrize(
    "operation",
    [
        pytest.param((["shell", "-v0", "-c", REFRESH.format(False)], "1"), id="Model.refresh()"),
        pytest.param((["refresh_pgviews", "-v0"], "1"), id="refresh_pgviews"),
        pytest.param((["sync_pgviews", "-v0"], "2"), id="sync swaps a rebuilt view"),
    ],
)
def test_an_access_exclusive_step_stops_only_readers_of_its_view(pair, operation):
    args, variant = operation
    reader = _reader(pair, "shop_sale_totals")
    bystander = _reader(pair, "shop_sale")  # reads a table: no step takes a lock on it
    try:
        _add_sales(pair, 3, 700)
        _manage_ok(pair, args, variant)  # the primary's operation itself succeeds
        pair.wait_replayed()  # possible only once the reader's lock has been taken away
        _assert_canceled_by_recovery(reader, "shop_sale_totals")
        assert bystander.execute("SELECT count(*) FROM shop_sale").fetchone()[0] > 0
    finally:
        reader.close()
        bystander.close()
        if variant != "1":
            _manage_ok(pair, ["sync_pgviews", "-v0"])  # the declaration as the other tests know it
            pair.wait_replayed()
    with pair.connect(pair.replica, dbname=DBNAME) as conn:
        assert 3 in _totals(conn)  # a new reader sees the new data at once


def test_plan_names_the_steps_that_reach_standbys(pair):
    out = _manage_ok(pair, ["sync_pgviews", "--plan", "-v", "2"], variant="2")  # -v 2: every step
    lines = out.splitlines()
    locks = {}
    for k, line in enumerate(lines[:-1]):
        if "shop.SaleTotals" in line and lines[k + 1].strip().startswith("lock:"):
            locks[line.split()[0]] = lines[k + 1].strip()
    # Building the copy beside the old one reaches nobody; dropping the old one and moving the
    # new one in take ACCESS EXCLUSIVE, which hot standbys replay.
    assert {"build", "drop", "swap"} <= set(locks), out
    assert "hot standbys" not in locks["build"]
    for op in ("drop", "swap"):
        assert locks[op] == "lock: ACCESS EXCLUSIVE until commit: readers wait, on hot standbys too"
    # --plan changed nothing: the primary still holds the first declaration.
    pair.wait_replayed()
    with pair.connect(pair.replica, dbname=DBNAME) as conn:
        definition = conn.execute("SELECT definition FROM pg_matviews WHERE matviewname = 'shop_sale_totals'")
        assert "+ 0" not in definition.fetchone()[0]
