"""The records of a refresh_views() run (django_pgviews_c.runhistory): written after the
refreshes in one round trip that calls django_pgviews_c_record_run (migration 0005; with --jobs,
also those that ended once every refresh had started, while the last ones run), with each
view's rows and the loop's own durations; only a view that another view of the run reads is read
again between refreshes; where the function is missing the statements go as text, learned once
per connection; the history is pruned with its slack; a long run is written in batches; a run
rolled back with the caller's transaction leaves nothing, and a failure to record fails nothing."""

from __future__ import annotations

import logging

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from django_pgviews_c import _core, history, runhistory
from django_pgviews_c.exceptions import RefreshError
from django_pgviews_c.refresh import refresh_views
from tests.helpers import ViewSet, assert_pruned_to_keep, catalog_rows, execute, oid

RUN_CALL = "django_pgviews_c_record_run("
AFTER = _core.query_sql("history_after").split(" FROM ")[0]  # the re-read of one view
COUNTS = {"HrOne": 5, "HrTwo": 3, "HrEmpty": 0, "HrOfOne": 1}  # rows of each, as the fixture makes them


@pytest.fixture
def vs(transactional_db):
    execute("CREATE TABLE hr_a (id int PRIMARY KEY, v int)")
    execute("INSERT INTO hr_a SELECT g, g FROM generate_series(1, 5) g")
    views = ViewSet()
    views.view("HrOne", "SELECT id, v FROM hr_a", materialized=True)
    views.view("HrTwo", "SELECT id FROM hr_a WHERE v > 2", materialized=True)
    views.view("HrEmpty", "SELECT id FROM hr_a WHERE v > 100", materialized=True)
    views.view(
        "HrOfOne", "SELECT count(*) AS n FROM t_hrone", materialized=True, dependencies=("viewtest.HrOne",)
    )
    # Fails when refreshed (created empty by the sync): only where a test names it.
    views.view("HrDiv", "SELECT 1 / (SELECT count(*) FROM hr_a WHERE v > 100)::int AS x", materialized=True,
               with_data=False)  # fmt: skip
    views.sync()
    yield views
    execute("DROP MATERIALIZED VIEW IF EXISTS t_hrofone, t_hrone, t_hrtwo, t_hrempty, t_hrdiv")
    execute("DROP TABLE IF EXISTS hr_a")


@pytest.fixture
def without_run_function(vs):
    """The run's function dropped, as on a database migrated to 0004 only; put back afterwards
    on a fresh connection."""
    schema = catalog_rows("SELECT relnamespace::regnamespace::text FROM pg_class WHERE oid = %s::regclass",
                          ["django_pgviews_c_refresh"])[0][0]  # fmt: skip
    execute(_core.query_sql("history_drop_run_function", schema=schema))
    try:
        yield
    finally:
        execute(_core.query_sql("history_run_function", schema=schema))
        connection.close()


def counted(vs: ViewSet) -> list:
    return [vs.models[name] for name in COUNTS]


def newest(vs: ViewSet, name: str):
    return history.records(vs.models[name]).first()


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_run_is_recorded_in_calls_with_rows_durations_and_what_its_readers_saw(vs, jobs):
    execute("INSERT INTO hr_a VALUES (6, 6)")
    with CaptureQueriesContext(connection) as ctx:
        result = refresh_views(counted(vs), using="default", jobs=jobs)
    assert sorted(result.refreshed) == sorted(f"viewtest.{name}" for name in COUNTS)
    queries = [q["sql"] for q in ctx.captured_queries]
    calls = [q for q in queries if RUN_CALL in q]
    # One call after a serial run; with --jobs, at most one per refresh ending once every
    # refresh had started (the loop has nothing left to start then).
    assert 1 <= len(calls) <= jobs
    assert not any("INSERT INTO" in call for call in calls)  # the statements are the function's
    # Between refreshes, only the view another view of the run reads was read again.
    [after] = [q for q in queries if q.startswith(AFTER)]
    assert "t_hrone" in after
    recs = {name: newest(vs, name) for name in COUNTS}
    assert {name: (r.ok, r.rows, r.mode, r.plain_reason) for name, r in recs.items()} == {
        name: (True, rows, "plain", "") for name, rows in {**COUNTS, "HrOne": 6, "HrTwo": 4}.items()
    }
    for name, rec in recs.items():
        seconds = result.seconds[f"viewtest.{name}"]
        if jobs > 1:
            assert rec.duration == seconds  # the loop's own timing, as it measured it
        else:
            assert 0 < rec.duration <= seconds
    assert recs["HrOfOne"].id > recs["HrOne"].id  # in the order the refreshes ended
    # HrOfOne's record holds HrOne as it was after HrOne's refresh (its new relfilenode).
    one = str(oid("t_hrone"))
    assert (
        recs["HrOfOne"].sources["rels"][one][0]
        == catalog_rows("SELECT relfilenode::bigint FROM pg_class WHERE oid = %s", [int(one)])[0][0]
    )
    assert recs["HrOne"].sources["rels"].keys() == {str(oid("hr_a"))}


def test_failed_and_successful_refreshes_of_a_run_are_recorded_together(vs):
    models = [*counted(vs), vs.models["HrDiv"]]
    with CaptureQueriesContext(connection) as ctx, pytest.raises(RefreshError, match="division by zero"):
        refresh_views(models, using="default", jobs=2)
    assert 1 <= len([q for q in ctx.captured_queries if RUN_CALL in q["sql"]]) <= 2
    bad = newest(vs, "HrDiv")
    assert (bad.ok, bad.sqlstate, bad.rows) == (False, "22012", None) and "division by zero" in bad.message
    assert {name: newest(vs, name).rows for name in COUNTS} == COUNTS


def test_where_the_function_is_missing_the_statements_go_as_text(vs, without_run_function, caplog):
    models = [*counted(vs), vs.models["HrDiv"]]
    with caplog.at_level(logging.WARNING, logger="django_pgviews_c.history"):
        with CaptureQueriesContext(connection) as first, pytest.raises(RefreshError):
            refresh_views(models, using="default", jobs=2)
        with CaptureQueriesContext(connection) as second, pytest.raises(RefreshError):
            refresh_views(models, using="default", jobs=2)
    assert [r.getMessage() for r in caplog.records if r.name == "django_pgviews_c.history"] == []
    # The first call fails before anything is written; the text follows, and the connection
    # sends the text from then on. Model.refresh() keeps its own function (migration 0007).
    first_sql = [q["sql"] for q in first.captured_queries]
    assert len([q for q in first_sql if RUN_CALL in q]) == 1
    # As many writes as the run makes (--jobs 2: one or two).
    assert 1 <= len([q for q in first_sql if "INSERT INTO" in q and "django_pgviews_c_refresh" in q]) <= 2
    assert [q["sql"] for q in second.captured_queries if RUN_CALL in q["sql"]] == []
    recs = list(history.records(vs.models["HrOne"])[:3])
    assert [(r.ok, r.rows, r.plain_reason) for r in recs] == [
        (True, 5, ""),
        (True, 5, ""),
        (True, 5, "built by sync"),
    ]
    assert recs[0].sources["rels"].keys() == {str(oid("hr_a"))}
    assert {name: newest(vs, name).rows for name in COUNTS} == COUNTS
    bad = list(history.records(vs.models["HrDiv"])[:2])
    assert [(r.ok, r.sqlstate, r.rows) for r in bad] == [(False, "22012", None)] * 2
    with CaptureQueriesContext(connection) as ctx:
        vs.models["HrOne"].refresh()
    assert "django_pgviews_c_refresh(" in ctx.captured_queries[0]["sql"]


@pytest.mark.parametrize("keep", [1, 3])
def test_runs_prune_at_least_keep_and_at_most_keep_plus_slack(vs, keep):
    one = vs.models["HrOne"]
    assert_pruned_to_keep(
        one, keep, lambda: refresh_views([one, vs.models["HrOfOne"]], using="default", jobs=2)
    )


def test_a_long_run_is_written_in_batches(vs, monkeypatch):
    monkeypatch.setattr(runhistory, "FLUSH_RECORDS", 2)
    with CaptureQueriesContext(connection) as ctx:
        refresh_views(counted(vs), using="default", jobs=1)
    calls = [q["sql"] for q in ctx.captured_queries if RUN_CALL in q["sql"]]
    assert len(calls) == 2  # after the second refresh and after the fourth
    # The first batch was written before the third view was refreshed.
    refreshes = [i for i, q in enumerate(ctx.captured_queries) if q["sql"].startswith("REFRESH")
                 or "REFRESH MATERIALIZED VIEW" in q["sql"]]  # fmt: skip
    first_call = next(i for i, q in enumerate(ctx.captured_queries) if RUN_CALL in q["sql"])
    assert len(refreshes) == 4 and refreshes[1] < first_call < refreshes[2]
    assert {name: newest(vs, name).rows for name in COUNTS} == COUNTS


def test_a_run_rolled_back_with_the_callers_transaction_leaves_no_record(vs):
    before = {name: history.records(vs.models[name]).count() for name in COUNTS}
    with pytest.raises(ZeroDivisionError), transaction.atomic():
        refresh_views(counted(vs), using="default")
        assert {name: history.records(vs.models[name]).count() for name in COUNTS} == {
            name: n + 1 for name, n in before.items()
        }  # written in the transaction, at the run's end
        1 / 0  # noqa: B018
    assert {name: history.records(vs.models[name]).count() for name in COUNTS} == before


def test_a_failure_to_record_a_run_fails_no_refresh(vs, caplog):
    execute("INSERT INTO hr_a VALUES (6, 6)")
    execute("ALTER TABLE django_pgviews_c_refresh RENAME TO hr_moved")
    try:
        with caplog.at_level(logging.WARNING, logger="django_pgviews_c.history"):
            result = refresh_views(counted(vs), using="default", jobs=2)
    finally:
        execute("ALTER TABLE hr_moved RENAME TO django_pgviews_c_refresh")
    assert result.count == 4 and catalog_rows("SELECT count(*) FROM t_hrone") == [(6,)]
    messages = [r.getMessage() for r in caplog.records if r.name == "django_pgviews_c.history"]
    assert 1 <= len(messages) <= 2  # as many as the run's writes (--jobs 2: at most two)
    for message in messages:
        assert "were not recorded in their history" in message
        assert "(run manage.py migrate)" in message
    assert "viewtest.HrOfOne" in " ".join(messages)
    assert newest(vs, "HrOne").rows == 5  # the sync's record, nothing newer
