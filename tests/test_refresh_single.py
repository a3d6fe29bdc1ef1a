"""Model.refresh() in one call of migration 0007's function (django_pgviews_c.refreshfn): the
record and its sources as the ordinary capture reads them, for every shape of closure (the
direct reads, and through a plain view or a partitioned table); the same call with the history
off; a failed capture or record refreshing the ordinary way; a transaction that is not READ
COMMITTED refused; a write landing while the call waits for its lock, and a view of the closure
redefined by another session, both leaving the view stale; migrating back from 0007."""

from __future__ import annotations

import logging

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext, override_settings

from django_pgviews_c import _core, freshness, history
from tests.helpers import ViewSet, catalog_rows, execute, in_thread
from tests.processes import holding_lock, wait_for
from tests.test_freshness import other_session, wait_counted

CALL = "django_pgviews_c_refresh("


def shape(sources: dict) -> dict:
    """A capture without its write counters (the statistics may publish a write in between)."""
    return {**sources, "rels": {oid: [v[0], *v[2:]] for oid, v in sources["rels"].items()}}


def schema_of_history() -> str:
    return catalog_rows("SELECT relnamespace::regnamespace::text FROM pg_class WHERE oid = %s::regclass",
                        ["django_pgviews_c_refresh"])[0][0]  # fmt: skip


@pytest.fixture
def vs(transactional_db):
    execute("CREATE SCHEMA rs_s")
    execute("CREATE TABLE rs_a (id int PRIMARY KEY, v int)")
    execute("CREATE TABLE rs_s.rs_b (id int PRIMARY KEY)")
    execute("CREATE TABLE rs_c (id int PRIMARY KEY, v int)")
    execute("CREATE TABLE rs_p (id int, v int) PARTITION BY RANGE (id)")
    execute("CREATE TABLE rs_p1 PARTITION OF rs_p FOR VALUES FROM (0) TO (100)")
    execute("INSERT INTO rs_a VALUES (1, 1), (2, 2)")
    execute("INSERT INTO rs_s.rs_b VALUES (1), (2)")
    execute("INSERT INTO rs_p VALUES (1, 1)")
    execute("CREATE VIEW rs_v AS SELECT id, v FROM rs_a")
    views = ViewSet()
    views.view("RsMat", "SELECT a.id, a.v FROM rs_a a JOIN rs_s.rs_b b USING (id)", materialized=True)
    views.view("RsThroughView", "SELECT id, v FROM rs_v", materialized=True)
    views.view("RsPartitioned", "SELECT id, v FROM rs_p", materialized=True)
    views.view("RsExact", "SELECT id, v FROM rs_a", materialized=True, staleness="exact")
    views.view("RsNone", "SELECT 1 AS x", materialized=True)
    views.sync()
    yield views
    execute("DROP MATERIALIZED VIEW IF EXISTS t_rsmat, t_rsthroughview, t_rspartitioned, t_rsexact, t_rsnone")
    execute("DROP VIEW IF EXISTS rs_v")
    execute("DROP TABLE IF EXISTS rs_a, rs_c, rs_p")
    execute("DROP SCHEMA rs_s CASCADE")
    execute("DELETE FROM django_pgviews_c_exact")


@pytest.mark.parametrize("name", ["RsMat", "RsThroughView", "RsPartitioned", "RsExact", "RsNone"])
def test_one_call_records_what_the_ordinary_capture_reads(vs, name):
    model = vs.models[name]
    with CaptureQueriesContext(connection) as ctx:
        model.refresh()
    [query] = ctx.captured_queries
    assert CALL in query["sql"] and "REFRESH" not in query["sql"]
    rec = history.records(model).first()
    assert rec.ok and rec.mode == "plain" and rec.duration > 0 and rec.plain_reason == ""
    assert rec.rows == catalog_rows(f"SELECT count(*) FROM {model._meta.db_table}")[0][0]
    assert shape(rec.sources) == shape(history.capture(connection, [model])[0])
    assert not freshness.freshness([model])[0].stale
    # The session is back in autocommit with its own lock_timeout, jit and search_path.
    assert catalog_rows("SELECT current_setting('lock_timeout'), current_setting('jit'),"
                        " current_setting('search_path')") == [
        tuple(catalog_rows("SELECT reset_val FROM pg_settings WHERE name = %s", [n])[0][0]
              for n in ("lock_timeout", "jit", "search_path"))
    ]  # fmt: skip
    assert connection.get_autocommit() and not connection.in_atomic_block


def test_with_the_history_off_the_same_call_records_nothing(vs):
    mat = vs.models["RsMat"]
    execute("INSERT INTO rs_a VALUES (3, 3)")
    execute("INSERT INTO rs_s.rs_b VALUES (3)")
    before = history.records(mat).count()
    with override_settings(PGVIEWS_HISTORY=False), CaptureQueriesContext(connection) as ctx:
        mat.refresh()
    [query] = ctx.captured_queries
    assert CALL in query["sql"]
    assert catalog_rows("SELECT count(*) FROM t_rsmat") == [(3,)]
    assert history.records(mat).count() == before


def _replace(function: str, args: str, returns: str) -> None:
    name = f"{schema_of_history()}.{function}({args})"
    execute(f"DROP FUNCTION {name}; CREATE FUNCTION {name} RETURNS {returns}"
            " LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'rs broken'; END$$")  # fmt: skip


@pytest.mark.parametrize(
    "function, args, returns, said",
    [
        ("django_pgviews_c_refresh_capture", "regclass, name[], boolean", "text", "capture its sources"),
        ("django_pgviews_c_refresh_record",
         "text, text, timestamptz, double precision, text, regclass, bigint, boolean, text, integer, integer",
         "void", "record it"),
    ],
)  # fmt: skip
def test_a_failed_capture_or_record_refreshes_the_ordinary_way(vs, caplog, function, args, returns, said):
    mat = vs.models["RsMat"]
    execute("INSERT INTO rs_a VALUES (3, 3)")
    execute("INSERT INTO rs_s.rs_b VALUES (3)")
    _replace(function, args, returns)
    try:
        with caplog.at_level(logging.WARNING, logger="django_pgviews_c.history"):
            mat.refresh()
    finally:
        schema = schema_of_history()
        execute(_core.query_sql("history_refresh_function", schema=schema,
                                table=_core.qualified_name(schema, "django_pgviews_c_exact")))  # fmt: skip
    assert catalog_rows("SELECT count(*) FROM t_rsmat") == [(3,)]
    assert f"the refresh of viewtest.RsMat in one call could not {said}" in caplog.text
    assert "rs broken" in caplog.text
    rec = history.records(mat).first()  # the ordinary way's record
    assert rec.ok and rec.rows == 3 and shape(rec.sources) == shape(history.capture(connection, [mat])[0])
    assert connection.get_autocommit()


def test_a_session_not_read_committed_refreshes_the_ordinary_way(vs):
    """Under REPEATABLE READ the REFRESH would read the snapshot the call took before its capture:
    the recorded call refuses, before anything ran, and the ordinary way captures on its own."""
    mat = vs.models["RsMat"]
    execute("INSERT INTO rs_a VALUES (3, 3)")
    execute("INSERT INTO rs_s.rs_b VALUES (3)")
    with connection.cursor() as cursor:
        cursor.execute("SET default_transaction_isolation = 'repeatable read'")
    try:
        with CaptureQueriesContext(connection) as ctx:
            mat.refresh()
    finally:
        connection.close()
    assert CALL in ctx.captured_queries[0]["sql"] and len(ctx.captured_queries) > 1
    assert catalog_rows("SELECT count(*) FROM t_rsmat") == [(3,)]
    assert history.records(mat).first().ok


def test_a_write_while_the_call_waits_for_its_lock_leaves_the_view_stale(vs):
    """The capture comes before the REFRESH's snapshot: a write committed after the capture, while
    the REFRESH waits for its lock, is counted as one the view may lack."""
    mat = vs.models["RsMat"]
    dbname = connection.settings_dict["NAME"]
    # The holder holds a table the view reads: the call has captured and waits in its REFRESH.
    with holding_lock(dbname, "rs_s.rs_b") as holder, override_settings(PGVIEWS_LOCK_TIMEOUT_MS=60000):
        thread, outcome = in_thread(mat.refresh)
        wait_for("the call waiting for its lock", lambda: catalog_rows(
            "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s",
            [f"%{CALL}%"]))  # fmt: skip
        other_session("INSERT INTO rs_a VALUES (3, 3)")
        wait_counted("rs_a", 3)  # counted before the REFRESH goes on: a capture after it would see it
        holder.execute("ROLLBACK")
        thread.join()
    assert "error" not in outcome
    assert freshness.freshness([mat])[0].stale


def test_a_view_of_the_closure_redefined_by_another_session_leaves_the_view_stale(vs):
    model = vs.models["RsThroughView"]
    model.refresh()
    assert not freshness.freshness([model])[0].stale
    other_session("CREATE OR REPLACE VIEW rs_v AS SELECT id, v FROM rs_c")
    other_session("INSERT INTO rs_c VALUES (7, 7)")
    wait_counted("rs_c", 1)
    assert freshness.freshness([model])[0].stale
    model.refresh()
    rec = history.records(model).first()
    assert {v[3] for v in rec.sources["rels"].values()} == {"rs_c"}
    assert not freshness.freshness([model])[0].stale


def test_migrating_back_from_0007_drops_it_and_refreshes_in_the_round_trip_of_before(vs, caplog):
    mat = vs.models["RsMat"]
    mat.refresh()  # the connection has called the function
    try:
        call_command("migrate", "django_pgviews_c", "0006", verbosity=0)
        assert catalog_rows(
            "SELECT count(*) FROM pg_proc WHERE proname LIKE 'django_pgviews_c_refresh%%'"
        ) == [(0,)]
        execute("INSERT INTO rs_a VALUES (3, 3)")
        execute("INSERT INTO rs_s.rs_b VALUES (3)")
        with caplog.at_level(logging.WARNING, logger="django_pgviews_c"):
            with CaptureQueriesContext(connection) as first:
                mat.refresh()
            with CaptureQueriesContext(connection) as second:
                mat.refresh()
        assert [r.getMessage() for r in caplog.records] == []
        assert CALL in first.captured_queries[0]["sql"]  # missing: nothing ran
        [query] = second.captured_queries
        assert "django_pgviews_c_capture(" in query["sql"] and CALL not in query["sql"]
        assert [(r.ok, r.rows) for r in history.records(mat)[:2]] == [(True, 3), (True, 3)]
    finally:
        call_command("migrate", "django_pgviews_c", verbosity=0)
        connection.close()
    with CaptureQueriesContext(connection) as ctx:
        mat.refresh()
    [query] = ctx.captured_queries
    assert CALL in query["sql"]
