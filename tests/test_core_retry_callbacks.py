"""on_event at a lock retry: while a guarded statement backs off from a busy lock, the C loop
reports "retrying" to its on_event. A callback that misbehaves there (raises, is interrupted,
runs another loop, ends the loop's own sessions) stops the run or lets it go on, never crashes
it, and leaves no session of the loop behind."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection

from django_pgviews_c import _core
from django_pgviews_c.refresh import connection_params
from tests import psycopg_compat
from tests.helpers import execute
from tests.processes import backend_pid, holding_lock, wait_for

APP = "pgviews-c retry callbacks"


class Boom(Exception):
    pass


@pytest.fixture
def busy(transactional_db):
    """The test database's name, its table rcb_busy held ACCESS EXCLUSIVE by another session
    (whose cursor is busy.holder)."""
    execute("CREATE TABLE rcb_busy (x int)")
    dbname = connection.settings_dict["NAME"]
    try:
        with holding_lock(dbname, "rcb_busy") as holder:
            yield dbname, holder
    finally:
        execute("DROP TABLE rcb_busy")


def _params() -> dict[str, str]:
    params = connection_params(connection)
    params["application_name"] = APP
    return params


def _loop_sessions(dbname: str) -> list[tuple]:
    sql = (
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
        "AND application_name = %s AND pid <> pg_backend_pid()"
    )
    return psycopg_compat.query(dbname, sql, [APP])


def _run(on_event: Any) -> list[tuple]:
    """The guarded LOCK TABLE waits behind the holder: three short tries (each reported as
    "retrying"), then a bounded last one; statement 1 has no guard."""
    return _core.run_parallel(
        _params(),
        ["LOCK TABLE rcb_busy", "SELECT 1"],
        [[], []],
        [2.0, 1.0],
        2,
        guard=["rcb_busy", None],
        on_event=on_event,
        lock_retries=3,
        lock_timeout_ms=20,
        last_lock_timeout_ms=300,
    )


@pytest.mark.parametrize("raised", [Boom, KeyboardInterrupt])
def test_a_callback_that_raises_at_a_retry_stops_the_run(busy, raised):
    dbname, _holder = busy
    events: list[tuple[int, str]] = []

    def on_event(k: int, state: str, seconds: float, error: Any) -> None:
        events.append((k, state))
        if state == "retrying":
            raise raised("at a retry")

    with pytest.raises(raised, match="at a retry"):
        _run(on_event)
    assert events[-1] == (0, "retrying")
    wait_for("the loop's sessions to end", lambda: not _loop_sessions(dbname))


def test_a_callback_that_runs_another_loop_at_each_retry(busy):
    dbname, holder = busy
    inner: list[list[str]] = []

    def on_event(k: int, state: str, seconds: float, error: Any) -> None:
        if state == "retrying":
            out = _core.run_parallel(_params(), ["SELECT 1", "SELECT 2"], [[], [0]], None, 2)
            inner.append([s for s, _t, _e in out])

    out = _run(on_event)
    assert inner == [["ok", "ok"]] * 3
    assert [s for s, _t, _e in out] == ["failed", "ok"]
    # The last try still names who holds the lock.
    assert [h["pid"] for h in out[0][2]["holders"]] == [backend_pid(holder)]
    wait_for("the loop's sessions to end", lambda: not _loop_sessions(dbname))


def test_a_callback_that_ends_the_loops_sessions_at_a_retry(busy):
    dbname, _holder = busy
    ended: list[list[tuple]] = []
    events: list[tuple[int, str]] = []

    def on_event(k: int, state: str, seconds: float, error: Any) -> None:
        events.append((k, state))
        # Once statement 1 is done: only the retried statement's session has work left.
        if state == "retrying" and not ended and (1, "ok") in events:
            sql = (
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name = %s"
            )
            ended.append(psycopg_compat.query(dbname, sql, [APP]))

    out = _run(on_event)
    # The retried statement meets its session's end: it fails with the server's reason.
    assert ended and ended[0], "no loop session was ended"
    assert out[0][0] == "failed" and out[0][2]["connection_lost"], out
    assert out[0][2]["message"] == "terminating connection due to administrator command"
    assert out[1][0] == "ok"
    wait_for("the loop's sessions to end", lambda: not _loop_sessions(dbname))
