"""Every error the package reports carries the server's DETAIL and HINT: a sync that fails, a
change that needs --force, a refresh on Django's connection and on the parallel loop's."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from django_pgviews_c.exceptions import DatabaseError, ForceRequiredError, RefreshError
from django_pgviews_c.refresh import refresh_views
from django_pgviews_c.sync import sync_pgviews
from tests.helpers import ViewSet, catalog_rows, execute
from tests.viewtest import models

DUPLICATED = "DETAIL: Key (id)=(1) is duplicated."
TABLE = "viewtest_materializedrelatedviewwithindex"


def _duplicate_rows_under_the_unique_index() -> None:
    """The materialized view redefined by hand so that its next refresh meets duplicate keys."""
    execute(
        f"DROP MATERIALIZED VIEW {TABLE}; "
        f"CREATE MATERIALIZED VIEW {TABLE} AS SELECT 1 AS model_id, 1 AS id UNION ALL SELECT 1, 1 "
        f"WITH NO DATA; CREATE UNIQUE INDEX ON {TABLE} (id)"
    )


@pytest.mark.django_db
def test_a_failing_sync_statement_carries_the_detail():
    vs = ViewSet()
    vs.view("Dup", "SELECT 1 AS id UNION ALL SELECT 1", materialized=True, concurrent_index="id")
    with pytest.raises(DatabaseError) as info:
        vs.sync()
    assert DUPLICATED in str(info.value)
    assert info.value.detail == "Key (id)=(1) is duplicated."


@pytest.mark.django_db
def test_force_required_carries_the_servers_hint():
    vs = ViewSet()
    vs.view("Renamed", "SELECT 1 AS a")
    vs.sync()
    vs.view("Renamed", "SELECT 1 AS b")
    with pytest.raises(ForceRequiredError) as info:
        vs.sync()
    text = str(info.value)
    assert 'cannot change name of view column "a" to "b"' in text
    assert "\nHINT: " in text and "RENAME COLUMN" in text


@pytest.mark.django_db
def test_refresh_error_carries_the_detail():
    _duplicate_rows_under_the_unique_index()
    with pytest.raises(RefreshError) as info:
        refresh_views([models.MaterializedRelatedViewWithIndex])
    assert "could not create unique index" in str(info.value)
    assert DUPLICATED in str(info.value)
    assert DUPLICATED in info.value.failures["viewtest.MaterializedRelatedViewWithIndex"]


@pytest.mark.django_db
def test_refresh_command_error_carries_the_detail():
    _duplicate_rows_under_the_unique_index()
    with pytest.raises(CommandError) as info:
        call_command("refresh_pgviews", stdout=StringIO(), stderr=StringIO())
    assert DUPLICATED in str(info.value)


@pytest.mark.django_db(transaction=True)
def test_parallel_refresh_error_carries_the_detail():
    _duplicate_rows_under_the_unique_index()
    try:
        with pytest.raises(RefreshError) as info:
            refresh_views(
                [models.MaterializedRelatedViewWithIndex, models.MaterializedRelatedView],
                using="default",
                jobs=2,
            )
        assert DUPLICATED in info.value.failures["viewtest.MaterializedRelatedViewWithIndex"]
        assert "SQLSTATE 23505" in str(info.value)
        # What to do about it: the declaration at fault, named.
        assert (
            "HINT: concurrent_index = 'id' of viewtest.MaterializedRelatedViewWithIndex names columns "
            "whose values repeat" in info.value.failures["viewtest.MaterializedRelatedViewWithIndex"]
        )
    finally:
        execute(f"DROP MATERIALIZED VIEW {TABLE}")
        sync_pgviews("default", send_signals=False)


@pytest.mark.django_db
def test_force_required_names_unmanaged_dependants_and_the_way_out():
    execute("CREATE TABLE t_src (id int PRIMARY KEY, v int); INSERT INTO t_src VALUES (1, 10)")
    vs = ViewSet()
    vs.view("A", "SELECT id, v FROM t_src")
    vs.sync()
    execute("CREATE VIEW user_report AS SELECT v FROM t_a")
    vs.view("A", "SELECT id AS ident, v FROM t_src")
    with pytest.raises(ForceRequiredError) as info:
        vs.sync()
    text = str(info.value)
    assert "user_report" in text, text
    assert "--force --restore-dependants" in text and "PGVIEWS_RESTORE_DEPENDANTS" in text, text
    assert info.value.details["unmanaged"] and "user_report" in info.value.details["unmanaged"][0]
    # The way out it names works: the user's view is kept, over the new definition.
    result = vs.sync(force=True, restore_dependants=True)
    assert result.statuses["viewtest.A"] in ("FORCED", "UPDATED")
    assert catalog_rows("SELECT to_regclass('user_report') IS NOT NULL") == [(True,)]


@pytest.mark.django_db
def test_force_required_without_unmanaged_dependants_says_force():
    execute("CREATE TABLE t_src (id int PRIMARY KEY, v int)")
    vs = ViewSet()
    vs.view("A", "SELECT id, v FROM t_src")
    vs.sync()
    vs.view("A", "SELECT id AS ident, v FROM t_src")
    with pytest.raises(ForceRequiredError) as info:
        vs.sync()
    assert "Run sync_pgviews --force to do so." in str(info.value)
    assert "--restore-dependants" not in str(info.value)


@pytest.mark.django_db
def test_a_materialized_view_sent_alone_points_into_its_own_sql():
    execute("CREATE TABLE t_src (id int PRIMARY KEY, v int)")
    vs = ViewSet()
    vs.view("Fine", "SELECT id FROM t_src", materialized=True)
    vs.view("Typo", "SELECT id,\n       vv FROM t_src", materialized=True)
    with pytest.raises(DatabaseError) as info:
        vs.sync()
    text = str(info.value)
    assert "viewtest.Typo" in text and 'column "vv" does not exist' in text, text
    assert "at line 2, column 8 of its SQL" in text, text
    assert catalog_rows("SELECT to_regclass('t_fine') IS NULL") == [(True,)]


@pytest.mark.django_db
def test_a_function_that_finds_nothing_under_the_restricted_search_path_is_explained():
    """PostgreSQL 17+ builds a materialized view with search_path = pg_catalog, pg_temp: the
    function it calls no longer finds the table its body names, and the server's own words
    (does not exist, though it does) leave the user guessing. The error says why and what to do,
    keeps the server's CONTEXT (which names the function) and changes nothing."""
    from django.db import connection, models

    if connection.pg_version < 170000:
        pytest.skip("PostgreSQL before 17 builds materialized views with the session's search_path")
    execute("CREATE TABLE t_sp (id int, v int)")
    execute("INSERT INTO t_sp VALUES (1, 10)")
    execute("CREATE FUNCTION sp_loose(int) RETURNS int LANGUAGE sql AS 'SELECT $1 + count(*)::int FROM t_sp'")
    vs = ViewSet()
    vs.view("Plain", "SELECT id, sp_loose(v) AS w FROM t_sp", w=models.IntegerField())
    vs.view("Loose", "SELECT id, sp_loose(v) AS w FROM t_sp", materialized=True, w=models.IntegerField())
    with pytest.raises(DatabaseError) as info:
        vs.sync()
    error = info.value
    assert error.sqlstate == "42P01" and error.view == "create viewtest.Loose (public.t_loose)"
    assert 'relation "t_sp" does not exist' in error.message
    assert (
        "PostgreSQL 17+ runs CREATE and REFRESH MATERIALIZED VIEW with search_path = pg_catalog, pg_temp"
        in (error.hint)
    )
    assert 'SQL function "sp_loose"' in error.hint  # the server's CONTEXT, naming the function
    assert "ALTER FUNCTION" in error.hint and "SET search_path" in error.hint
    assert catalog_rows("SELECT to_regclass('t_plain'), to_regclass('t_loose')") == [(None, None)]
    # A function that qualifies its names builds; the plain view never had the restriction.
    execute(
        "CREATE OR REPLACE FUNCTION sp_loose(int) RETURNS int LANGUAGE sql AS 'SELECT $1 + count(*)::int FROM public.t_sp'"
    )
    vs.sync()
    assert catalog_rows("SELECT w FROM t_loose") == [(11,)]
    # The function changed later: refreshing the view says the same.
    execute(
        "CREATE OR REPLACE FUNCTION sp_loose(int) RETURNS int LANGUAGE sql AS 'SELECT $1 + count(*)::int FROM t_sp'"
    )
    with pytest.raises(RefreshError) as refreshing:
        refresh_views([vs.models["Loose"]])
    assert 'relation "t_sp" does not exist' in refreshing.value.failures["viewtest.Loose"]
    assert (
        "PostgreSQL 17+ runs CREATE and REFRESH MATERIALIZED VIEW"
        in refreshing.value.failures["viewtest.Loose"]
    )
    assert catalog_rows("SELECT w FROM t_loose") == [(11,)]
    # A view that is simply missing is not blamed on a function.
    execute("DROP MATERIALIZED VIEW t_loose")
    with pytest.raises(RefreshError) as missing:
        refresh_views([vs.models["Loose"]])
    assert "does not exist" in missing.value.failures["viewtest.Loose"]
    assert "PostgreSQL 17+" not in missing.value.failures["viewtest.Loose"]


@pytest.mark.django_db
def test_a_concurrent_index_on_values_that_repeat_says_what_to_do():
    """concurrent_index naming a column whose values repeat: the server says only that an index
    could not be created, or that a key is duplicated. The sync and a refresh say which
    declaration is at fault and what it needs."""
    execute("CREATE TABLE t_dup (id int, grp int)")
    execute("INSERT INTO t_dup VALUES (1, 1), (2, 2)")
    vs = ViewSet()
    grouped = vs.view("Grp", "SELECT id, grp FROM t_dup", materialized=True, concurrent_index="grp")
    vs.sync()
    execute("INSERT INTO t_dup VALUES (3, 1)")
    with pytest.raises(RefreshError) as refreshing:
        refresh_views([grouped])
    text = refreshing.value.failures["viewtest.Grp"]
    assert "DETAIL: Key (grp)=(1) is duplicated." in text
    assert "concurrent_index = 'grp' of viewtest.Grp names columns whose values repeat" in text
    execute("DROP MATERIALIZED VIEW t_grp")
    with pytest.raises(DatabaseError) as syncing:
        vs.sync()
    error = syncing.value
    assert error.sqlstate == "23505" and error.detail == "Key (grp)=(1) is duplicated."
    assert "concurrent_index = 'grp' of viewtest.Grp names columns whose values repeat" in error.hint
    assert "unique in every row" in error.hint
    assert catalog_rows("SELECT to_regclass('t_grp')") == [(None,)]
