"""What a --stale pass does besides its refreshes: the staleness check's read of the catalog is
also the run's capture (one read, not two, on the safe side of the guarantee), and a refresh
recorded inside the caller's transaction goes through the run's record function, which prunes
once every PRUNE_SLACK records (with the statements as text where the function is missing)."""

from __future__ import annotations

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext, override_settings

from django_pgviews_c import _core, freshness, history, passes
from django_pgviews_c.historyfn import PRUNE_SLACK
from tests.helpers import catalog_rows, execute
from tests.test_freshness import other_session, refresh_all, states, views, wait_counted  # noqa: F401

# The staleness check's catalog query (and the capture's, which reads the same).
CLOSURE = "WITH RECURSIVE views(n, oid) AS"


@pytest.fixture
def registered(views):  # noqa: F811
    """The test's views as the project's registry, which a pass orders them by; the registry
    back before the views are dropped and the database flushed (which syncs the registry)."""
    from django_pgviews_c import sync

    real = sync.view_models
    sync.view_models = lambda: list(views.models.values())
    try:
        yield views
    finally:
        sync.view_models = real


def run_function_calls(queries: list[dict]) -> int:
    return sum("django_pgviews_c_record_run(" in q["sql"] for q in queries)


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_stale_pass_reads_the_sources_once(registered, jobs):
    vs = registered
    refresh_all(vs)
    other_session("UPDATE fr_a SET v = v + 1 WHERE id = 1")
    wait_counted("fr_a", 3)
    with CaptureQueriesContext(connection) as ctx:
        result = freshness.refresh_pass(models=list(vs.models.values()), jobs=jobs)
    assert sorted(result.refreshed) == ["viewtest.FrMatA", "viewtest.FrMatJoin", "viewtest.FrMatOfMat"]
    assert sum(CLOSURE in q["sql"] for q in ctx.captured_queries) == 1
    # The records keep what the check read: fr_a with its three writes...
    fr_a = str(catalog_rows("SELECT 'fr_a'::regclass::oid::bigint")[0][0])
    assert history.records(vs.models["FrMatA"]).first().sources["rels"][fr_a][1] == 3
    # ...and FrMatOfMat, refreshed after FrMatA in the same run, FrMatA as that refresh left it.
    assert {label: f.why for label, f in states(vs).items() if f.stale} == {}


def test_a_write_committed_after_the_check_leaves_the_view_stale(registered, monkeypatch):
    vs = registered
    refresh_all(vs)
    other_session("UPDATE fr_b SET v = v + 1")  # only FrMatJoin reads fr_b (through FrPlain)
    wait_counted("fr_b", 2)
    plan_pass = freshness.plan_pass

    def plan_then_write(*args, **kwargs):
        planned = plan_pass(*args, **kwargs)
        other_session("UPDATE fr_b SET v = v + 1")  # after the check read the counters
        return planned

    monkeypatch.setattr(passes, "plan_pass", plan_then_write)
    result = freshness.refresh_pass(models=list(vs.models.values()))
    assert result.refreshed == ["viewtest.FrMatJoin"]
    wait_counted("fr_b", 3)
    # The refresh may have seen the write or not: the view counts as stale (one more refresh).
    f = states(vs)["FrMatJoin"]
    assert f.stale and f.why == "table fr_b had 1 writes"


@pytest.mark.parametrize("keep", [1, 3])
def test_a_refresh_inside_a_transaction_prunes_once_every_slack(views, keep):  # noqa: F811
    mat = views.models["FrMatA"]
    counts = []
    with override_settings(PGVIEWS_HISTORY_KEEP=keep), transaction.atomic():
        for _ in range(2 * (keep + PRUNE_SLACK) + 3):
            with CaptureQueriesContext(connection) as ctx:
                mat.refresh()
            assert run_function_calls(ctx.captured_queries) == 1
            counts.append(history.records(mat).count())
    assert max(counts) == keep + PRUNE_SLACK and keep in counts
    assert counts.count(keep) <= 3  # pruned back to keep, not on every refresh
    assert history.records(mat).count() == counts[-1]  # committed with the transaction


def test_without_the_run_function_a_record_inside_a_transaction_goes_as_text(views):  # noqa: F811
    schema = catalog_rows("SELECT relnamespace::regnamespace::text FROM pg_class WHERE oid = %s::regclass",
                          ["django_pgviews_c_refresh"])[0][0]  # fmt: skip
    execute(_core.query_sql("history_drop_run_function", schema=schema))
    try:
        mat = views.models["FrMatA"]
        before = history.records(mat).count()
        with transaction.atomic():
            with CaptureQueriesContext(connection) as first:
                mat.refresh()
            with CaptureQueriesContext(connection) as second:
                mat.refresh()
        assert history.records(mat).count() == before + 2
        assert [r.ok for r in history.records(mat)[:2]] == [True, True]
        assert run_function_calls(first.captured_queries) == 1  # tried, found missing
        assert run_function_calls(second.captured_queries) == 0  # that connection now sends text
    finally:
        execute(_core.query_sql("history_run_function", schema=schema))
        connection.close()


def test_the_loops_connects_start_side_by_side():
    """A server that accepts and never answers: the run fails on connect_timeout, and by then
    every one of its three connects had reached the server (one after the other, the first
    one's timeout would have ended the run before the others started)."""
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        conninfo = {"host": "127.0.0.1", "port": str(silent.getsockname()[1]), "dbname": "x",
                    "connect_timeout": "2"}  # fmt: skip
        with pytest.raises(Exception, match="did not answer within 2 s") as caught:
            _core.run_parallel(conninfo, ["SELECT 1"] * 3, [[], [], []], None, 3)
        assert type(caught.value).__name__ == "ConnectionLostError"
        silent.setblocking(False)
        reached = 0
        while True:
            try:
                silent.accept()[0].close()
            except BlockingIOError:
                break
            reached += 1
        assert reached == 3
    finally:
        silent.close()


def test_once_every_refresh_has_started_the_ended_ones_are_recorded_while_the_last_runs(views):  # noqa: F811
    """The records of a --jobs run are written as soon as the loop has nothing left to start:
    FrMatA's is committed while FrMatSlow's refresh is still held inside its statement."""
    import threading
    import time

    from django.db import connections

    from django_pgviews_c.refresh import refresh_views
    from tests import psycopg_compat
    from tests.helpers import Gate

    dbname = connection.settings_dict["NAME"]
    fast = views.models["FrMatA"]
    slow = views.view("FrMatSlow", "SELECT id FROM fr_b", materialized=True)
    views.sync(["FrMatSlow"])
    errors: list[BaseException] = []

    def recorded(model) -> int:
        return psycopg_compat.query(
            dbname, "SELECT count(*) FROM django_pgviews_c_refresh WHERE view = %s", [model._meta.label]
        )[0][0]

    before = {fast: recorded(fast), slow: recorded(slow)}
    # The gate is a lock: the slow refresh's first try waits for it as long as the test needs.
    try:
        with override_settings(PGVIEWS_LOCK_TIMEOUT_MS=120_000), Gate(dbname, 0x5C05) as gate:
            # The slow view's query now waits for the gate (its definition read as the refresh runs).
            execute(f"CREATE OR REPLACE VIEW t_frslow_gate AS SELECT 1 AS x FROM {gate.sql}")
            execute("DROP MATERIALIZED VIEW t_frmatslow")
            execute("CREATE MATERIALIZED VIEW t_frmatslow AS SELECT id FROM fr_b, t_frslow_gate WITH NO DATA")

            def run() -> None:
                try:
                    refresh_views([fast, slow], using="default", jobs=2)
                except Exception as exc:  # reported below
                    errors.append(exc)
                finally:
                    connections.close_all()

            worker = threading.Thread(target=run)
            worker.start()
            gate.waiter()  # the slow refresh is inside its statement, the fast one done or running
            deadline = time.monotonic() + 30
            while recorded(fast) == before[fast]:
                assert time.monotonic() < deadline, "the fast view's record waited for the slow refresh"
                time.sleep(0.02)
            assert recorded(slow) == before[slow]  # still running
            assert advisory_waiting(dbname, 0x5C05)
            gate.open()
            worker.join(60)
        assert not worker.is_alive() and not errors, errors
        assert recorded(slow) == before[slow] + 1 and recorded(fast) == before[fast] + 1
    finally:
        execute("DROP MATERIALIZED VIEW IF EXISTS t_frmatslow")
        execute("DROP VIEW IF EXISTS t_frslow_gate")


def advisory_waiting(dbname: str, key: int) -> bool:
    from tests.helpers import advisory_waiters

    return bool(advisory_waiters(dbname, key))
