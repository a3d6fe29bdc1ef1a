"""What pgviews_status says of a deferred rebuild at each of its steps, as a user meets them after
changing a deferred view's SQL (tests/deferproject, real processes): before any sync (nothing
waits yet: sync_pgviews is what to run, not --pending), once the sync made the waiting version
(WITH NO DATA), and once a --pending whose swap could not get its locks populated it."""

from __future__ import annotations

import json

from tests import psycopg_compat
from tests.test_defer import DB, defer_db, django, q  # noqa: F401 (defer_db is a fixture)


def _totals(factor: int) -> dict:
    done = django("pgviews_status", "--json", factor=factor)
    assert done.returncode == 0, done.stderr
    row = {r["label"]: r for r in json.loads(done.stdout)}["deferapp.Totals"]
    # An estimate the server does not have yet (never analyzed) is null, never -1.
    assert row["rows"] is None or row["rows"] >= 0, row
    return row


def test_status_says_what_brings_a_deferred_rebuild_on_at_each_step(defer_db):  # noqa: F811
    # The code changed, no sync ran: no waiting version exists, --pending has nothing to do.
    row = _totals(2)
    assert row["state"] == "changed", row
    assert "waiting version is not there yet" in row["detail"] and "sync_pgviews" in row["detail"], row
    done = django("pgviews_status", "--check", factor=2)
    assert done.returncode == 1
    assert "run sync_pgviews (deferapp.Totals)" in done.stderr and "--pending" not in done.stderr, done.stderr
    done = django("refresh_pgviews", "--pending", factor=2)
    assert done.returncode == 0 and "completed 0 pending rebuilds" in done.stdout, done
    # The sync makes the waiting version: now --pending is what to run.
    assert django("sync_pgviews", "-v", "0", factor=2).returncode == 0
    row = _totals(2)
    assert row["state"] == "pending rebuild" and "WITH NO DATA" in row["detail"], row
    done = django("pgviews_status", "--check", factor=2)
    assert done.returncode == 1 and "run refresh_pgviews --pending (deferapp.Totals)" in done.stderr, done
    # A reader holds the view: --pending populates the waiting version, the swap gives up.
    reader = psycopg_compat._connect(DB)
    try:
        reader.cursor().execute("BEGIN; SELECT * FROM deferapp_totals")
        done = django("refresh_pgviews", "--pending", factor=2)
        assert done.returncode == 1 and "could not take the locks" in done.stderr, done
    finally:
        reader.close()
    row = _totals(2)
    assert row["state"] == "pending rebuild", row
    assert "populated" in row["detail"] and "WITH NO DATA" not in row["detail"], row
    assert q("SELECT sum(value)::int FROM deferapp_totals") == [(60,)]  # the old version serves on
    done = django("refresh_pgviews", "--pending", factor=2)
    assert done.returncode == 0 and "swapped in the rebuilt deferapp.Totals" in done.stdout, done
    assert _totals(2)["state"] == "in sync"
    assert q("SELECT sum(value)::int FROM deferapp_totals") == [(120,)]


#: tests/deferproject with PGVIEWS_DEFER_REBUILD turned off again.
NODEFER = ("--settings", "tests.deferproject.nodefer")
WAITING = "SELECT count(*)::int FROM pg_class WHERE relname LIKE '%%pgvc_pending%%' AND relkind = 'm'"


def _wait_then_turn_deferral_off() -> None:
    """The deploy defers Totals' rebuild; then the setting is turned off while it waits."""
    assert django("sync_pgviews", "-v", "0", factor=2).returncode == 0
    assert q(WAITING) == [(1,)]
    assert q("SELECT sum(value)::int FROM deferapp_totals") == [(60,)]


def test_a_rebuild_that_waits_is_pending_after_deferral_is_turned_off(defer_db):  # noqa: F811
    _wait_then_turn_deferral_off()
    done = django("pgviews_status", "--json", *NODEFER, factor=2)
    assert done.returncode == 0, done.stderr
    row = {r["label"]: r for r in json.loads(done.stdout)}["deferapp.Totals"]
    assert row["state"] == "pending rebuild", row
    assert "no longer defers" in row["detail"] and "refresh_pgviews --pending swaps it in" in row["detail"], (
        row
    )
    done = django("pgviews_status", "--check", *NODEFER, factor=2)
    assert done.returncode == 1 and "run refresh_pgviews --pending (deferapp.Totals)" in done.stderr, done
    # --pending completes it, whatever the setting says now.
    done = django("refresh_pgviews", "--pending", *NODEFER, factor=2)
    assert done.returncode == 0, done.stderr
    assert "swapped in the rebuilt deferapp.Totals" in done.stdout, done.stdout
    assert "completed 1 pending rebuild in" in done.stdout, done.stdout
    assert q("SELECT sum(value)::int FROM deferapp_totals") == [(120,)]
    assert q("SELECT total FROM deferapp_report") == [(120,)]
    assert q(WAITING) == [(0,)]
    done = django("pgviews_status", "--check", *NODEFER, factor=2)
    assert done.returncode == 0, done


def test_a_sync_without_deferral_rebuilds_in_place_and_drops_the_waiting_version(defer_db):  # noqa: F811
    _wait_then_turn_deferral_off()
    done = django("sync_pgviews", "-v", "2", *NODEFER, factor=2)
    assert done.returncode == 0, done.stderr
    assert "rebuilt now, and its waiting version dropped" in done.stdout, done.stdout
    assert q("SELECT sum(value)::int FROM deferapp_totals") == [(120,)]
    assert q("SELECT total FROM deferapp_report") == [(120,)]
    assert q("SELECT relispopulated FROM pg_class WHERE relname = 'deferapp_totals'") == [(True,)]
    assert q(WAITING) == [(0,)]  # no orphan left beside it
    done = django("pgviews_status", "--check", *NODEFER, factor=2)
    assert done.returncode == 0, done
    done = django("refresh_pgviews", "--pending", *NODEFER, factor=2)
    assert done.returncode == 0 and "completed 0 pending rebuilds" in done.stdout, done


def test_status_keeps_saying_a_pending_rebuild_failed_after_the_old_version_is_refreshed(defer_db):  # noqa: F811
    # value * 2 is out of the integer range: the new version cannot be populated, the old one can.
    q("INSERT INTO deferapp_reading (value) VALUES (2000000000)")
    assert django("sync_pgviews", "-v", "0", factor=2).returncode == 0
    done = django("refresh_pgviews", "--pending", factor=2)
    assert done.returncode == 1 and "integer out of range" in done.stdout + done.stderr, done
    assert "integer out of range" in _totals(2)["detail"], _totals(2)
    # The old version refreshed on its own (by name, or by --stale once its table's write shows):
    # the rebuild still waits, and still cannot be completed.
    done = django("refresh_pgviews", "deferapp.Totals", factor=2)
    assert "refreshed deferapp.Totals" in done.stdout, done
    row = _totals(2)
    assert row["state"] == "pending rebuild", row
    assert "the last attempt to complete it failed" in row["detail"], row
    assert "integer out of range" in row["detail"], row
