"""An interrupted refresh_pgviews --pending (or --due, which completes deferred rebuilds first) names
the rebuilds it leaves pending and says the old version still serves (tests/deferproject, real
processes): the signal is sent once the REFRESH of the waiting version is seen waiting in
pg_locks for a table lock this test holds."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from tests import processes
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
