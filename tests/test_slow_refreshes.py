"""Refreshes stopped in the middle, in real processes against a database of their own
(tests/slowproject), whose refreshes sleep as long as slowapp_gate says: a refresher killed
(SIGKILL) must lose its server sessions at once, so its advisory lock goes with them and the
standby takes over within a poll, not when the orphaned REFRESH would have finished; an
interrupted --stale pass must say what it did before the interrupt."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests import processes, psycopg_compat
from tests.processes import Reader

SUFFIX = os.environ.get("PGVIEWS_DB_SUFFIX", "") + "_slow"
DB = "pgviews_c_slow" + SUFFIX
SETTINGS = "tests.slowproject.settings"
WAIT = 60.0  # far below the 600 s the orphaned refresh would sleep


def django(*args: str, **extra: str) -> subprocess.CompletedProcess:
    return processes.django(*args, settings=SETTINGS, suffix=SUFFIX, **extra)


def rows(sql: str, params=None) -> list[tuple]:
    return psycopg_compat.query(DB, sql, params)


@pytest.fixture
def slow_db():
    with processes.migrated_database(DB, django):
        yield


def refresher(jobs: int) -> Reader:
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", "django", "pgviews_refresher", "--poll", "0.3", "--jobs", str(jobs)],
        cwd=processes.ROOT,
        env=processes.django_env(SETTINGS, SUFFIX),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return Reader(proc)


def wait_for(check, what: str, timeout: float = WAIT):
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return found


def sleeping() -> list[int]:
    """The backends of this database sleeping in a view's query."""
    return [
        r[0]
        for r in rows(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event = 'PgSleep'"
        )
    ]


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_refresher_killed_mid_refresh_frees_its_lock_and_the_standby_takes_over(slow_db, jobs):
    first = refresher(jobs)
    second = None
    try:
        first.wait_for("active: refreshing due views of database 'default'")
        second = refresher(jobs)
        second.wait_for("standby: another refresher works on database 'default'")
        rows("SELECT pg_stat_force_next_flush(); INSERT INTO slowapp_gate (seconds) VALUES (600)")
        orphans = wait_for(sleeping, "the first refresher's REFRESH to sleep")
        # The REFRESH already sleeping read its 600 s; the standby's will read none.
        rows("UPDATE slowapp_gate SET seconds = 0")
        first.proc.kill()  # SIGKILL: nothing of the client runs any more
        first.proc.wait(timeout=WAIT)
        # The server ends the orphaned sessions (their REFRESH rolls back) and the lock with them.
        wait_for(lambda: not set(orphans) & set(sleeping()), "the orphaned REFRESH to end")
        second.wait_for("active: refreshing due views of database 'default'")
        second.wait_for("refreshed slowapp.SlowA")
        wait_for(
            lambda: rows("SELECT count(*) FROM slowapp_slowb")[0][0] == 1,
            "SlowB to be refreshed by the standby",
        )
        second.stop(signal.SIGTERM, timeout=WAIT)
    finally:
        processes.kill_running(first, second)
    # Nothing lost, nothing recorded that did not happen: each view once, by the standby.
    assert rows("SELECT view, ok FROM django_pgviews_c_refresh WHERE NOT ok") == []
    assert rows("SELECT count(*) FROM slowapp_slowa") == [(1,)]
    assert rows(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
    ) == [(0,)]


def test_an_interrupted_stale_pass_names_the_rebuild_it_swapped_in_before(slow_db):
    """--stale completes a deferred rebuild first (committed), then is interrupted in a refresh:
    the message names the swapped-in view, and never says that nothing was changed."""
    done = django("sync_pgviews", "-v", "0", SLOW_FACTOR="2")
    assert done.returncode == 0, done.stderr
    rows("SELECT pg_stat_force_next_flush(); INSERT INTO slowapp_gate (seconds) VALUES (600)")
    proc = subprocess.Popen(
        [sys.executable, "-m", "django", "refresh_pgviews", "--stale"],
        cwd=processes.ROOT,
        env=processes.django_env(SETTINGS, SUFFIX, SLOW_FACTOR="2"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(sleeping, "a stale view's REFRESH to sleep")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=WAIT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, (out, err)
    assert "swapped in before the interrupt: slowapp.Deferred" in err, err
    assert "nothing was changed" not in err, err
    assert sleeping() == []  # the running REFRESH was cancelled
    # The rebuild swapped in stays (and is recorded); the interrupted refresh left no record.
    assert rows("SELECT v FROM slowapp_deferred") == [(1200.0,)]
    assert (
        rows(
            "SELECT view, plain_reason FROM django_pgviews_c_refresh WHERE view <> 'slowapp.Deferred' "
            "AND plain_reason NOT LIKE '%%sync'"
        )
        == []
    )
