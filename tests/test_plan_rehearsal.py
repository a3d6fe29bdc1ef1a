"""sync_pgviews --plan rehearses the sync: the whole plan runs (materialized views WITH NO DATA)
in a transaction that is always rolled back, so it reports what the real sync would, errors
included, and changes nothing."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from django_pgviews_c.exceptions import DependantObjectError, ForceRequiredError, ViewDefinitionError
from django_pgviews_c.sync import Syncer
from tests.helpers import ViewSet, catalog_rows, execute, snapshot


@pytest.fixture
def src(db):
    execute("CREATE TABLE t_src (id int PRIMARY KEY, v int); INSERT INTO t_src VALUES (1, 10), (2, 20)")


def rehearse(vs: ViewSet, **options):
    chosen = list(vs.models.values())
    return Syncer(connection, chosen, {m._meta.label for m in chosen}, **options).run(rehearse=True)


def test_a_sql_error_is_reported_with_its_position(src):
    vs = ViewSet()
    vs.view("Good", "SELECT id FROM t_src")
    vs.view("Bad", "SELECT id,\n  v FROM t_src_typo")
    before = snapshot()
    result = rehearse(vs)
    assert isinstance(result.error, ViewDefinitionError), result.error
    text = str(result.error)
    assert 'relation "t_src_typo" does not exist' in text
    assert "at line 2, column 10 of its SQL" in text
    assert result.statuses["viewtest.Good"] == "CREATED"
    assert snapshot() == before


def test_force_required_and_refused_dependants_are_reported(src):
    vs = ViewSet()
    vs.view("A", "SELECT id, v FROM t_src")
    vs.sync()
    vs.view("A", "SELECT id AS ident, v FROM t_src")
    before = snapshot()
    assert isinstance(rehearse(vs).error, ForceRequiredError)
    execute("CREATE VIEW user_u AS SELECT ident FROM t_a") if False else execute(
        "CREATE VIEW user_u AS SELECT id FROM t_a"
    )
    before = snapshot()
    result = rehearse(vs, force=True)
    assert isinstance(result.error, DependantObjectError), result.error
    assert "user_u" in str(result.error)
    assert snapshot() == before


def test_materialized_views_are_built_with_no_data(src):
    # A sequence is not transactional: a query run by the rehearsal would move it for good.
    execute("CREATE SEQUENCE s_probe")
    vs = ViewSet()
    vs.view("M", "SELECT id, nextval('s_probe') AS n FROM t_src", materialized=True)
    before = snapshot()
    result = rehearse(vs)
    assert result.error is None
    assert result.statuses["viewtest.M"] == "CREATED"
    assert catalog_rows("SELECT is_called FROM s_probe") == [(False,)]
    assert snapshot() == before
    vs.sync()
    assert catalog_rows("SELECT is_called FROM s_probe") == [(True,)]


def run(*args: str) -> tuple[int, str, str]:
    out, err = StringIO(), StringIO()
    try:
        call_command("sync_pgviews", *args, stdout=out, stderr=err)
        return 0, out.getvalue(), ""
    except CommandError as exc:
        return 1, out.getvalue(), str(exc)


@pytest.mark.django_db
def test_the_command_prints_one_line_per_view_and_a_summary():
    execute("DROP MATERIALIZED VIEW viewtest_materializedrelatedview CASCADE")
    before = snapshot()
    code, out, _ = run("--plan")
    assert code == 0
    lines = out.splitlines()
    created = [line for line in lines if line.startswith("  CREATED")]
    assert {line.split()[1] for line in created} == {
        "viewtest.MaterializedRelatedView",
        "viewtest.DependantMaterializedView",
    }
    assert all("lock: " in line for line in created)
    assert lines[-1].startswith("default: 2 of 12 views change, ")
    assert lines[-1].endswith("the sync would succeed")
    assert "CREATE MATERIALIZED VIEW" not in out
    assert snapshot() == before
    _, verbose, _ = run("--plan", "-v", "2")
    assert "CREATE MATERIALIZED VIEW" in verbose and "phase 1 (short transaction end" in verbose


@pytest.mark.django_db
def test_the_command_exits_non_zero_when_the_sync_would_fail():
    execute("DROP VIEW viewtest_relatedview CASCADE")
    execute("CREATE VIEW viewtest_relatedview AS SELECT id AS model_id, name, id FROM viewtest_testmodel")
    before = snapshot()
    code, out, err = run("--plan")
    assert code == 1
    assert "viewtest.RelatedView" in out and "the sync would FAIL" in out
    assert "--force" in err and "viewtest.RelatedView" in err
    assert snapshot() == before
    code, out, err = run("--plan", "--force")
    assert code == 0, err
    assert "the sync would succeed" in out
    assert snapshot() == before


@pytest.mark.django_db
def test_the_data_to_rebuild_is_the_old_objects_size():
    execute("INSERT INTO viewtest_testmodel (name) SELECT 'n' || g FROM generate_series(1, 500) AS g")
    execute(
        "REFRESH MATERIALIZED VIEW viewtest_materializedrelatedview; ANALYZE viewtest_materializedrelatedview"
    )
    execute(
        "DROP MATERIALIZED VIEW viewtest_materializedrelatedview CASCADE; "
        "CREATE MATERIALIZED VIEW viewtest_materializedrelatedview AS "
        "SELECT id AS model_id, id, 1 AS extra FROM viewtest_testmodel; ANALYZE viewtest_materializedrelatedview"
    )
    code, out, err = run("--plan")
    assert code == 0, err
    line = next(line for line in out.splitlines() if "viewtest.MaterializedRelatedView " in line)
    assert "rebuilds " in line and "(500 rows)" in line, line


@pytest.mark.django_db
def test_restored_dependants_get_a_line_of_their_own():
    execute("CREATE VIEW user_over_related AS SELECT model_id FROM viewtest_relatedview")
    execute("DROP VIEW viewtest_relatedview CASCADE")
    execute("CREATE VIEW viewtest_relatedview AS SELECT id AS model_id, name, id FROM viewtest_testmodel")
    execute("CREATE VIEW user_over_related AS SELECT model_id FROM viewtest_relatedview")
    before = snapshot()
    code, out, err = run("--plan", "--force", "--restore-dependants")
    assert code == 0, err
    restored = [line for line in out.splitlines() if line.startswith("  RESTORED")]
    assert len(restored) == 1 and "user_over_related" in restored[0], out
    assert snapshot() == before


def test_a_function_without_search_path_is_warned_of_on_postgresql_17(src):
    """The rehearsal builds WITH NO DATA, so it never runs the functions a materialized view calls:
    on PostgreSQL 17+, which runs them with search_path = pg_catalog, pg_temp, the real sync can
    fail where the rehearsal passed. --plan names each function without a search_path of its own
    (as check W004 does once the view exists) and says the sync may fail on it."""
    from django.db import models

    from django_pgviews_c.exceptions import DatabaseError
    from django_pgviews_c.management.commands.sync_pgviews import Command

    if connection.pg_version < 170000:
        pytest.skip("PostgreSQL before 17 builds materialized views with the session's search_path")
    execute(
        "CREATE FUNCTION reh_loose(int) RETURNS int LANGUAGE sql AS 'SELECT $1 + count(*)::int FROM t_src'"
    )
    execute(
        "CREATE FUNCTION reh_pinned(int) RETURNS int LANGUAGE sql SET search_path = public "
        "AS 'SELECT $1 + count(*)::int FROM t_src'"
    )
    vs = ViewSet()
    vs.view("Inner", "SELECT id, reh_loose(v) AS w FROM t_src", w=models.IntegerField())
    vs.view("Calls", "SELECT id, reh_loose(v) AS w FROM t_src", materialized=True, w=models.IntegerField())
    vs.view("Through", "SELECT * FROM t_inner", materialized=True, dependencies=("viewtest.Inner",))
    vs.view("Pinned", "SELECT id, reh_pinned(v) AS w FROM t_src", materialized=True, w=models.IntegerField())
    before = snapshot()
    result = rehearse(vs)
    assert result.error is None  # WITH NO DATA: the function never ran
    assert result.unpinned == {
        "viewtest.Calls": [("reh_loose(integer)", None)],
        "viewtest.Through": [("reh_loose(integer)", "t_inner")],
    }
    assert snapshot() == before
    out = StringIO()
    Command(stdout=out)._print_plan(result, 1)
    text = out.getvalue()
    assert (
        "  warning: viewtest.Calls calls reh_loose(integer), which has no search_path of its own: "
        "PostgreSQL 17+ runs CREATE and REFRESH MATERIALIZED VIEW with search_path = pg_catalog, "
        "pg_temp" in text
    )
    assert "viewtest.Through calls reh_loose(integer) (through the view t_inner)" in text
    assert "the sync would succeed unless a function named above" in text
    with pytest.raises(DatabaseError, match='relation "t_src" does not exist'):
        vs.sync()  # what the warning is about
