"""An interrupted refresh_pgviews --pending (or --due, which completes deferred rebuilds first) names
the rebuilds it leaves pending and says the old version still serves (tests/deferproject, real
processes): the signal is sent once the REFRESH of the waiting version is seen waiting in
pg_locks for a table lock this test holds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from django_pgviews_c import _core
from tests import processes, psycopg_compat
from tests.test_defer import DB, ROOT, defer_db, django, q  # noqa: F401 (defer_db is a fixture)

PENDING_DETAIL = "the rebuild of deferapp.Totals is still pending (the old version still serves"


def _env(factor: int) -> dict[str, str]:
    return processes.django_env("tests.deferproject.settings", DEFER_FACTOR=str(factor))


@pytest.mark.parametrize(
    ("option", "signum"),
    [("--pending", signal.SIGINT), ("--due", signal.SIGTERM)],
    ids=["pending-SIGINT", "due-SIGTERM"],
)
def test_an_interrupted_population_names_the_rebuild_left_pending(defer_db, option, signum):  # noqa: F811
    done = django("migrate", "-v", "0", factor=2)  # the deploy: the waiting version, WITH NO DATA
    assert done.returncode == 0, done.stderr
    before = q("SELECT 'deferapp_totals'::regclass::oid::bigint")
    # The REFRESH of the waiting version reads deferapp_reading: it waits for this lock.
    with processes.holding_lock(DB, "deferapp_reading"):
        proc = subprocess.Popen(
            [sys.executable, "-m", "django", "refresh_pgviews", option],
            cwd=ROOT, env=_env(2), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        out, err = processes.interrupt(proc, signum, lambda: processes.waiting_pid(DB, "deferapp_reading"))
    assert "Traceback" not in err, err
    assert proc.returncode == 128 + signum, (out, err)
    assert f"interrupted by {signal.Signals(signum).name}" in err, err
    assert PENDING_DETAIL in err and "refresh_pgviews --pending completes it" in err, err
    assert "nothing was swapped in" in err, err
    # As it says: the old version serves on, the waiting one is still there for the next try.
    assert q("SELECT 'deferapp_totals'::regclass::oid::bigint") == before
    assert q("SELECT sum(value)::int FROM deferapp_totals") == [(60,)]
    done = django("refresh_pgviews", "--pending", factor=2)
    assert done.returncode == 0 and "swapped in the rebuilt deferapp.Totals" in done.stdout, done
    assert q("SELECT sum(value)::int FROM deferapp_totals") == [(120,)]


HISTORY = "django_pgviews_c_refresh"
#: Stops the swap's transaction at its history record, after the swap, until the test lets it go.
GATE_SQL = (
    "CREATE TABLE pgvc_gate (); "
    "CREATE FUNCTION pgvc_gate() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN PERFORM count(*) FROM public.pgvc_gate; RETURN NULL; END $$; "
    f"CREATE TRIGGER pgvc_gate AFTER INSERT ON {HISTORY} FOR EACH STATEMENT EXECUTE FUNCTION pgvc_gate()"
)


def _history_waiter(other_than: int) -> int:
    """The backend, other than ``other_than``, whose lock request on the history table waits."""
    sql = f"SELECT pid FROM pg_locks WHERE NOT granted AND relation = '{HISTORY}'::regclass AND pid <> %s"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = psycopg_compat.query(DB, sql, [other_than])
        if found:
            return int(found[0][0])
        time.sleep(0.02)
    raise AssertionError("the staleness check never waited for the history table")


@pytest.mark.parametrize(
    ("option", "signum"),
    [("--stale", signal.SIGINT), ("--due", signal.SIGTERM)],
    ids=["stale-SIGINT", "due-SIGTERM"],
)
def test_an_interrupted_check_after_the_swap_names_the_rebuild_swapped_in(defer_db, option, signum):  # noqa: F811
    """The pass swaps the rebuild in and commits, then its staleness check reads the history
    table, held there by a second session's ACCESS EXCLUSIVE lock: interrupted there, it names
    the swap and does not say that nothing was changed. The lock is queued while the swap's
    transaction is stopped at its record (a trigger waiting for pgvc_gate), so it is granted
    right after that commit, before the check."""
    done = django("migrate", "-v", "0", factor=2)
    assert done.returncode == 0, done.stderr
    before = q("SELECT 'deferapp_totals'::regclass::oid::bigint")
    q(GATE_SQL)
    locker = psycopg_compat._connect(DB)
    queued = threading.Thread(
        target=lambda: locker.cursor().execute(f"BEGIN; LOCK TABLE {HISTORY} IN ACCESS EXCLUSIVE MODE")
    )
    try:
        with processes.holding_lock(DB, "pgvc_gate"):
            proc = subprocess.Popen(
                [sys.executable, "-m", "django", "refresh_pgviews", option],
                cwd=ROOT, env=_env(2), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            processes.waiting_pid(DB, "pgvc_gate")  # swapped, not committed: the record waits
            queued.start()
            locker_pid = processes.waiting_pid(DB, HISTORY)
        out, err = processes.interrupt(proc, signum, lambda: _history_waiter(locker_pid))
    finally:
        queued.join(60)
        locker.cursor().execute("ROLLBACK")
        locker.close()
        q(
            "DROP TRIGGER pgvc_gate ON django_pgviews_c_refresh; DROP FUNCTION pgvc_gate(); DROP TABLE pgvc_gate"
        )
    assert "Traceback" not in err, err
    assert proc.returncode == 128 + signum, (out, err)
    assert (
        f"interrupted by {signal.Signals(signum).name}: swapped in before the interrupt: deferapp.Totals"
        in err
    )
    assert "nothing was changed" not in err and "nothing was swapped in" not in err, err
    # As it says: the new version serves (its refresh recorded), nothing waits.
    assert q("SELECT 'deferapp_totals'::regclass::oid::bigint") != before
    assert q("SELECT sum(value)::int FROM deferapp_totals") == [(120,)]
    assert q(
        f"SELECT plain_reason FROM {HISTORY} WHERE view = 'deferapp.Totals' ORDER BY id DESC LIMIT 1"
    ) == [("pending rebuild",)]
    done = django("refresh_pgviews", "--pending", factor=2)
    assert done.returncode == 0 and "nothing pending" in done.stdout, done


def test_the_message_names_what_was_populated_and_swapped_before_the_interrupt():
    from django_pgviews_c.pending import PendingInterrupted, PendingResult

    result = PendingResult(swapped=["a.A"], selected=["a.A", "a.B", "a.C"], populated=["a.A", "a.B"])
    text = PendingInterrupted(result, signal.SIGTERM).summary()
    assert text == (
        "interrupted by SIGTERM: the rebuilds of a.B, a.C are still pending (their old versions "
        "still serve; refresh_pgviews --pending completes them); populated before the interrupt, "
        "kept for the next --pending: a.B; swapped in before the interrupt: a.A"
    ), text


def test_a_pass_interrupted_before_it_read_a_database_does_not_say_nothing_waits():
    from django_pgviews_c.pending import PendingInterrupted, PendingResult

    # Interrupted while reading the first database's waiting versions: none was read anywhere.
    result = PendingResult(databases=["default", "archive"])
    text = PendingInterrupted(result, signal.SIGINT).summary()
    assert text == (
        "interrupted by SIGINT: databases 'default', 'archive' not reached: the deferred rebuilds "
        "waiting there, if any, are still pending (refresh_pgviews --pending completes them); "
        "nothing was swapped in"
    ), text


def test_a_refresher_stopped_by_a_second_signal_names_the_rebuild_left_pending(defer_db):  # noqa: F811
    from tests.processes import Reader

    done = django("migrate", "-v", "0", factor=2)
    assert done.returncode == 0, done.stderr
    with processes.holding_lock(DB, "deferapp_reading"):
        proc = subprocess.Popen(
            [sys.executable, "-u", "-m", "django", "pgviews_refresher", "--poll", "0.3"],
            cwd=ROOT, env=_env(2), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        reader = Reader(proc)
        try:
            processes.waiting_pid(DB, "deferapp_reading")
            proc.send_signal(signal.SIGTERM)
            reader.wait_for("SIGTERM: stopping after the running refresh")
            proc.send_signal(signal.SIGTERM)  # the second: cancel the running REFRESH
            assert proc.wait(timeout=60) == 128 + signal.SIGTERM, reader.seen
            line = reader.wait_for("interrupted by SIGTERM")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert PENDING_DETAIL in line and "nothing was swapped in" in line, line
    assert q("SELECT sum(value)::int FROM deferapp_totals") == [(60,)]


# ---- a --pending pass that spans two databases ---------------------------------------------------

ARCHIVE = "pgviews_c_defer_archive" + os.environ.get("PGVIEWS_DB_SUFFIX", "")
ARCHIVE_WAITING = _core.derived_name("deferapp_archive_totals", "_pgvc_pending")


def _archive_env(factor: int) -> dict[str, str]:
    return processes.django_env("tests.deferproject.archive", DEFER_FACTOR=str(factor))


def _archive_run(*args: str, factor: int) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-m", "django", *args], cwd=ROOT, env=_archive_env(factor),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done


@pytest.fixture
def two_databases():
    """deferapp.Totals on the default database and deferapp.ArchiveTotals on "archive", each with
    its rebuild deferred by a deploy (DEFER_FACTOR 2): a new version waits beside each."""
    for name in (DB, ARCHIVE):
        psycopg_compat.recreate_database(name)
    try:
        _archive_run("migrate", "--database", "archive", "--run-syncdb", "-v", "0", factor=1)
        _archive_run("migrate", "--run-syncdb", "-v", "0", factor=1)
        for name in (DB, ARCHIVE):
            psycopg_compat.query(name, "INSERT INTO deferapp_reading (value) VALUES (10), (20), (30)")
        _archive_run("refresh_pgviews", factor=1)
        _archive_run("migrate", "-v", "0", factor=2)  # the deploy: both rebuilds wait
        assert psycopg_compat.query(ARCHIVE, f"SELECT to_regclass('{ARCHIVE_WAITING}') IS NOT NULL") == [
            (True,)
        ]
        yield
    finally:
        for name in (DB, ARCHIVE):
            psycopg_compat.drop_database(name)


def _interrupted_pending(dbname: str) -> tuple[str, str, int]:
    """refresh_pgviews --pending, sent SIGINT while its REFRESH on ``dbname`` waits for a lock."""
    with processes.holding_lock(dbname, "deferapp_reading"):
        proc = subprocess.Popen(
            [sys.executable, "-m", "django", "refresh_pgviews", "--pending"],
            cwd=ROOT, env=_archive_env(2), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        out, err = processes.interrupt(
            proc, signal.SIGINT, lambda: processes.waiting_pid(dbname, "deferapp_reading")
        )
    return out, err, proc.returncode


def test_an_interrupt_names_the_databases_the_pass_did_not_reach(two_databases):
    # Interrupted on the default database: the archive's rebuild was never looked at. The message
    # names that database rather than leaving it out, as if the default's rebuild were all.
    out, err, returncode = _interrupted_pending(DB)
    assert "Traceback" not in err and returncode == 128 + signal.SIGINT, (out, err)
    assert PENDING_DETAIL in err, err
    assert (
        "database 'archive' not reached: the deferred rebuilds waiting there, if any, are still "
        "pending (refresh_pgviews --pending completes them); nothing was swapped in"
    ) in err, err
    assert psycopg_compat.query(ARCHIVE, f"SELECT to_regclass('{ARCHIVE_WAITING}') IS NOT NULL") == [(True,)]
    done = _archive_run("refresh_pgviews", "--pending", factor=2)
    assert "deferapp.Totals" in done.stdout and "deferapp.ArchiveTotals" in done.stdout, done.stdout
    assert psycopg_compat.query(ARCHIVE, "SELECT sum(value)::int FROM deferapp_archive_totals") == [(120,)]


def test_an_interrupt_on_the_last_database_names_what_the_first_swapped_in(two_databases):
    out, err, returncode = _interrupted_pending(ARCHIVE)
    assert "Traceback" not in err and returncode == 128 + signal.SIGINT, (out, err)
    assert (
        "the rebuild of deferapp.ArchiveTotals is still pending (the old version still serves; "
        "refresh_pgviews --pending completes it); swapped in before the interrupt: deferapp.Totals"
    ) in err, err
    assert "not reached" not in err, err
