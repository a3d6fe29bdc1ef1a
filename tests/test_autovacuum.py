"""Autovacuum holding a lock on a materialized view that must be swapped or refreshed.

Autovacuum's SHARE UPDATE EXCLUSIVE lock conflicts with the ACCESS EXCLUSIVE a swap or a plain
refresh needs, and PostgreSQL cancels an autovacuum worker only for a waiter that has waited
deadlock_timeout (its deadlock check finds the worker in the way): a short lock_timeout never
gets there, so every short try would fail while the worker runs on. After a lock timeout whose
holder is an autovacuum worker, the next try waits deadlock_timeout + 200 ms.

Autovacuum cannot be started on demand on the shared server, nor its settings changed: these
tests run a private one (tools/pgreplica.py) where it wakes every second, and make it slow and
certain on one view (dead rows left by a concurrent refresh, a cost limit of 1). They wait for
the worker to hold its lock (pg_stat_activity, pg_locks), then act, and read what happened from
the command's output, the catalog and the server's log.
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

DBNAME = "pgviews_autovac" + os.environ.get("PGVIEWS_DB_SUFFIX", "")
ROWS = 100_000  # about 540 pages a view: at a cost limit of 1, minutes of vacuum
WAIT_SECONDS = 120  # bound of every wait for the server
SERVER_SETTINGS = {
    "autovacuum": "on",
    "autovacuum_naptime": "1",
    "autovacuum_max_workers": "5",
    "deadlock_timeout": "'1s'",
    "log_autovacuum_min_duration": "0",
    "log_lock_waits": "on",
}
# Vacuum of one view, certain (any dead row) and slow (a nap after every page).
SLOW_VACUUM = (
    "autovacuum_enabled = true, autovacuum_vacuum_threshold = 0, "
    "autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_cost_delay = 100, "
    "autovacuum_vacuum_cost_limit = 1"
)
LOCK_TIMEOUT_ERROR = "canceling statement due to lock timeout"


@pytest.fixture(scope="module")
def cluster():
    reason = pgreplica.cannot_run()
    if reason:
        pytest.skip(reason)
    with pgreplica.Cluster(settings=SERVER_SETTINGS) as cluster:
        with cluster.connect(cluster.primary) as conn:
            conn.execute(f'CREATE DATABASE "{DBNAME}"')
        _manage_ok(cluster, ["migrate", "--run-syncdb", "-v0"])
        with cluster.connect(cluster.primary, dbname=DBNAME) as conn:
            # Only the views' vacuum is wanted: the table's would take workers for nothing.
            conn.execute("ALTER TABLE shop_reading SET (autovacuum_enabled = false)")
            conn.execute(
                "INSERT INTO shop_reading (grp, val) SELECT g %% 100, g FROM generate_series(1, %s) g",
                [ROWS],
            )
            for view in ("shop_swap_copy", "shop_plain_copy", "shop_loop_copy"):
                conn.execute(f"ALTER MATERIALIZED VIEW {view} SET (autovacuum_enabled = false)")
                conn.execute(f"REFRESH MATERIALIZED VIEW {view}")
        yield cluster


def _manage(cluster, args: list[str], variant: str = "1") -> subprocess.CompletedProcess:
    return processes.django(
        *args,
        settings="tests.autovacproj.settings",
        PGVIEWS_AUTOVAC_PORT=str(cluster.primary["port"]),
        PGVIEWS_AUTOVAC_VARIANT=variant,
    )


def _manage_ok(cluster, args: list[str], variant: str = "1") -> str:
    out = _manage(cluster, args, variant)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


HOLDER_SQL = """
SELECT a.pid FROM pg_stat_activity a
JOIN pg_locks l ON l.pid = a.pid AND l.granted AND l.relation = %s::regclass
WHERE a.backend_type = 'autovacuum worker' AND a.query LIKE '%%' || %s || '%%'
"""


def _autovacuum_holding(cluster, view: str) -> int:
    """Leave dead rows in ``view`` (a concurrent refresh over changed data deletes and inserts),
    make its vacuum slow and certain, and wait until an autovacuum worker holds its lock on it.
    Returns the worker's pid."""
    with cluster.connect(cluster.primary, dbname=DBNAME) as conn:
        conn.execute(f"ALTER MATERIALIZED VIEW {view} SET ({SLOW_VACUUM})")
        conn.execute("UPDATE shop_reading SET val = val + 1 WHERE id % 10 = 0")
        conn.execute(f"REFRESH MATERIALIZED VIEW CONCURRENTLY {view}")
        conn.execute("SELECT pg_stat_force_next_flush()")
        conn.execute("SELECT 1")  # the statistics of the refresh reach autovacuum's eyes
    deadline = time.monotonic() + WAIT_SECONDS
    with cluster.connect(cluster.primary, dbname=DBNAME) as conn:
        while True:
            row = conn.execute(HOLDER_SQL, [view, view]).fetchone()
            if row:
                return row[0]
            assert time.monotonic() < deadline, (
                f"no autovacuum worker took a lock on {view} in {WAIT_SECONDS}s:\n{cluster.log()[-3000:]}"
            )
            time.sleep(0.1)


def _stop_autovacuum(cluster, view: str) -> None:
    """No more vacuum of ``view``; a worker still on it is cancelled (the test's own clean-up)."""
    with cluster.connect(cluster.primary, dbname=DBNAME) as conn:
        conn.execute(f"ALTER MATERIALIZED VIEW {view} SET (autovacuum_enabled = false)")
        conn.execute(
            "SELECT pg_cancel_backend(pid) FROM pg_stat_activity "
            "WHERE backend_type = 'autovacuum worker' AND query LIKE '%%' || %s || '%%'",
            [view],
        )


def _lock_timeouts(log: str, view: str) -> int:
    """The statements naming ``view`` that failed on their lock_timeout, in a server log."""
    lines = log.splitlines()
    return sum(
        1
        for k, line in enumerate(lines)
        if LOCK_TIMEOUT_ERROR in line and any("STATEMENT:" in s and view in s for s in lines[k + 1 : k + 3])
    )


def _populated(cluster, view: str) -> tuple[bool, int]:
    with cluster.connect(cluster.primary, dbname=DBNAME) as conn:
        populated = conn.execute(
            "SELECT ispopulated FROM pg_matviews WHERE matviewname = %s", [view]
        ).fetchone()[0]
        return populated, conn.execute(f"SELECT count(*) FROM {view}").fetchone()[0]


def test_a_sync_swaps_a_view_autovacuum_holds_after_one_short_try(cluster):
    pid = _autovacuum_holding(cluster, "shop_swap_copy")
    mark = len(cluster.log())
    out = _manage(cluster, ["sync_pgviews", "-v", "2"], variant="2")
    assert out.returncode == 0, out.stdout + out.stderr
    retries = [line for line in out.stdout.splitlines() if "retrying (" in line]
    assert retries, f"the swap met no lock:\n{out.stdout}"
    # The first short try names the worker; the next waits past deadlock_timeout, where the
    # server cancels the worker: a few tries, never the twenty short ones.
    assert f"pid {pid} (autovacuum worker" in retries[0], retries[0]
    assert len(retries) < 5, "\n".join(retries)
    assert "/20)" in retries[0] and "(20/20)" not in out.stdout
    log = cluster.log()[mark:]
    assert "canceling autovacuum task" in log, log[-3000:]
    with cluster.connect(cluster.primary, dbname=DBNAME) as conn:
        definition = conn.execute("SELECT pg_get_viewdef('shop_swap_copy'::regclass)").fetchone()[0]
    assert "+ 0" in definition, definition
    assert _populated(cluster, "shop_swap_copy") == (True, ROWS)


def test_model_refresh_gets_past_autovacuum_after_one_short_try(cluster):
    _autovacuum_holding(cluster, "shop_plain_copy")
    mark = len(cluster.log())
    try:
        _manage_ok(
            cluster,
            [
                "shell",
                "-v0",
                "-c",
                "from tests.autovacproj.shop.models import PlainCopy; PlainCopy.refresh()",
            ],
        )
    finally:
        _stop_autovacuum(cluster, "shop_plain_copy")
    log = cluster.log()[mark:]
    assert "canceling autovacuum task" in log, log[-3000:]
    # Ten short tries would each fail while the worker runs on; one meets it, the next waits.
    assert 1 <= _lock_timeouts(log, "shop_plain_copy") < 5, log[-3000:]
    assert _populated(cluster, "shop_plain_copy") == (True, ROWS)


def test_the_parallel_refresh_gets_past_autovacuum_after_one_short_try(cluster):
    _autovacuum_holding(cluster, "shop_loop_copy")
    mark = len(cluster.log())
    try:
        out = _manage_ok(
            cluster, ["refresh_pgviews", "--jobs", "2", "-v", "2", "shop.LoopCopy", "shop.PlainCopy"]
        )
    finally:
        _stop_autovacuum(cluster, "shop_loop_copy")
    assert "shop.LoopCopy" in out and "failed" not in out, out
    log = cluster.log()[mark:]
    assert "canceling autovacuum task" in log, log[-3000:]
    assert 1 <= _lock_timeouts(log, "shop_loop_copy") < 5, log[-3000:]
    assert _populated(cluster, "shop_loop_copy") == (True, ROWS)


def test_the_parallel_refresh_that_gives_up_names_the_autovacuum_worker(cluster):
    pid = _autovacuum_holding(cluster, "shop_loop_copy")
    # One try, shorter than deadlock_timeout: the server never cancels the worker for it.
    script = (
        "from django.test import override_settings\n"
        "from django_pgviews_c.exceptions import RefreshError\n"
        "from django_pgviews_c.refresh import refresh_views\n"
        "from tests.autovacproj.shop.models import LoopCopy, PlainCopy\n"
        "with override_settings(PGVIEWS_REFRESH_RETRIES=0, PGVIEWS_REFRESH_LOCK_TIMEOUT_MS=300):\n"
        "    try:\n"
        "        refresh_views([LoopCopy, PlainCopy], jobs=2)\n"
        "    except RefreshError as exc:\n"
        "        print(exc.failures)\n"
    )
    try:
        out = _manage_ok(cluster, ["shell", "-v0", "-c", script])
    finally:
        _stop_autovacuum(cluster, "shop_loop_copy")
    assert "shop.LoopCopy" in out and "shop.PlainCopy" not in out, out
    assert f"held by pid {pid} (autovacuum worker), active: autovacuum: VACUUM" in out, out
    assert "SQLSTATE 55P03" in out, out
