"""SIGTERM (what deploy tools and container runtimes send) and SIGINT stop a command the same
way: the running statement is cancelled on the server, the transaction rolled back (the sync's
advisory lock with it), the command says so and exits non-zero. Each runs the command in a real
process whose statement waits on a lock this test holds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests import processes, psycopg_compat

ROOT = Path(__file__).resolve().parent.parent
SUFFIX = os.environ.get("PGVIEWS_DB_SUFFIX", "") + "_sig"
DBNAME = "pgviews_c" + SUFFIX
MATVIEW = "viewtest_materializedrelatedview"


def _env() -> dict[str, str]:
    return processes.django_env(suffix=SUFFIX)


def django(*args: str) -> subprocess.CompletedProcess:
    return processes.django(*args, suffix=SUFFIX)


def rows(sql: str, params=None) -> list[tuple]:
    return psycopg_compat.query(DBNAME, sql, params)


@pytest.fixture(scope="module")
def process_db():
    with processes.migrated_database(DBNAME, django):
        yield


@pytest.mark.parametrize(
    ("command", "signum"),
    [
        (("sync_pgviews",), signal.SIGTERM),
        (("sync_pgviews",), signal.SIGINT),
        (("migrate",), signal.SIGTERM),
        (("refresh_pgviews",), signal.SIGTERM),
    ],
    ids=["sync-SIGTERM", "sync-SIGINT", "migrate-SIGTERM", "refresh-SIGTERM"],
)
def test_an_interrupt_cancels_the_statement_and_rolls_back(process_db, command, signum):
    refresh = command[0] == "refresh_pgviews"
    if not refresh:
        rows(f"DROP MATERIALIZED VIEW IF EXISTS {MATVIEW} CASCADE")
    with processes.holding_lock(DBNAME, "viewtest_testmodel"):
        proc = subprocess.Popen(
            [sys.executable, "-m", "django", *command],
            cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        pid = 0

        def waiting() -> None:
            nonlocal pid
            pid = processes.waiting_pid(DBNAME, "viewtest_testmodel")
            if not refresh:
                advisory = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = %s"
                assert rows(advisory, [pid]) == [(1,)]

        out, err = processes.interrupt(proc, signum, waiting)
        # Still holding the table lock: without a cancel, the server would still be waiting.
        assert rows("SELECT count(*) FROM pg_stat_activity WHERE pid = %s AND state = 'active'", [pid]) == [
            (0,)
        ]
        assert rows("SELECT count(*) FROM pg_locks WHERE pid = %s", [pid]) == [(0,)]
        assert rows(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        ) == [(0,)]
    assert "Traceback" not in err, err
    assert proc.returncode != 0, (out, err)
    assert "interrupted" in err, err
    if refresh:  # what a refresh says of what it did is the refresh's own (it commits per view)
        return
    if command[0] == "sync_pgviews":
        # migrate says what its own transactions did (the migrations' business).
        assert proc.returncode == 128 + signum, (out, err)
        assert f"interrupted by {signal.Signals(signum).name}" in err, err
        assert "running statements were cancelled and the open transaction rolled back" in err
        assert "nothing was changed" in err
    if command[0] == "migrate":
        # No migration was pending: the interrupt met the sync of the views, and says so, with
        # the signal's name and status 128 + its number, as every command (README).
        assert proc.returncode == 128 + signum, (out, err)
        name = signal.Signals(signum).name
        assert f"interrupted by {name} while syncing the views after the migrations" in err, err
        assert "the sync was rolled back, the views are as they were before migrate" in err, err
    assert rows("SELECT to_regclass(%s) IS NULL", [MATVIEW]) == [(True,)]
    done = django("sync_pgviews", "-v", "0")
    assert done.returncode == 0, done.stderr
    assert rows("SELECT to_regclass(%s) IS NULL", [MATVIEW]) == [(False,)]
