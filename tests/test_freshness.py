"""Refresh history and staleness on a real PostgreSQL: records written by each kind of refresh,
kept inside the caller's transaction, never failing a refresh; staleness from the statistics
counters, with writes made and committed by other sessions."""

from __future__ import annotations

import datetime as dt
import logging
import time

import pytest
from django.db import connection, connections, transaction
from django.test import override_settings

from django_pgviews_c import freshness, freshstatus, history, runhistory
from django_pgviews_c.exceptions import RefreshError
from django_pgviews_c.models import RefreshRecord
from django_pgviews_c.refresh import refresh_views
from tests import psycopg_compat
from tests.helpers import ViewSet, catalog_rows, execute

# How long a committed write may take to reach the statistics counters (docs/freshness.md: a
# backend flushes at most once a second, an idle one within 10 s, one under contention 60 s).
STATS_BOUND = 65.0


def other_session(sql: str, flush: bool = True) -> None:
    """Run ``sql`` (a write) on a session of its own, committed, as an application would.
    ``flush`` has that session flush its statistics when the statement ends (PostgreSQL 15's
    pg_stat_force_next_flush) rather than within the bound."""
    if flush:
        sql = "SELECT pg_stat_force_next_flush(); " + sql
    psycopg_compat.query(connection.settings_dict["NAME"], sql)


def wait_counted(table: str, at_least: int) -> None:
    """Wait until the counters show ``at_least`` writes to ``table`` (the stats flush)."""
    deadline = time.monotonic() + STATS_BOUND
    sql = (
        "SELECT pg_stat_clear_snapshot(), (SELECT n_tup_ins + n_tup_upd + n_tup_del "
        "FROM pg_stat_all_tables WHERE relid = %s::regclass)"
    )
    while True:
        seen = psycopg_compat.query(connection.settings_dict["NAME"], sql.replace("%s", f"'{table}'"))[0][1]
        if seen is not None and seen >= at_least:
            return
        assert time.monotonic() < deadline, f"{table}: {seen} writes counted after {STATS_BOUND}s"
        time.sleep(0.05)


@pytest.fixture
def views(transactional_db):
    """Tables and views committed for real (statistics count committed writes only); dropped
    after the test."""
    vs = ViewSet()
    execute("CREATE TABLE fr_a (id int PRIMARY KEY, v int)")
    execute("CREATE TABLE fr_b (id int PRIMARY KEY, v int)")
    other_session("INSERT INTO fr_a VALUES (1, 1), (2, 2)")
    other_session("INSERT INTO fr_b VALUES (1, 10)")
    vs.view("FrPlain", "SELECT a.id, a.v + b.v AS v FROM fr_a a JOIN fr_b b USING (id)")
    vs.view("FrMatA", "SELECT id, v FROM fr_a", materialized=True, concurrent_index="id")
    vs.view("FrMatJoin", "SELECT id, v FROM t_frplain", materialized=True, dependencies=("viewtest.FrPlain",))
    vs.view(
        "FrMatOfMat",
        "SELECT count(*) AS n FROM t_frmata",
        materialized=True,
        dependencies=("viewtest.FrMatA",),
    )
    vs.sync()
    # The inserts above count once this session's statistics are flushed; a refresh that
    # captured the counters before that would see them as later writes (one extra refresh).
    wait_counted("fr_a", 2)
    wait_counted("fr_b", 1)
    yield vs
    for name in ("t_frmatofmat", "t_frmatjoin", "t_frmata"):
        execute(f"DROP MATERIALIZED VIEW IF EXISTS {name}")
    execute("DROP VIEW IF EXISTS t_frplain")
    execute("DROP TABLE IF EXISTS fr_a, fr_b CASCADE")


def refresh_all(vs: ViewSet) -> None:
    for name in ("FrMatA", "FrMatJoin", "FrMatOfMat"):
        vs.models[name].refresh()


def states(vs: ViewSet) -> dict[str, freshness.ViewFreshness]:
    return {f.label.split(".")[1]: f for f in freshness.freshness(list(vs.models.values()))}


# -- history ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_run_recorder_needs_a_connection_or_connection_for():
    from tests.viewtest import models

    chosen = [models.MaterializedRelatedView]
    with pytest.raises(TypeError, match=r"^RunRecorder: give connection or connection_for$"):
        runhistory.RunRecorder(None, chosen, [False])
    # Either one is enough: a fixed connection serves every view.
    assert runhistory.RunRecorder(connection, chosen, [False]).connection_for(chosen[0]) is connection
    other = connections["weather_db"]
    assert (
        runhistory.RunRecorder(None, chosen, [False], connection_for=lambda m: other).connection_for(
            chosen[0]
        )
        is other
    )


@pytest.mark.django_db(databases=["default", "weather_db", "schema_db"])
def test_history_table_is_on_every_database_that_holds_views():
    for alias in ("default", "weather_db", "schema_db"):
        with connections[alias].cursor() as cur:
            cur.execute("SELECT to_regclass('django_pgviews_c_refresh') IS NOT NULL")
            assert cur.fetchone()[0], alias
            # and the functions a recorded Model.refresh() calls (migration 0004) and the one
            # that records a run (0005), beside it
            cur.execute(
                "SELECT count(*) FROM pg_proc p JOIN pg_class c ON c.relnamespace = p.pronamespace"
                " WHERE c.oid = 'django_pgviews_c_refresh'::regclass AND p.proname IN"
                " ('django_pgviews_c_capture', 'django_pgviews_c_record', 'django_pgviews_c_record_run')"
            )
            assert cur.fetchone()[0] == 3, alias


def test_model_refresh_records_mode_rows_duration_and_sources(views):
    mat = views.models["FrMatA"]
    mat.refresh()
    rec = history.records(mat).first()
    assert rec.view == "viewtest.FrMatA" and rec.db_table == "t_frmata"
    assert rec.ok and rec.mode == "plain" and rec.plain_reason == ""
    assert rec.rows == 2 and rec.duration >= 0
    assert rec.sources["populated"] is True
    names = {v[3] for v in rec.sources["rels"].values()}
    assert names == {"fr_a"}

    mat.refresh(concurrently=True)
    assert history.records(mat).first().mode == "concurrent"


def test_concurrent_asked_without_index_says_why_plain(views):
    views.models["FrMatJoin"].refresh(concurrently=True)
    rec = history.records(views.models["FrMatJoin"]).first()
    assert rec.mode == "plain" and rec.plain_reason == "no concurrent_index"
    # The sources go down through the plain view to both tables.
    assert {v[3] for v in rec.sources["rels"].values()} == {"fr_a", "fr_b"}


def test_a_refresh_rolled_back_with_the_callers_transaction_leaves_no_record(views):
    mat = views.models["FrMatA"]
    built = history.records(mat).count()  # the fixture's sync built it: recorded
    with pytest.raises(ZeroDivisionError), transaction.atomic():
        mat.refresh()
        assert history.records(mat).count() == built + 1  # visible inside the transaction
        1 / 0  # noqa: B018
    assert history.records(mat).count() == built


def test_a_failure_to_record_never_fails_the_refresh(views, caplog):
    mat = views.models["FrMatA"]
    execute("INSERT INTO fr_a VALUES (3, 3)")
    with transaction.atomic():
        execute("ALTER TABLE django_pgviews_c_refresh RENAME TO fr_moved")
        with caplog.at_level(logging.WARNING, logger="django_pgviews_c.history"):
            mat.refresh()
        assert catalog_rows("SELECT count(*) FROM t_frmata") == [(3,)]  # refreshed, in the transaction
        execute("ALTER TABLE fr_moved RENAME TO django_pgviews_c_refresh")
    assert "the refresh of viewtest.FrMatA was not recorded" in caplog.text
    assert "(run manage.py migrate)" in caplog.text
    assert catalog_rows("SELECT count(*) FROM t_frmata") == [(3,)]


def test_a_failed_refresh_is_recorded_with_its_sqlstate(transactional_db):
    vs = ViewSet()
    execute("CREATE TABLE fr_z (n int)")
    try:
        vs.view(
            "FrDiv", "SELECT 1 / (SELECT count(*) FROM fr_z)::int AS x", materialized=True, with_data=False
        )
        vs.sync()
        with pytest.raises(Exception, match="division by zero"):
            vs.models["FrDiv"].refresh()
        rec = history.records(vs.models["FrDiv"]).first()
        assert not rec.ok and rec.sqlstate == "22012" and "division by zero" in rec.message
        f = freshness.freshness([vs.models["FrDiv"]])[0]
        assert f.stale and f.last_failure.id == rec.id and f.last_ok is None
    finally:
        execute("DROP MATERIALIZED VIEW IF EXISTS t_frdiv")
        execute("DROP TABLE fr_z")


@override_settings(PGVIEWS_HISTORY_KEEP=3)
def test_only_the_last_records_of_each_view_are_kept(views):
    from django_pgviews_c.historyfn import PRUNE_SLACK

    # The sync's record and 3 + PRUNE_SLACK refreshes: one more than keep + slack, so the last
    # refresh pruned them back to keep.
    for _ in range(3 + PRUNE_SLACK):
        views.models["FrMatA"].refresh()
    views.models["FrMatJoin"].refresh()
    assert history.records(views.models["FrMatA"]).count() == 3
    # The fixture's sync built it (one record), then one refresh.
    assert [r.plain_reason for r in history.records(views.models["FrMatJoin"])] == ["", "built by sync"]


@pytest.mark.parametrize("jobs", [1, 2])
def test_refresh_views_records_every_view(transactional_db, jobs):
    from tests.viewtest import models

    refresh_views(using="default", jobs=jobs)
    labels = sorted(RefreshRecord.objects.filter(ok=True).values_list("view", flat=True))
    assert labels == [
        "viewtest.DependantMaterializedView",
        "viewtest.MaterializedRelatedView",
        "viewtest.MaterializedRelatedViewWithIndex",
        "viewtest.MaterializedViewWithIndex",
        "viewtest.MaterializedViewWithNoData",
    ]
    # A view read by another was captured as it was after its own refresh: all fresh.
    assert [(f.label, f.reasons) for f in freshness.freshness(using="default") if f.stale] == []
    # And the one that reads another is stale once that one is refreshed again.
    models.MaterializedRelatedView.refresh()
    assert [(f.label, f.reasons) for f in freshness.freshness(using="default") if f.stale] == [
        (
            "viewtest.DependantMaterializedView",
            ["materialized view viewtest_materializedrelatedview was refreshed since"],
        )
    ]


def test_parallel_failure_is_recorded(transactional_db):
    from tests.viewtest import models

    try:
        # A duplicate id makes the concurrent refresh of the view with a unique index fail.
        execute("CREATE UNIQUE INDEX fr_bad ON viewtest_materializedviewwithindex ((1))")
        execute("INSERT INTO viewtest_testmodel (name) VALUES ('a'), ('b')")
        with pytest.raises(RefreshError):
            refresh_views(using="default", jobs=2)
        recs = {r.view: r for r in RefreshRecord.objects.all()}
        assert recs["viewtest.MaterializedRelatedView"].ok
        bad = recs["viewtest.MaterializedViewWithIndex"]
        assert not bad.ok and bad.sqlstate == "23505" and "fr_bad" in bad.message
        assert models.MaterializedViewWithIndex.objects.count() == 0
    finally:
        execute("DROP INDEX IF EXISTS fr_bad")


# -- staleness -------------------------------------------------------------------------------


def test_never_refreshed_is_stale(views):
    RefreshRecord.objects.all().delete()  # the records of the fixture's sync, which built them
    assert {k: v.reasons for k, v in states(views).items()} == {
        "FrMatA": ["no successful refresh recorded"],
        "FrMatJoin": ["no successful refresh recorded"],
        "FrMatOfMat": ["no successful refresh recorded"],
    }


def test_a_committed_write_makes_its_readers_stale_and_only_them(views):
    refresh_all(views)
    assert not any(f.stale for f in states(views).values())
    other_session("UPDATE fr_b SET v = 11", flush=False)  # within the documented bound
    wait_counted("fr_b", 2)
    s = states(views)
    assert s["FrMatJoin"].reasons == ["table fr_b had 1 writes"]
    assert not s["FrMatA"].stale and not s["FrMatOfMat"].stale


def test_truncate_is_seen(views):
    refresh_all(views)
    other_session("TRUNCATE fr_b")
    s = states(views)
    assert s["FrMatJoin"].reasons == ["table fr_b was rewritten (TRUNCATE or similar)"]


def test_a_refreshed_materialized_view_makes_its_readers_stale(views):
    refresh_all(views)
    views.models["FrMatA"].refresh()
    s = states(views)
    assert s["FrMatOfMat"].reasons == ["materialized view t_frmata was refreshed since"]
    assert not s["FrMatA"].stale and not s["FrMatJoin"].stale


def test_a_hand_refresh_outside_the_app_is_seen(views):
    refresh_all(views)
    other_session("REFRESH MATERIALIZED VIEW t_frmata")
    assert states(views)["FrMatOfMat"].reasons == ["materialized view t_frmata was refreshed since"]


def test_counters_reset_mean_stale(views):
    refresh_all(views)
    other_session("INSERT INTO fr_a VALUES (9, 9)")
    wait_counted("fr_a", 3)
    views.models["FrMatA"].refresh()
    assert not states(views)["FrMatA"].stale
    other_session("SELECT pg_stat_reset_single_table_counters('fr_a'::regclass)")
    assert "table fr_a's statistics were reset" in states(views)["FrMatA"].reasons


def test_partitions_are_followed(transactional_db):
    vs = ViewSet()
    execute("CREATE TABLE fr_p (k int, v int) PARTITION BY RANGE (k)")
    execute("CREATE TABLE fr_p1 PARTITION OF fr_p FOR VALUES FROM (0) TO (10)")
    try:
        vs.view("FrPart", "SELECT sum(v) AS s FROM fr_p", materialized=True)
        vs.sync()
        vs.models["FrPart"].refresh()
        assert not freshness.freshness([vs.models["FrPart"]])[0].stale
        other_session("INSERT INTO fr_p VALUES (1, 1)")
        wait_counted("fr_p1", 1)
        assert freshness.freshness([vs.models["FrPart"]])[0].reasons == ["table fr_p1 had 1 writes"]
    finally:
        execute("DROP MATERIALIZED VIEW IF EXISTS t_frpart")
        execute("DROP TABLE fr_p")


def test_unpopulated_is_stale(transactional_db):
    vs = ViewSet()
    try:
        vs.view("FrEmpty", "SELECT 1 AS x", materialized=True, with_data=False)
        vs.sync()
        assert freshness.freshness([vs.models["FrEmpty"]])[0].reasons == ["not populated"]
    finally:
        execute("DROP MATERIALIZED VIEW IF EXISTS t_frempty")


def test_due_needs_stale_and_an_old_enough_refresh(views):
    mat = views.models["FrMatA"]
    mat.refresh_interval = dt.timedelta(minutes=15)
    mat.refresh()
    f = freshness.freshness([mat])[0]
    assert not f.stale and not f.due and f.due_at is None  # fresh: never due
    other_session("INSERT INTO fr_a VALUES (5, 5)")
    wait_counted("fr_a", 3)
    f = freshness.freshness([mat])[0]
    assert f.stale and not f.due
    assert f.due_at == f.last_ok.started_at + dt.timedelta(minutes=15)
    later = f.last_ok.started_at + dt.timedelta(minutes=16)
    assert freshness.freshness([mat], now=later)[0].due
    # A view without an interval is never due, however stale.
    assert not freshness.freshness([views.models["FrMatJoin"]])[0].due


def test_status_report_says_when_how_long_and_why_stale(transactional_db):
    from tests.viewtest import models

    models.MaterializedRelatedView.refresh()
    execute("INSERT INTO viewtest_testmodel (name) VALUES ('a')")
    execute("SELECT pg_stat_force_next_flush()")  # this session's write counted when it goes idle
    execute("SELECT 1")
    report = freshstatus.status_report("default")
    item = report["viewtest.MaterializedRelatedView"]
    assert item["last_refresh"] is not None and item["age_seconds"] >= 0 and item["rows"] == 0
    assert item["stale"] and item["why"] == ["table viewtest_testmodel had 1 writes"]
    assert freshstatus.status_line(item).startswith("refreshed ")
    assert "stale: table viewtest_testmodel had 1 writes" in freshstatus.status_line(item)
    never = report["viewtest.MaterializedViewWithIndex"]
    assert never["last_refresh"] is None and never["why"] == ["no successful refresh recorded"]
    assert freshstatus.status_line(never) == "never refreshed; stale: no successful refresh recorded"


def test_the_migration_operation_is_recorded_and_sqlmigrate_records_nothing(transactional_db):
    from django.db.migrations.state import ProjectState

    from django_pgviews_c.db.migrations.operations import RefreshMaterializedView
    from tests.viewtest import models

    op = RefreshMaterializedView("viewtest.MaterializedRelatedView")
    state = ProjectState()
    with connection.schema_editor(collect_sql=True) as editor:
        op.database_forwards("viewtest", editor, state, state)
    assert history.records(models.MaterializedRelatedView).count() == 0
    with connection.schema_editor() as editor:
        op.database_forwards("viewtest", editor, state, state)
    rec = history.records(models.MaterializedRelatedView).get()
    assert rec.ok and rec.mode == "plain"


@pytest.mark.django_db(databases=["default", "weather_db", "schema_db"], transaction=True)
def test_records_live_in_the_database_that_holds_the_view():
    from tests.multidbtest.models import MonthlyObservation

    MonthlyObservation.refresh(concurrently=True)
    assert history.records(MonthlyObservation).count() == 1  # routed to weather_db
    assert RefreshRecord.objects.using("weather_db").get().view == "multidbtest.MonthlyObservation"
    assert RefreshRecord.objects.using("default").count() == 0
    assert [f.label for f in freshness.freshness(using="weather_db")] == ["multidbtest.MonthlyObservation"]
    assert not freshness.freshness(using="weather_db")[0].stale


def test_refresh_views_concurrently_says_which_views_were_plain_and_why(transactional_db):
    refresh_views(using="default", concurrently=True)
    modes = {r.view: (r.mode, r.plain_reason) for r in RefreshRecord.objects.all()}
    assert modes["viewtest.MaterializedRelatedViewWithIndex"] == ("concurrent", "")
    assert modes["viewtest.MaterializedRelatedView"] == ("plain", "no concurrent_index")
