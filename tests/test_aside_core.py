"""The core's SQL for setting views aside (csrc/aside.c), against the server: which views a
column change reaches, and re-creating a recorded view exactly as it was."""

from __future__ import annotations

import os

import pytest

from django_pgviews_c import _core

ODD_ROLE = 'pgvc "odd" role' + os.environ.get("PGVIEWS_DB_SUFFIX", "")


def aside(cursor, *touches: tuple[str, str | None]) -> list[tuple]:
    cursor.execute(_core.aside_sql(), {"tables": [t for t, _ in touches], "columns": [c for _, c in touches]})
    return [tuple(r) for r in cursor.fetchall()]


def names(rows: list[tuple]) -> list[tuple[str, int]]:
    return [(r[2], r[4]) for r in rows]


@pytest.fixture
def tables(cursor):
    cursor.execute(
        "CREATE TABLE aside_t (id int PRIMARY KEY, a int, b text);"
        "INSERT INTO aside_t VALUES (1, 10, 'x'), (2, 20, 'y');"
        "CREATE VIEW aside_reads_a AS SELECT a FROM aside_t;"
        "CREATE VIEW aside_reads_b AS SELECT id, b FROM aside_t;"
        "CREATE VIEW aside_groups AS SELECT id, b FROM aside_t GROUP BY id;"
        "CREATE MATERIALIZED VIEW aside_over_a AS SELECT sum(a) AS s FROM aside_reads_a;"
        "CREATE VIEW aside_top AS SELECT s FROM aside_over_a"
    )
    return cursor


def test_a_column_reaches_the_views_that_read_it_recursively_deepest_first(tables):
    assert names(aside(tables, ("aside_t", "a"))) == [
        ("aside_top", 3),
        ("aside_over_a", 2),
        ("aside_reads_a", 1),
    ]
    assert names(aside(tables, ("aside_t", "b"))) == [("aside_groups", 1), ("aside_reads_b", 1)]


def test_a_primary_key_reaches_the_views_that_group_by_it(tables):
    # aside_groups reads b only through the key's functional dependency.
    assert ("aside_groups", 1) in names(aside(tables, ("aside_t", "id")))


def test_a_whole_table_or_an_unknown_column_reaches_every_view(tables):
    everything = names(aside(tables, ("aside_t", None)))
    assert len(everything) == 5
    assert names(aside(tables, ("aside_t", "no_such_column"))) == everything
    assert aside(tables, ("no_such_table", None)) == []


def test_a_cycle_of_views_ends_the_walk(tables):
    # CREATE OR REPLACE lets two views read each other (the server refuses only to query them).
    tables.execute(
        "CREATE VIEW aside_ping AS SELECT a FROM aside_t;"
        "CREATE VIEW aside_pong AS SELECT a FROM aside_ping;"
        "CREATE OR REPLACE VIEW aside_ping AS SELECT a FROM aside_t UNION ALL SELECT a FROM aside_pong"
    )
    found = {r[2]: r for r in aside(tables, ("aside_t", "a"))}
    assert {"aside_ping", "aside_pong", "aside_reads_a", "aside_over_a", "aside_top"} == set(found)
    ping, pong = found["aside_ping"][0], found["aside_pong"][0]
    assert found["aside_ping"][6] == [pong] and found["aside_pong"][6] == [ping]


def test_restore_statements_re_create_a_view_as_it_was(tables):
    cursor = tables
    cursor.execute(f'CREATE ROLE "{ODD_ROLE.replace(chr(34), chr(34) * 2)}" NOLOGIN')
    quoted_role = _core.quote_ident(ODD_ROLE)
    cursor.execute(
        "CREATE UNIQUE INDEX aside_over_a_s ON aside_over_a (s);"
        "COMMENT ON MATERIALIZED VIEW aside_over_a IS 'it''s mine';"
        f"GRANT SELECT ON aside_over_a TO {quoted_role} WITH GRANT OPTION;"
        f"GRANT UPDATE ON aside_over_a TO {quoted_role};"
        "GRANT SELECT ON aside_over_a TO PUBLIC"
    )
    state_sql = (
        "SELECT pg_get_viewdef(c.oid), c.relispopulated, c.relacl::text[], "
        "obj_description(c.oid, 'pg_class'), "
        "(SELECT array_agg(pg_get_indexdef(indexrelid)) FROM pg_index WHERE indrelid = c.oid) "
        "FROM pg_class c WHERE c.relname = 'aside_over_a'"
    )
    cursor.execute(state_sql)
    before = cursor.fetchone()
    row = next(r for r in aside(cursor, ("aside_t", "a")) if r[2] == "aside_over_a")
    oid, schema, name, kind, _depth, populated, _refs, definition, comment, acl, owner, space, idx = row[:13]
    statements = _core.restore_statements(
        schema, name, kind, definition, populated, space, idx, comment, acl, owner
    )
    cursor.execute("DROP VIEW aside_top; DROP MATERIALIZED VIEW aside_over_a")
    for statement in statements:
        cursor.execute(statement)
    cursor.execute(state_sql)
    assert cursor.fetchone() == before
    cursor.execute("SELECT s FROM aside_over_a")
    assert cursor.fetchall() == [(30,)]


def test_comment_statement_keeps_the_users_text_above_the_new_stamp():
    old = "mine\nline two\ndjango-pgviews-c:1 body=aa idx=bb rw=1 def=cc"
    new = "django-pgviews-c:1 body=dd idx=ee rw=2 def=ff"
    assert _core.comment_statement("public", "v", "v", old, new) == (
        "COMMENT ON VIEW public.v IS 'mine\nline two\ndjango-pgviews-c:1 body=dd idx=ee rw=2 def=ff'"
    )
    assert _core.comment_statement("public", "v", "v", None, new) is None
    assert _core.comment_statement("public", "v", "v", new, new) is None


def test_build_check_statement_puts_the_sql_beside_the_view_and_says_where():
    sql = "SELECT 'é' AS ü, id\nFROM t"
    statement, offset = _core.build_check_statement("Schéma", "vüe", sql)
    assert statement.startswith('CREATE VIEW "Schéma".')
    assert _core.derived_name("vüe", "_pgvc_check") in statement
    assert statement[offset:] == sql  # in characters, as the server counts positions
    statement, offset = _core.build_check_statement(None, "v", sql)
    assert statement == "CREATE VIEW v_pgvc_check AS\n" + sql and statement[offset:] == sql


@pytest.mark.parametrize(
    "call",
    [
        lambda: _core.aside_statement("drop", None, "v", "x"),
        lambda: _core.aside_statement("refresh", None, "v", "v"),
        lambda: _core.aside_statement("drop", None, "v\x00", "v"),
        lambda: _core.grant_statements(None, "v", "v", [1], None),
        lambda: _core.grant_statements(None, "v", "v", "r", None),
        lambda: _core.grant_statements(None, "v", "v", ["no equals sign"], None),
        lambda: _core.grant_statements(None, "v", "v", ["a\x00=r/b"], None),
        lambda: _core.restore_statements(None, "v", "m", "SELECT 1", True, None, [None], None, None, None),
        lambda: _core.comment_statement(None, "v", "q", "a", "b"),
        lambda: _core.build_check_statement(None, "v", "SELECT 1\x00"),
        lambda: _core.build_check_statement(None, "v\x00", "SELECT 1"),
    ],
)
def test_bad_arguments_raise_and_never_crash(call):
    with pytest.raises((TypeError, ValueError)):
        call()
