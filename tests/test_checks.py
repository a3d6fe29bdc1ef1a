"""System checks: declarations PostgreSQL would refuse, and what the database shows."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.db import connection, models

from django_pgviews_c.checks import check_view_names, check_views_on
from django_pgviews_c.exceptions import DatabaseError
from tests.helpers import ViewSet, execute

pytestmark = pytest.mark.django_db


def ids(messages):
    return sorted(m.id for m in messages)


def field(**kwargs):
    return models.IntegerField(**kwargs)


def test_concurrent_index_must_be_plain_columns():
    vs = ViewSet()
    expr = vs.view("Expr", "SELECT 1 AS id", materialized=True, concurrent_index="lower(name)")
    where = vs.view("Where", "SELECT 1 AS id", materialized=True, concurrent_index="id WHERE id > 0")
    fine = vs.view("Fine", "SELECT 1 AS id", materialized=True, concurrent_index='id, "Id"', Id=field())
    messages = check_view_names([expr, where, fine])
    assert ids(messages) == ["django_pgviews_c.E003", "django_pgviews_c.E003"]
    by_obj = {m.obj: m for m in messages}
    assert (
        "viewtest.Expr: concurrent_index = 'lower(name)' is not a list of plain columns" in by_obj[expr].msg
    )
    assert "has a WHERE clause" in by_obj[where].msg
    assert "Name columns only" in by_obj[where].hint


def test_names_over_63_bytes():
    vs = ViewSet()
    table = vs.view("Long", "SELECT 1 AS id", db_table="v" * 64)
    index = vs.view("LongIdx", "SELECT 1 AS id", materialized=True, db_table="é" * 30, concurrent_index="id")
    messages = check_view_names([table, index])
    assert ids(messages) == ["django_pgviews_c.E004", "django_pgviews_c.W003"]
    error, warning = sorted(messages, key=lambda m: m.id)
    assert error.msg.startswith("viewtest.Long: invalid db_table") and "63 bytes" in error.hint
    assert "over PostgreSQL's 63; it is created as" in warning.msg
    [quote] = check_view_names([vs.view("Quote", "SELECT 1 AS id", db_table='"unterminated')])
    assert quote.id == "django_pgviews_c.E004" and "unterminated quoted identifier" in quote.msg
    assert "double-quoted" in quote.hint


def test_concurrent_index_on_a_column_no_field_has():
    vs = ViewSet()
    typo = vs.view("Typo", "SELECT 1 AS id", materialized=True, concurrent_index="idd")
    [message] = check_view_names([typo])
    assert message.id == "django_pgviews_c.W006"
    assert "concurrent_index names column 'idd'" in message.msg


@pytest.fixture
def functions():
    execute("CREATE TABLE t_chk (id int, v int)")
    execute("INSERT INTO t_chk VALUES (1, 10)")
    execute(
        "CREATE FUNCTION chk_loose(int) RETURNS int LANGUAGE sql AS 'SELECT $1 + count(*)::int FROM t_chk'"
    )
    execute(
        "CREATE FUNCTION chk_pinned(int) RETURNS int LANGUAGE sql SET search_path = public "
        "AS 'SELECT $1 + count(*)::int FROM t_chk'"
    )


def test_materialized_view_calling_a_function_without_search_path(functions):
    vs = ViewSet()
    direct = vs.view("Direct", "SELECT id, chk_loose(v) AS w FROM t_chk", materialized=True)
    inner = vs.view("Inner", "SELECT id, chk_loose(v) AS w FROM t_chk")
    through = vs.view("Through", "SELECT * FROM t_inner", materialized=True, dependencies=("viewtest.Inner",))
    pinned = vs.view("Pinned", "SELECT id, chk_pinned(v) + abs(v) AS w FROM t_chk", materialized=True)
    for model in vs.models.values():
        model.add_to_class("w", field())
    if connection.pg_version >= 170000:
        # The trap itself: PostgreSQL 17+ builds materialized views with search_path =
        # pg_catalog, pg_temp, where the function's body no longer finds t_chk.
        with pytest.raises(DatabaseError, match='relation "t_chk" does not exist'):
            vs.sync()
        return
    vs.sync()
    messages = [
        m for m in check_views_on("default", *[list(vs.models.values())] * 2) if m.id.endswith("W004")
    ]
    assert {m.obj for m in messages} == {direct, through}
    by_obj = {m.obj: m for m in messages}
    assert "viewtest.Direct: the materialized view calls chk_loose(integer), which has no search_path" in (
        by_obj[direct].msg
    )
    assert "(through the view t_inner)" in by_obj[through].msg
    assert "ALTER FUNCTION chk_loose(integer) SET search_path" in by_obj[direct].hint
    assert inner not in by_obj and pinned not in by_obj  # a plain view; a pinned function


def test_reading_a_managed_view_without_declaring_it(functions):
    vs = ViewSet()
    base = vs.view("Base", "SELECT id, v FROM t_chk")
    vs.sync()
    reader = vs.view("Reader", "SELECT id FROM t_base")
    declared = vs.view("Declared", "SELECT id FROM t_reader", dependencies=("viewtest.Reader",))
    vs.sync()
    chosen = [base, reader, declared]
    [message] = [m for m in check_views_on("default", chosen, chosen) if m.id.endswith("W005")]
    assert message.obj is reader
    assert message.msg.startswith("viewtest.Reader reads viewtest.Base (t_base) without declaring it")
    assert message.hint == "Add 'viewtest.Base' to Reader.dependencies."


def test_a_field_the_view_has_no_column_for(functions):
    vs = ViewSet()
    model = vs.view("NoCol", "SELECT id, v FROM t_chk", missing=field())
    vs.sync()
    [message] = check_views_on("default", [model], [model])
    assert message.id == "django_pgviews_c.W007"
    assert (
        "viewtest.NoCol.missing: the view t_nocol on database 'default' has no column 'missing'"
        in message.msg
    )


def test_views_about_to_change_or_not_created_are_not_judged(functions):
    vs = ViewSet()
    judged = vs.view("Direct", "SELECT id, v FROM t_chk", materialized=True, missing=field())
    vs.sync()
    assert ids(check_views_on("default", [judged], [judged])) == ["django_pgviews_c.W007"]
    changed = vs.view("Direct", "SELECT id, v, 1 AS w FROM t_chk", materialized=True, missing=field())
    never = vs.view("Never", "SELECT id FROM t_chk", missing=field())
    assert check_views_on("default", [changed, never], [changed, never]) == []


def test_check_command_runs_the_database_checks():
    # The project's own views: the command runs them without error.
    call_command("check", databases=["default"], fail_level="ERROR")


def test_a_view_whose_sql_cannot_be_built(functions):
    vs = ViewSet()
    fine = vs.view("Fine", "SELECT id FROM t_chk", missing=field())
    broken = vs.view("Broken", lambda: fine.objects.filter(nowhere=1).values("id"))
    empty = vs.view("Empty", lambda: fine.objects.none())
    vs.sync(["Fine"])
    messages = check_views_on("default", [fine, broken, empty], [fine, broken, empty])
    assert ids(messages) == ["django_pgviews_c.E005", "django_pgviews_c.E005", "django_pgviews_c.W007"]
    by_obj = {m.obj: m for m in messages}
    assert by_obj[broken].msg.startswith(
        "viewtest.Broken: its SQL cannot be built: FieldError: Cannot resolve"
    )
    assert "QuerySetViewError: viewtest.Empty: its QuerySet is empty" in by_obj[empty].msg
    assert by_obj[fine].id == "django_pgviews_c.W007"  # the others are still judged


def test_refresh_interval_on_a_plain_view_is_w010_and_one_not_a_timedelta_is_e007():
    import datetime as dt

    from django_pgviews_c.checks import _declaration_messages
    from django_pgviews_c.exceptions import PGViewsError
    from django_pgviews_c.freshness import refresh_interval

    vs = ViewSet()
    plain = vs.view("Plain", "SELECT 1 AS id", refresh_interval=dt.timedelta(minutes=5))
    minutes = vs.view("Minutes", "SELECT 1 AS id", materialized=True, refresh_interval=15)
    negative = vs.view("Neg", "SELECT 1 AS id", materialized=True, refresh_interval=dt.timedelta(-1))
    fine = vs.view("Fine", "SELECT 1 AS id", materialized=True, refresh_interval=dt.timedelta(0))
    assert ids(_declaration_messages(plain)) == ["django_pgviews_c.W010"]
    assert "has no effect" in _declaration_messages(plain)[0].msg
    assert ids(_declaration_messages(minutes)) == ["django_pgviews_c.E007"]
    assert "viewtest.Minutes.refresh_interval is 15" in _declaration_messages(minutes)[0].msg
    assert ids(_declaration_messages(negative)) == ["django_pgviews_c.E007"]
    assert _declaration_messages(fine) == []
    # Met by a command before any check ran: an error the command says in one line, no traceback.
    for model in (minutes, negative):
        with pytest.raises(PGViewsError, match=r"refresh_interval is .*: it must be a datetime\.timedelta"):
            refresh_interval(model)
