"""A --stale pass with --jobs N opens the C loop's connections while its staleness check runs
(passes.EarlyConnections): the loop takes them over rather than connecting after the check, and
the pass closes them whatever happens to the check (nothing stale, one view, a failure, an
interrupt)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection

from django_pgviews_c import _core, freshness, passes
from django_pgviews_c.refresh import connection_params
from tests import psycopg_compat
from tests.test_freshness import other_session, refresh_all, views, wait_counted  # noqa: F401
from tests.test_stale_cost import registered  # noqa: F401

BOUND = 30.0  # seconds: far beyond a local connect
ROOT = Path(__file__).resolve().parent.parent


def loop_backends() -> list[int]:
    """The pids of the C loop's sessions on the test database (its application_name)."""
    rows = psycopg_compat.query(
        connection.settings_dict["NAME"],
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
        "AND application_name = %s AND pid <> pg_backend_pid()",
        [connection_params(connection)["application_name"]],
    )
    return sorted(row[0] for row in rows)


def wait_backends(count: int) -> list[int]:
    """Wait until the loop has exactly ``count`` sessions on the test database."""
    deadline = time.monotonic() + BOUND
    while len(pids := loop_backends()) != count:
        assert time.monotonic() < deadline, f"{len(pids)} loop sessions after {BOUND}s, not {count}"
        time.sleep(0.02)
    return pids


@pytest.fixture
def check_sees(monkeypatch):
    """Runs ``during()`` inside each staleness check of a pass, after the check itself."""
    seen: list[object] = []

    def install(during):
        real = freshness.freshness

        def check(*args, **kwargs):
            items = real(*args, **kwargs)
            seen.append(during())
            return items

        monkeypatch.setattr(freshness, "freshness", check)
        return seen

    return install


def make_stale(vs) -> None:
    refresh_all(vs)
    other_session("UPDATE fr_a SET v = v + 1 WHERE id = 1")
    wait_counted("fr_a", 3)


def test_the_loops_connections_are_open_while_the_check_runs_and_the_loop_uses_them(registered, check_sees):  # noqa: F811
    vs = registered
    make_stale(vs)
    seen = check_sees(lambda: wait_backends(2))
    result = freshness.refresh_pass(models=list(vs.models.values()), jobs=2)
    assert sorted(result.refreshed) == ["viewtest.FrMatA", "viewtest.FrMatJoin", "viewtest.FrMatOfMat"]
    assert len(seen) == 1 and len(seen[0]) == 2  # connected during the check
    wait_backends(0)  # the loop closed them when it ended


@pytest.mark.parametrize("error", [RuntimeError("the check failed"), KeyboardInterrupt()])
def test_the_connections_are_closed_when_the_check_fails_or_is_interrupted(registered, check_sees, error):  # noqa: F811
    vs = registered

    def connected_then_fail():
        wait_backends(2)
        raise error

    check_sees(connected_then_fail)
    with pytest.raises(type(error)) as caught:
        freshness.refresh_pass(models=list(vs.models.values()), jobs=2)
    assert caught.value is error
    wait_backends(0)  # closed, though the traceback still holds the pass's frame


def test_the_connections_are_closed_when_nothing_or_one_view_is_stale(registered, check_sees):  # noqa: F811
    vs = registered
    refresh_all(vs)
    check_sees(lambda: wait_backends(2))
    fresh = freshness.refresh_pass(models=list(vs.models.values()), jobs=2)
    assert fresh.refreshed == []
    wait_backends(0)
    other_session("UPDATE fr_a SET v = v + 1 WHERE id = 1")
    wait_counted("fr_a", 3)
    one = freshness.refresh_pass(models=[vs.models["FrMatA"]], jobs=2)
    assert one.refreshed == ["viewtest.FrMatA"]  # on Django's connection: no loop
    wait_backends(0)


def test_inside_a_transaction_or_for_a_due_pass_no_connection_is_opened_early(registered, monkeypatch):  # noqa: F811
    from django.db import transaction

    vs = registered
    refresh_all(vs)
    opened: list[object] = []
    monkeypatch.setattr(passes, "EarlyConnections", lambda *a: opened.append(a))
    with transaction.atomic():
        freshness.refresh_pass(models=list(vs.models.values()), jobs=2)
    # A --due pass mostly finds nothing due: it connects only when the loop has work.
    freshness.refresh_pass(models=list(vs.models.values()), jobs=2, due=True)
    assert opened == []


def test_run_parallel_refuses_connections_it_did_not_make():
    with pytest.raises(TypeError, match="connect_loop"):
        _core.run_parallel(None, ["SELECT 1", "SELECT 1"], [[], []], None, 2, connections=object())


def test_connect_loop_connections_serve_a_run_and_close_when_not_taken():
    params = connection_params(connection)
    made = _core.connect_loop(params, 3)
    assert len(wait_backends(3)) == 3
    # Two tasks: the run takes two and closes the third at once.
    outcome = _core.run_parallel(params, ["SELECT 1", "SELECT 2"], [[], []], None, 3, connections=made)
    assert [state for state, _s, _e in outcome] == ["ok", "ok"]
    wait_backends(0)
    with pytest.raises(ValueError, match="holds 0 connections"):
        _core.run_parallel(params, ["SELECT 1", "SELECT 2"], [[], []], None, 2, connections=made)
    spare = _core.connect_loop(params, 2)
    wait_backends(2)
    _core.close_loop_connections(spare)
    wait_backends(0)


_SHARED = """
import json, sys, threading
from django_pgviews_c import _core

conninfo, how = json.loads(sys.argv[1]), sys.argv[2]

def use(made):
    if how == "close":
        _core.close_loop_connections(made)
        return
    try:
        out = _core.run_parallel(conninfo, ["SELECT 1"], [[]], None, 1, connections=made)
        assert [state for state, _s, _e in out] == ["ok"], out
    except ValueError as exc:  # the other thread took them first
        assert "holds 0 connections" in str(exc), exc

for _ in range(10):
    made = _core.connect_loop(conninfo, 6)
    stop = threading.Event()
    def other():
        while not stop.is_set():
            use(made)
    thread = threading.Thread(target=other)
    thread.start()
    use(made)
    stop.set()
    thread.join()
print("done")
"""


@pytest.mark.parametrize("how", ["close", "run"])
def test_one_capsule_used_from_two_threads_at_once(how, transactional_db):
    # Closing a connection releases the GIL: another thread closing the same capsule, or handing
    # it to a run, once found the connection still in it and closed (or took) it a second time.
    # In a child process: a crash is a failure of this test, not a lost run.
    child = subprocess.run(
        [sys.executable, "-c", _SHARED, json.dumps(connection_params(connection)), how],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (child.returncode, child.stdout.strip()) == (0, "done"), child.stderr[-2000:]
    wait_backends(0)
