"""The parallel refresh loop (pqpath.c) refreshing real materialized views over two
connections: dependency order, a failure stops its dependants only, refresh_views names the
failed view, and Ctrl-C leaves nothing running on the server."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from django.db import connection, transaction

from django_pgviews_c import _core
from django_pgviews_c.exceptions import PGViewsError, RefreshError
from django_pgviews_c.refresh import connection_params, refresh_views
from tests import psycopg_compat
from tests.helpers import ViewSet, catalog_rows, execute
from tests.viewtest.models import (
    DependantMaterializedView,
    MaterializedRelatedView,
    MaterializedRelatedViewWithIndex,
)
from tests.viewtest.models import (
    TestModel as ViewTestModel,
)

PROJECT_MATVIEWS = [MaterializedRelatedView, DependantMaterializedView, MaterializedRelatedViewWithIndex]


@pytest.fixture
def committed(transactional_db):
    """A table and three materialized views, committed so that new connections see them."""
    execute("CREATE TABLE t_lsrc (id int PRIMARY KEY, v int); INSERT INTO t_lsrc VALUES (1, 10), (2, 20)")
    vs = ViewSet()
    vs.view("LA", "SELECT id, v FROM t_lsrc", materialized=True)
    vs.view("LB", "SELECT sum(v)::int AS s FROM t_la", materialized=True, dependencies=("viewtest.LA",))
    vs.view("LC", "SELECT count(*)::int AS n FROM t_lsrc", materialized=True)
    vs.sync()
    yield vs
    execute("DROP TABLE IF EXISTS t_lsrc CASCADE")


def _run(statements, deps, jobs=2):
    events = []
    outcome = _core.run_parallel(
        connection_params(connection),
        statements,
        deps,
        [1.0] * len(statements),
        jobs,
        on_event=lambda k, state, seconds, error: events.append((k, state)),
    )
    return outcome, events


def test_refreshes_run_after_what_they_read(committed):
    execute("INSERT INTO t_lsrc VALUES (3, 30)")
    outcome, events = _run(
        [
            "REFRESH MATERIALIZED VIEW t_la",
            "REFRESH MATERIALIZED VIEW t_lb",
            "REFRESH MATERIALIZED VIEW t_lc",
        ],
        [[], [0], []],
    )
    assert [state for state, _, _ in outcome] == ["ok", "ok", "ok"]
    assert all(error is None for _, _, error in outcome)
    assert catalog_rows("SELECT s FROM t_lb") == [(60,)]  # read A's new rows
    assert catalog_rows("SELECT n FROM t_lc") == [(3,)]
    assert events.index((0, "ok")) < events.index((1, "running"))


def test_a_failed_refresh_skips_its_dependants_only(committed):
    execute("INSERT INTO t_lsrc VALUES (3, 30)")
    outcome, events = _run(
        [
            "SELECT 1 / 0",
            "REFRESH MATERIALIZED VIEW t_lb",
            "REFRESH MATERIALIZED VIEW t_lc",
            "REFRESH MATERIALIZED VIEW t_la",
        ],
        [[], [0], [], [1]],
    )
    assert [state for state, _, _ in outcome] == ["failed", "skipped", "ok", "skipped"]
    error = outcome[0][2]
    assert error["sqlstate"] == "22012" and error["message"] == "division by zero"
    assert catalog_rows("SELECT s FROM t_lb") == [(30,)]  # not refreshed
    assert catalog_rows("SELECT n FROM t_lc") == [(3,)]
    assert (1, "skipped") in events and (3, "skipped") in events


def test_refresh_views_jobs_2_names_the_failed_view(transactional_db):
    ViewTestModel.objects.create(name="a")
    dbname = connection.settings_dict["NAME"]
    # Another session reads one view: its plain refresh would wait for it, and times out.
    blocker = psycopg_compat._connect(dbname)
    try:
        blocker.autocommit = False
        blocker.cursor().execute("SELECT 1 FROM viewtest_materializedrelatedview LIMIT 1")
        with pytest.raises(RefreshError) as info:
            refresh_views(PROJECT_MATVIEWS, jobs=2, setup="SET lock_timeout = '200ms'")
    finally:
        blocker.rollback()
        blocker.close()
    err = info.value
    assert list(err.failures) == ["viewtest.MaterializedRelatedView"]
    assert "55P03" in err.failures["viewtest.MaterializedRelatedView"]
    assert err.skipped == ["viewtest.DependantMaterializedView"]
    assert "viewtest.MaterializedRelatedView" in str(err)
    assert catalog_rows("SELECT count(*) FROM viewtest_materializedrelatedviewwithindex") == [(1,)]
    result = refresh_views(PROJECT_MATVIEWS, jobs=2)
    assert sorted(result.refreshed) == sorted(m._meta.label for m in PROJECT_MATVIEWS)
    assert catalog_rows("SELECT count(*) FROM viewtest_dependantmaterializedview") == [(1,)]


@pytest.mark.django_db
def test_jobs_over_1_inside_atomic_is_refused():
    with transaction.atomic(), pytest.raises(PGViewsError, match="transaction.atomic"):
        refresh_views(PROJECT_MATVIEWS, jobs=2)


_CHILD = textwrap.dedent(
    """
    import json, sys
    from django_pgviews_c import _core
    def on_event(k, state, seconds, error):
        print(k, state, flush=True)
    _core.run_parallel(json.loads(sys.argv[1]), ["SELECT pg_sleep(30)"] * 3, [[], [], [0]],
                       [1.0, 1.0, 1.0], 2, on_event=on_event)
    print("finished", flush=True)
    """
)


def _lines_until(child: subprocess.Popen, wanted: set[str], timeout: float = 60) -> str:
    """Read the child's output until every wanted line has been printed; what was read. Reads
    the pipe's descriptor itself: a buffered readline() could hold both lines while select()
    waits for more."""
    data = b""
    fd = child.stdout.fileno()
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while not wanted <= {line.strip() for line in data.decode().splitlines()}:
            assert time.monotonic() < deadline and child.poll() is None, f"the child printed only {data!r}"
            if sel.select(deadline - time.monotonic()):
                data += os.read(fd, 4096)
    return data.decode()


def test_ctrl_c_stops_the_loop_and_the_servers_statements(transactional_db):
    app = f"pgvc-loop-sigint-{os.getpid()}"
    conninfo = dict(connection_params(connection), application_name=app)
    dbname = conninfo["dbname"]
    sleeping = (
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
        "AND state = 'active' AND query LIKE 'SELECT pg_sleep%%'"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, json.dumps(conninfo)],
        cwd=Path(__file__).resolve().parent.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Both statements were reported running by the loop and are running on the server: the
        # loop is between its sends and its results, the moment Ctrl-C must handle.
        seen = _lines_until(child, {"0 running", "1 running"})
        deadline = time.monotonic() + 60
        while psycopg_compat.query(dbname, sleeping, [app]) != [(2,)]:
            assert time.monotonic() < deadline and child.poll() is None, "the statements never started"
            time.sleep(0.05)
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=20)  # hang guard: pg_sleep(30) must not be awaited
        out = seen + out
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode != 0
    assert "KeyboardInterrupt" in err
    assert "finished" not in out and "0 running" in out and "1 running" in out
    deadline = time.monotonic() + 10
    while psycopg_compat.query(dbname, sleeping, [app]) != [(0,)]:
        assert time.monotonic() < deadline, "pg_sleep still running on the server"
        time.sleep(0.1)
