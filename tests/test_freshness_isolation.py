"""Staleness under REPEATABLE READ and SERIALIZABLE: a REFRESH inside such a transaction reads
the transaction's snapshot, which may be older than the counters captured before it. A write
committed in between is in the counters but not in the data: the view must count as stale,
never as fresh."""

from __future__ import annotations

import pytest
from django.db import connection, transaction

from tests.helpers import execute
from tests.test_freshness import other_session, states, views, wait_counted

__all__ = ["views"]  # the fixture, shared with test_freshness


def _rows(table: str) -> int:
    with connection.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {table}")
        return cur.fetchone()[0]


@pytest.mark.parametrize("level", ["REPEATABLE READ", "SERIALIZABLE"])
def test_a_refresh_reading_an_older_snapshot_leaves_its_view_stale(views, level):
    mat = views.models["FrMatA"]
    mat.refresh()
    assert not states(views)["FrMatA"].stale
    with transaction.atomic():
        with connection.cursor() as cur:
            cur.execute(f"SET TRANSACTION ISOLATION LEVEL {level}")
            cur.execute("SELECT count(*) FROM fr_a")  # the transaction's snapshot, taken here
        other_session("INSERT INTO fr_a VALUES (3, 3)")
        wait_counted("fr_a", 3)  # counted before the refresh below captures the counters
        mat.refresh()
    assert _rows("t_frmata") == 2  # the data is the old snapshot's: row 3 is not in it
    state = states(views)["FrMatA"]
    assert state.stale, state
    assert any(f"{level.lower()} transaction" in why for why in state.reasons), state.reasons
    mat.refresh()  # outside the transaction: the data catches up, the view is fresh again
    assert _rows("t_frmata") == 3
    assert not states(views)["FrMatA"].stale


def test_read_committed_inside_a_transaction_keeps_the_guarantee_without_a_mark(views):
    mat = views.models["FrMatA"]
    with transaction.atomic():
        execute("SELECT count(*) FROM fr_a")
        other_session("INSERT INTO fr_a VALUES (3, 3)")
        wait_counted("fr_a", 3)
        mat.refresh()  # its own statement, its own snapshot: row 3 is in the data
    assert _rows("t_frmata") == 3
    assert not states(views)["FrMatA"].stale


def test_a_session_defaulting_to_repeatable_read_refreshes_in_one_trip_as_read_committed(views):
    """Model.refresh() outside a transaction runs capture, REFRESH and record in one
    transaction of its own, READ COMMITTED whatever the session's default: the REFRESH's
    snapshot comes after the capture, so the record needs no mark."""
    mat = views.models["FrMatA"]
    execute("SET default_transaction_isolation = 'repeatable read'")
    try:
        mat.refresh()
        with connection.cursor() as cur:
            cur.execute("SHOW default_transaction_isolation")
            assert cur.fetchone()[0] == "repeatable read"
    finally:
        execute("RESET default_transaction_isolation")
    last = states(views)["FrMatA"]
    assert not last.stale, last.reasons


def test_refresh_views_in_a_repeatable_read_transaction_leaves_its_views_stale(views):
    """refresh_views() inside the caller's transaction refreshes on its connection (the C loop,
    jobs > 1, refuses an open transaction): the older snapshot again, marked."""
    from django_pgviews_c.refresh import refresh_views

    mat = views.models["FrMatA"]
    mat.refresh()
    with transaction.atomic():
        with connection.cursor() as cur:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cur.execute("SELECT count(*) FROM fr_a")
        other_session("INSERT INTO fr_a VALUES (3, 3)")
        wait_counted("fr_a", 3)
        refresh_views([mat])
    assert _rows("t_frmata") == 2
    state = states(views)["FrMatA"]
    assert state.stale, state.reasons
