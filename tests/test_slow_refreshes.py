"""A refresher killed (SIGKILL) in the middle of a long refresh: its server session must end at
once, so its advisory lock goes with it and the standby takes over within a poll, not when the
orphaned REFRESH would have finished. Real processes, a database of their own (tests/slowproject),
refreshes that sleep as long as slowapp_gate says."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests import processes, psycopg_compat
from tests.test_refresher import Reader

SUFFIX = os.environ.get("PGVIEWS_DB_SUFFIX", "") + "_killed"
DB = "pgviews_c_slow" + SUFFIX
SETTINGS = "tests.slowproject.settings"
WAIT = 60.0  # far below the 600 s the orphaned refresh would sleep


def django(*args: str) -> subprocess.CompletedProcess:
    return processes.django(*args, settings=SETTINGS, suffix=SUFFIX)


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
        first.proc.kill()  # SIGKILL: nothing of the client runs any more
        first.proc.wait(timeout=WAIT)
        # The server ends the orphaned sessions (their REFRESH rolls back) and the lock with them.
        wait_for(lambda: not set(orphans) & set(sleeping()), "the orphaned REFRESH to end")
        rows("UPDATE slowapp_gate SET seconds = 0")
        second.wait_for("active: refreshing due views of database 'default'")
        second.wait_for("refreshed slowapp.SlowA")
        wait_for(
            lambda: rows("SELECT count(*) FROM slowapp_slowb")[0][0] == 1, "SlowB to be refreshed by the standby"
        )
        second.proc.send_signal(signal.SIGTERM)
        second.wait_for("stopped")
        assert second.proc.wait(timeout=WAIT) == 0
    finally:
        for r in (first, second):
            if r is not None and r.proc.poll() is None:
                r.proc.kill()
                r.proc.wait()
    # Nothing lost, nothing recorded that did not happen: each view once, by the standby.
    assert rows("SELECT view, ok FROM django_pgviews_c_refresh WHERE NOT ok") == []
    assert rows("SELECT count(*) FROM slowapp_slowa") == [(1,)]
    assert rows(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
    ) == [(0,)]
