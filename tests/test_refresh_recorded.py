"""Model.refresh() outside a transaction: capture, REFRESH and record in one round trip, with
every outcome of the ordinary way: the record and its sources, a failure to record that never
fails the refresh, a failed REFRESH recorded with its SQLSTATE, a concurrent refresh of a view
never populated done plainly, and a write between capture and REFRESH that costs at most an
extra refresh."""

from __future__ import annotations

import logging

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from django_pgviews_c import freshness, history
from tests.helpers import ViewSet, catalog_rows, execute


@pytest.fixture
def vs(transactional_db):
    execute("CREATE TABLE rr_a (id int PRIMARY KEY, v int)")
    execute("INSERT INTO rr_a VALUES (1, 1), (2, 2)")
    views = ViewSet()
    views.view("RrMat", "SELECT id, v FROM rr_a", materialized=True, concurrent_index="id")
    views.view("RrExact", "SELECT id, v FROM rr_a", materialized=True, staleness="exact")
    views.sync()
    yield views
    execute("DROP MATERIALIZED VIEW IF EXISTS t_rrmat, t_rrexact")
    execute("DROP TABLE IF EXISTS rr_a")
    execute("DELETE FROM django_pgviews_c_exact")


def test_one_round_trip_records_what_the_ordinary_way_records(vs):
    mat = vs.models["RrMat"]
    with CaptureQueriesContext(connection) as ctx:
        mat.refresh()
    assert len(ctx.captured_queries) == 1
    rec = history.records(mat).first()
    assert rec.ok and rec.rows == 2 and rec.mode == "plain" and rec.duration > 0
    assert {v[3] for v in rec.sources["rels"].values()} == {"rr_a"}
    assert rec.sources["populated"] is True
    assert not freshness.freshness([mat])[0].stale
    # The session is back in autocommit with its own lock_timeout and jit.
    assert catalog_rows("SELECT current_setting('lock_timeout'), current_setting('jit')") == [
        tuple(
            catalog_rows("SELECT reset_val FROM pg_settings WHERE name = %s", [n])[0][0]
            for n in ("lock_timeout", "jit")
        )
    ]
    assert connection.get_autocommit() and not connection.in_atomic_block


def test_concurrently_with_its_index_and_exact_sources(vs):
    vs.models["RrMat"].refresh(concurrently=True)
    assert history.records(vs.models["RrMat"]).first().mode == "concurrent"
    vs.models["RrExact"].refresh()
    rec = history.records(vs.models["RrExact"]).first()
    [(relfilenode, counter, relkind, name, exact)] = rec.sources["rels"].values()
    assert name == "rr_a" and exact[1] == 0  # the trigger's oid and the statements counted
    execute("INSERT INTO rr_a VALUES (3, 3)")
    assert freshness.freshness([vs.models["RrExact"]])[0].reasons == ["table rr_a had 1 statements committed"]


def test_a_failure_to_record_never_fails_the_refresh(vs, caplog):
    mat = vs.models["RrMat"]
    execute("INSERT INTO rr_a VALUES (3, 3)")
    execute("ALTER TABLE django_pgviews_c_refresh RENAME TO rr_moved")
    try:
        with caplog.at_level(logging.WARNING, logger="django_pgviews_c.history"):
            mat.refresh()
    finally:
        execute("ALTER TABLE rr_moved RENAME TO django_pgviews_c_refresh")
    assert catalog_rows("SELECT count(*) FROM t_rrmat") == [(3,)]  # refreshed, committed
    assert "the refresh of viewtest.RrMat was not recorded" in caplog.text
    assert "(run manage.py migrate)" in caplog.text
    assert [r.plain_reason for r in history.records(mat)] == ["built by sync"]  # the fixture's only
    assert connection.get_autocommit()


def test_a_failed_refresh_is_rolled_back_recorded_and_raised(vs):
    vs.view("RrDiv", "SELECT 1 / (SELECT count(*) - 2 FROM rr_a)::int AS x", materialized=True,
            with_data=False)  # fmt: skip
    vs.sync()
    try:
        with pytest.raises(Exception, match="division by zero"):
            vs.models["RrDiv"].refresh()
        rec = history.records(vs.models["RrDiv"]).first()
        assert not rec.ok and rec.sqlstate == "22012"
        assert history.records(vs.models["RrDiv"]).count() == 1  # done once, not again
        assert catalog_rows("SELECT relispopulated FROM pg_class WHERE relname = 't_rrdiv'") == [(False,)]
        assert connection.get_autocommit()
    finally:
        execute("DROP MATERIALIZED VIEW IF EXISTS t_rrdiv")


def test_concurrently_on_a_view_never_populated_is_done_plainly(vs):
    vs.view("RrEmpty", "SELECT id FROM rr_a", materialized=True, with_data=False, concurrent_index="id")
    vs.sync()
    try:
        vs.models["RrEmpty"].refresh(concurrently=True)
        rec = history.records(vs.models["RrEmpty"]).first()
        assert rec.ok and rec.mode == "plain" and rec.plain_reason == "not populated"
        assert catalog_rows("SELECT count(*) FROM t_rrempty") == [(2,)]
    finally:
        execute("DROP MATERIALIZED VIEW IF EXISTS t_rrempty")
