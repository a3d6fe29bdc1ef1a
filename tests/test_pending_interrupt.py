"""An interrupted refresh_pgviews --pending (or --due, which completes deferred rebuilds first) names
the rebuilds it leaves pending and says the old version still serves (tests/deferproject, real
processes): the signal is sent once the REFRESH of the waiting version is seen waiting in
pg_locks for a table lock this test holds."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

import pytest

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
    with processes.table_locked(DB, "deferapp_reading"):
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
        with processes.table_locked(DB, "pgvc_gate"):
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


def test_a_refresher_stopped_by_a_second_signal_names_the_rebuild_left_pending(defer_db):  # noqa: F811
    from tests.test_refresher import Reader

    done = django("migrate", "-v", "0", factor=2)
    assert done.returncode == 0, done.stderr
    with processes.table_locked(DB, "deferapp_reading"):
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
