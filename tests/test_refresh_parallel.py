"""The parallel refresh loop (pqpath.c) over real connections: outcomes per statement, failures
that stop only their dependants, the server's error fields, and Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection, transaction

from django_pgviews_c import _core
from django_pgviews_c.exceptions import CycleError, PGViewsError, RefreshError
from django_pgviews_c.refresh import connection_params, refresh_views
from tests import psycopg_compat
from tests.helpers import catalog_rows, execute

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def log_table(transactional_db):
    execute("CREATE TABLE rp_log (tag text)")
    yield "rp_log"
    execute("DROP TABLE IF EXISTS rp_log")


def _tags() -> list[str]:
    return [r[0] for r in catalog_rows("SELECT tag FROM rp_log ORDER BY tag")]


def test_every_statement_runs_once_in_dependency_order(log_table):
    # Each statement records the tags already there: a dependency must be committed before.
    stmts = [
        "INSERT INTO rp_log SELECT 'a:' || count(*) FROM rp_log",
        "INSERT INTO rp_log SELECT 'b:' || string_agg(tag, ',' ORDER BY tag) FROM rp_log WHERE tag LIKE 'a:%'",
        "INSERT INTO rp_log SELECT 'c:' || string_agg(tag, ',' ORDER BY tag) FROM rp_log "
        "WHERE tag LIKE 'a:%' OR tag LIKE 'b:%'",
        "INSERT INTO rp_log VALUES ('d')",
    ]
    events = []
    out = _core.run_parallel(
        connection_params(connection),
        stmts,
        [[], [0], [0, 1], []],
        [3.0, 2.0, 1.0, 0.0],
        2,
        on_event=lambda *e: events.append(e[:2]),
    )
    assert [state for state, _, _ in out] == ["ok"] * 4
    assert all(error is None and seconds >= 0 for _, seconds, error in out)
    tags = _tags()
    assert len(tags) == 4 and "d" in tags
    a = next(t for t in tags if t.startswith("a:"))
    # b saw a; c saw a and b: each ran after what it depends on had committed.
    assert next(t for t in tags if t.startswith("b:")) == f"b:{a}"
    assert next(t for t in tags if t.startswith("c:")) == f"c:{a},b:{a}"
    # Every statement was reported running, then ok.
    for k in range(4):
        assert [s for i, s in events if i == k] == ["running", "ok"]


def test_a_failure_skips_only_its_dependants(log_table):
    stmts = [
        "SELECT 1 / 0",  # 0 fails
        "INSERT INTO rp_log VALUES ('after-0')",  # 1 needs 0: skipped
        "INSERT INTO rp_log VALUES ('after-1')",  # 2 needs 1: skipped
        "INSERT INTO rp_log VALUES ('free')",  # 3 independent: ok
        "INSERT INTO rp_log VALUES ('free-2')",  # 4 needs 3: ok
    ]
    out = _core.run_parallel(connection_params(connection), stmts, [[], [0], [1], [], [3]], [0.0] * 5, 2)
    assert [state for state, _, _ in out] == ["failed", "skipped", "skipped", "ok", "ok"]
    error = out[0][2]
    assert error["sqlstate"] == "22012"
    assert "division by zero" in error["message"]
    assert error["connection_lost"] is False
    assert out[1][2] is None and out[2][2] is None
    assert _tags() == ["free", "free-2"]


def test_errors_carry_the_servers_fields(log_table):
    out = _core.run_parallel(
        connection_params(connection),
        [
            "SELECT nope FROM rp_log",
            "DO $$ BEGIN RAISE EXCEPTION 'custom' USING DETAIL = 'the detail', "
            "HINT = 'the hint', ERRCODE = 'P0042'; END $$",
        ],
        [[], []],
        [0.0, 0.0],
        2,
    )
    (s0, _, e0), (s1, _, e1) = out
    assert (s0, s1) == ("failed", "failed")
    assert e0["sqlstate"] == "42703" and "nope" in e0["message"]
    assert e1["sqlstate"] == "P0042" and e1["message"].strip() == "custom"
    assert e1["detail"] == "the detail" and e1["hint"] == "the hint"


def test_setup_runs_on_every_connection(log_table):
    out = _core.run_parallel(
        connection_params(connection),
        [
            "INSERT INTO rp_log SELECT current_setting('application_name') || ':1'",
            "INSERT INTO rp_log SELECT current_setting('application_name') || ':2'",
        ],
        [[], []],
        [0.0, 0.0],
        2,
        setup="SET application_name = 'pgvc-setup-check'",
    )
    assert [s for s, _, _ in out] == ["ok", "ok"]
    assert _tags() == ["pgvc-setup-check:1", "pgvc-setup-check:2"]


def test_bad_arguments_are_refused_before_connecting():
    with pytest.raises(ValueError, match="jobs"):
        _core.run_parallel({}, ["SELECT 1"], [[]], [0.0], 0)
    with pytest.raises(ValueError, match="one dependency list"):
        _core.run_parallel({}, ["SELECT 1"], [], [0.0], 1)
    with pytest.raises(IndexError):
        _core.run_parallel({}, ["SELECT 1"], [[3]], [0.0], 1)


def test_a_dependency_cycle_is_refused_not_silently_skipped():
    # Statements in a cycle could never start; they used to come back 'skipped' with no error.
    with pytest.raises(CycleError) as info:
        _core.run_parallel(
            {"dbname": "never-connected"}, ["SELECT 1", "SELECT 2", "SELECT 3"], [[], [2], [1]], [0.0] * 3, 2
        )
    assert info.value.path in (
        ["statement 1", "statement 2", "statement 1"],
        ["statement 2", "statement 1", "statement 2"],
    )


def test_no_statements_and_more_jobs_than_statements(log_table):
    assert _core.run_parallel(connection_params(connection), [], [], [], 4) == []
    out = _core.run_parallel(
        connection_params(connection), ["INSERT INTO rp_log VALUES ('x')"] * 2, [[], [0]], [0.0, 0.0], 8
    )
    assert [s for s, _, _ in out] == ["ok", "ok"]
    assert _tags() == ["x", "x"]


# ---- refresh_views(jobs=N) over the project's views -------------------------------------------


@pytest.fixture
def broken_matview(transactional_db):
    """viewtest.MaterializedRelatedView replaced by a plain table: its REFRESH fails."""
    execute(
        "ALTER MATERIALIZED VIEW viewtest_materializedrelatedview RENAME TO pgvc_saved_mrv; "
        "CREATE TABLE viewtest_materializedrelatedview (model_id int, id int)"
    )
    yield
    execute(
        "DROP TABLE viewtest_materializedrelatedview; "
        "ALTER MATERIALIZED VIEW pgvc_saved_mrv RENAME TO viewtest_materializedrelatedview"
    )


def test_refresh_views_in_parallel_names_the_failed_view(broken_matview):
    with pytest.raises(RefreshError) as info:
        refresh_views(using="default", jobs=2)
    err = info.value
    assert list(err.failures) == ["viewtest.MaterializedRelatedView"]
    assert "is not a materialized view" in err.failures["viewtest.MaterializedRelatedView"]
    assert "SQLSTATE" in err.failures["viewtest.MaterializedRelatedView"]
    assert err.skipped == ["viewtest.DependantMaterializedView"]
    assert "viewtest.MaterializedRelatedView" in str(err) and "viewtest.DependantMaterializedView" in str(err)


@pytest.mark.django_db(transaction=True, databases="__all__")
def test_refresh_views_in_parallel_refreshes_every_view_on_its_database():
    from tests.viewtest.models import MaterializedRelatedView, TestModel

    TestModel.objects.create(name="one")
    result = refresh_views(jobs=2)
    assert result.failed == {} and result.skipped == []
    assert "multidbtest.MonthlyObservation" in result.refreshed
    assert "viewtest.MaterializedRelatedView" in result.refreshed
    assert MaterializedRelatedView.objects.count() == 1


@pytest.mark.django_db(transaction=True, databases="__all__")
def test_a_lock_wait_is_said_when_the_views_are_on_several_databases():
    """Without ``using``, one parallel run per database: each says its lock waits, naming the
    holder, as a run on one database does."""
    import queue

    from tests import processes
    from tests.helpers import in_thread

    said: queue.Queue[str] = queue.Queue()
    with processes.holding_lock(connection.settings_dict["NAME"], "viewtest_testmodel") as holder:
        holder_pid = processes.backend_pid(holder)
        thread, outcome = in_thread(lambda: refresh_views(jobs=2, waits=said.put))
        try:
            line = said.get(timeout=30)
        except queue.Empty:
            line = ""
    thread.join(60)
    assert ": waiting " in line and "for a lock to refresh it" in line, (line, outcome)
    assert f"held by pid {holder_pid} (" in line and "viewtest_testmodel" in line, line
    assert "error" not in outcome, outcome
    assert "multidbtest.MonthlyObservation" in outcome["result"].refreshed


@pytest.mark.django_db(transaction=True)
def test_parallel_refresh_inside_a_transaction_is_refused():
    with transaction.atomic(), pytest.raises(PGViewsError, match="transaction"):
        refresh_views(using="default", jobs=2)


# ---- Ctrl-C -----------------------------------------------------------------------------------

_CHILD = """
import json, sys
from django_pgviews_c import _core
conninfo = json.loads(sys.argv[1])
try:
    _core.run_parallel(conninfo, ["SELECT pg_sleep(30)"] * 3, [[], [], []], [0.0, 0.0, 0.0], 2)
except KeyboardInterrupt:
    print("interrupted", flush=True)
    raise
print("finished", flush=True)
"""


def _sleepers(dbname: str, app: str) -> list[tuple]:
    return psycopg_compat.query(
        dbname,
        "SELECT pid, state FROM pg_stat_activity WHERE application_name = %s AND query LIKE %s "
        "AND state = 'active'",
        [app, "%pg_sleep(30)%"],
    )


@pytest.mark.django_db(transaction=True)
def test_ctrl_c_cancels_every_running_statement():
    dbname = connection.settings_dict["NAME"]
    app = f"pgvc-ctrl-c-{os.getpid()}"
    params = dict(connection_params(connection), application_name=app)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, json.dumps(params)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Ctrl-C once both statements run on the server: every one of them must be cancelled.
        deadline = time.monotonic() + 60
        while len(_sleepers(dbname, app)) < 2:
            assert time.monotonic() < deadline and child.poll() is None, "the child never ran its statements"
            time.sleep(0.05)
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=20)  # a hang guard, below the 30 s sleeps
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode != 0
    assert "interrupted" in out and "finished" not in out
    assert "KeyboardInterrupt" in err
    assert _sleepers(dbname, app) == []
