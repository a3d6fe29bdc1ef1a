"""The refresh history's server-side functions (migration 0004, django_pgviews_c.historyfn): what
migrate creates and migrating back drops, the one round trip calling them (on a database where
0007's refresh function is missing: tests/test_refresh_single.py has that one), the script of
before where they are missing, the same sources either way, and the pruning they do with its
slack."""

from __future__ import annotations

import logging

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from django_pgviews_c import _core, history
from django_pgviews_c.historyfn import forget_functions
from tests.helpers import ViewSet, assert_pruned_to_keep, catalog_rows, execute

FUNCTIONS = ("django_pgviews_c_capture", "django_pgviews_c_record", "django_pgviews_c_record_run")
#: Migration 0007's: the refresh function (settings pinned) and the two it nests (none of their own).
SINGLE = ("django_pgviews_c_refresh", "django_pgviews_c_refresh_capture", "django_pgviews_c_refresh_record")


def functions() -> list[tuple]:
    """(name, schema, security definer, settings) of each function of ours."""
    return catalog_rows(
        "SELECT p.proname::text, n.nspname::text, p.prosecdef, p.proconfig FROM pg_proc p"
        " JOIN pg_namespace n ON n.oid = p.pronamespace WHERE p.proname = ANY(%s) ORDER BY 1",
        [list(FUNCTIONS + SINGLE)],
    )


def shape(sources: dict) -> dict:
    """A capture without its write counters (the statistics may publish a write in between)."""
    return {**sources, "rels": {oid: [v[0], *v[2:]] for oid, v in sources["rels"].items()}}


def schema_of_history() -> str:
    return catalog_rows("SELECT relnamespace::regnamespace::text FROM pg_class WHERE oid = %s::regclass",
                        ["django_pgviews_c_refresh"])[0][0]  # fmt: skip


def drop_single() -> None:
    """0007's functions dropped by hand, as on a database migrated to 0006, and the connection
    told so (as its first refresh would learn it)."""
    execute(_core.query_sql("history_drop_refresh_function", schema=schema_of_history()))
    forget_functions(connection, "single")


def create_single() -> None:
    schema = schema_of_history()
    execute(_core.query_sql("history_refresh_function", schema=schema,
                            table=_core.qualified_name(schema, "django_pgviews_c_exact")))  # fmt: skip
    connection.close()


@pytest.fixture
def vs(transactional_db):
    drop_single()
    try:
        yield from _views()
    finally:
        create_single()


def _views():
    execute("CREATE SCHEMA hf_s")
    execute("CREATE TABLE hf_a (id int PRIMARY KEY, v int)")
    execute("CREATE TABLE hf_s.hf_b (id int PRIMARY KEY)")
    execute("INSERT INTO hf_a VALUES (1, 1), (2, 2)")
    execute("INSERT INTO hf_s.hf_b VALUES (1), (2)")
    views = ViewSet()
    views.view("HfMat", "SELECT a.id, a.v FROM hf_a a JOIN hf_s.hf_b b USING (id)", materialized=True)
    views.view("HfExact", "SELECT id, v FROM hf_a", materialized=True, staleness="exact")
    views.sync()
    yield views
    execute("DROP MATERIALIZED VIEW IF EXISTS t_hfmat, t_hfexact")
    execute("DROP TABLE IF EXISTS hf_a")
    execute("DROP SCHEMA hf_s CASCADE")
    execute("DELETE FROM django_pgviews_c_exact")


@pytest.fixture
def without_functions(vs):
    """The functions dropped by hand, as on a database where migration 0004 was never applied;
    put back afterwards on a fresh connection."""
    schema = schema_of_history()
    execute(_core.query_sql("history_drop_functions", schema=schema))
    try:
        yield
    finally:
        execute(_core.query_sql("history_functions", schema=schema,
                                table=_core.qualified_name(schema, "django_pgviews_c_exact")))  # fmt: skip
        connection.close()


def test_migrate_creates_them_pinned_and_migrating_back_drops_them(transactional_db):
    schema = schema_of_history()
    assert [(name, nsp, definer) for name, nsp, definer, _ in functions()] == [
        ("django_pgviews_c_capture", schema, False),
        ("django_pgviews_c_record", schema, False),
        ("django_pgviews_c_record_run", schema, False),  # migration 0005
        ("django_pgviews_c_refresh", schema, False),  # migration 0007
        ("django_pgviews_c_refresh_capture", schema, False),
        ("django_pgviews_c_refresh_record", schema, False),
    ]  # SECURITY INVOKER, beside the table
    for name, _, _, config in functions():
        if name in SINGLE[1:]:  # called by the refresh function alone, under its settings
            assert config is None
            continue
        assert "search_path=pg_catalog, pg_temp" in config
        assert "plan_cache_mode=force_generic_plan" in config
    try:
        call_command("migrate", "django_pgviews_c", "0006", verbosity=0)
        assert [f[0] for f in functions()] == list(FUNCTIONS)
        call_command("migrate", "django_pgviews_c", "0004", verbosity=0)
        assert [f[0] for f in functions()] == list(FUNCTIONS[:2])
        call_command("migrate", "django_pgviews_c", "0003", verbosity=0)
        assert functions() == []
        assert catalog_rows("SELECT to_regclass('django_pgviews_c_refresh') IS NOT NULL") == [(True,)]
    finally:
        call_command("migrate", "django_pgviews_c", verbosity=0)
    assert [f[0] for f in functions()] == list(FUNCTIONS + SINGLE)


def test_the_one_round_trip_calls_them_and_records_what_the_ordinary_capture_reads(vs):
    mat = vs.models["HfMat"]
    with CaptureQueriesContext(connection) as ctx:
        mat.refresh()
    [query] = ctx.captured_queries
    assert "django_pgviews_c_capture(" in query["sql"] and "django_pgviews_c_record(" in query["sql"]
    assert "WITH RECURSIVE" not in query["sql"]  # the catalog query is the function's, not sent
    rec = history.records(mat).first()
    assert rec.ok and rec.rows == 2 and rec.mode == "plain" and rec.duration > 0
    # The names as the session's search_path shows them: hf_s is not on it.
    assert sorted(v[3] for v in rec.sources["rels"].values()) == ["hf_a", "hf_s.hf_b"]
    assert shape(rec.sources) == shape(history.capture(connection, [mat])[0])
    assert catalog_rows("SELECT current_setting('jit'), current_setting('search_path')") == [
        tuple(catalog_rows("SELECT reset_val FROM pg_settings WHERE name = %s", [n])[0][0]
              for n in ("jit", "search_path"))
    ]  # fmt: skip


def test_exact_sources_through_the_function(vs):
    exact = vs.models["HfExact"]
    exact.refresh()
    rec = history.records(exact).first()
    assert shape(rec.sources) == shape(history.capture(connection, [exact])[0])
    [(_, _, _, name, counted)] = rec.sources["rels"].values()
    assert name == "hf_a" and counted[1] == 0


def test_where_they_are_missing_the_script_of_before_records_the_same(vs, without_functions, caplog):
    mat = vs.models["HfMat"]
    execute("INSERT INTO hf_a VALUES (3, 3)")
    execute("INSERT INTO hf_s.hf_b VALUES (3)")
    with caplog.at_level(logging.WARNING, logger="django_pgviews_c.history"):
        with CaptureQueriesContext(connection) as first:
            mat.refresh()
        with CaptureQueriesContext(connection) as second:
            mat.refresh()
    assert [r.getMessage() for r in caplog.records if r.name == "django_pgviews_c.history"] == []
    # The first trip fails on the missing function before anything ran; the same trip follows
    # without the functions, and the connection sends that one from then on.
    assert "django_pgviews_c_capture(" in first.captured_queries[0]["sql"]
    assert "WITH RECURSIVE" in first.captured_queries[-1]["sql"]
    [query] = second.captured_queries
    assert "WITH RECURSIVE" in query["sql"] and "django_pgviews_c_capture(" not in query["sql"]
    recs = list(history.records(mat)[:2])
    assert [(r.ok, r.rows, r.plain_reason) for r in recs] == [(True, 3, ""), (True, 3, "")]
    assert shape(recs[0].sources) == shape(history.capture(connection, [mat])[0])
    assert sorted(v[3] for v in recs[0].sources["rels"].values()) == ["hf_a", "hf_s.hf_b"]
    assert connection.get_autocommit() and not connection.in_atomic_block


def test_a_new_connection_tries_them_again(vs, without_functions):
    mat = vs.models["HfMat"]
    mat.refresh()  # learns that they are missing
    schema = schema_of_history()
    execute(_core.query_sql("history_functions", schema=schema,
                            table=_core.qualified_name(schema, "django_pgviews_c_exact")))  # fmt: skip
    with CaptureQueriesContext(connection) as ctx:
        mat.refresh()
    assert "django_pgviews_c_capture(" not in ctx.captured_queries[0]["sql"]
    connection.close()
    with CaptureQueriesContext(connection) as ctx:
        mat.refresh()
    # A new connection tries 0007's function first (missing here, nothing ran), then these.
    first, query = ctx.captured_queries
    assert "django_pgviews_c_refresh(" in first["sql"]
    assert "django_pgviews_c_capture(" in query["sql"]


@pytest.mark.parametrize("keep", [1, 3])
def test_pruning_keeps_at_least_keep_and_at_most_keep_plus_slack(vs, keep):
    mat = vs.models["HfMat"]
    assert_pruned_to_keep(mat, keep, mat.refresh)


def test_migration_0006_replaces_an_earlier_text_and_leaves_it_backwards(transactional_db):
    """A database migrated with an earlier version keeps that version's function text until
    0006 re-creates it; migrating back leaves the functions in place (0004 created them)."""
    schema = schema_of_history()

    def capture_text() -> str:
        return catalog_rows("SELECT prosrc FROM pg_proc WHERE proname = 'django_pgviews_c_capture'")[0][0]

    current = capture_text()
    assert "OFFSET 0" in current  # its catalog lookups by index (tests/test_catalog_plans.py)
    try:
        call_command("migrate", "django_pgviews_c", "0005", verbosity=0)
        assert capture_text() == current
        execute(
            f"CREATE OR REPLACE FUNCTION {schema}.django_pgviews_c_capture(p_view regclass, p_path name[],"
            " p_exact boolean) RETURNS void LANGUAGE plpgsql AS $$BEGIN END$$"
        )  # as an earlier version left it
        call_command("migrate", "django_pgviews_c", verbosity=0)
        assert capture_text() == current
    finally:
        call_command("migrate", "django_pgviews_c", verbosity=0)
        connection.close()
