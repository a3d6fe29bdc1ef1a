"""The catalog query of the staleness check and of a refresh's capture looks every relation up
in pg_class by its oid (an index scan), so its cost does not grow with the number of relations
in the database: planned as a hash join, it read the whole of pg_class at each level of the
closure, 17 million instructions per capture in a database of 8,000 relations where an index
lookup takes 1.3 million (docs/freshness.md, "What a capture costs").

The other catalog queries are held to the same (docs/performance.md, "Catalog queries and the
size of the database"): the sync's catalog query, the exact mode's state and trigger lookups.
Their plans are read in a database crowded with tables (`crowd`), as real projects are, where a
planner that reads a whole catalog does so because the query asks it to."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection

from django_pgviews_c import _core
from tests.helpers import ViewSet, catalog_rows, execute


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def _catalog_scans(
    sql: str, catalogs: tuple[str, ...] = ("pg_class", "pg_rewrite", "pg_depend")
) -> list[str]:
    with connection.cursor() as cur:
        cur.execute(sql)
        while cur.description is None or cur.description[0].name != "QUERY PLAN":
            assert cur.nextset(), "no plan"
        plan = cur.fetchone()[0]
    plan = json.loads(plan) if isinstance(plan, str) else plan
    return [
        f"{node['Node Type']} on {node['Relation Name']}"
        for node in _nodes(plan[0]["Plan"])
        if node.get("Relation Name") in catalogs
        and (node["Node Type"] not in ("Index Scan", "Index Only Scan", "Bitmap Heap Scan") or _unkeyed(node))
    ]


def _unkeyed(node: dict[str, Any]) -> bool:
    """An index scan of pg_depend that is not keyed by an object: by its class alone, it reads
    every dependency of that class in the database (every rule's, say)."""
    if node["Relation Name"] != "pg_depend":
        return False
    cond = node.get("Index Cond") or " ".join(c.get("Index Cond", "") for c in node.get("Plans", []))
    return "objid" not in cond


@pytest.fixture
def chain(transactional_db):
    vs = ViewSet()
    execute("CREATE TABLE cp_a (id int PRIMARY KEY, v int)")
    execute("CREATE TABLE cp_b (id int PRIMARY KEY, v int)")
    vs.view("CpJoin", "SELECT a.id, a.v + b.v AS v FROM cp_a a JOIN cp_b b USING (id)")
    vs.view("CpMat", "SELECT id, v FROM t_cpjoin", materialized=True, dependencies=("viewtest.CpJoin",))
    vs.view("CpTop", "SELECT count(*) AS n FROM t_cpmat", materialized=True, dependencies=("viewtest.CpMat",))
    vs.sync()
    yield ["t_cpmat", "t_cptop"]
    execute("DROP MATERIALIZED VIEW IF EXISTS t_cptop, t_cpmat")
    execute("DROP VIEW IF EXISTS t_cpjoin")
    execute("DROP TABLE IF EXISTS cp_a, cp_b")


@pytest.mark.parametrize("exact", [False, True])
def test_the_closure_query_reads_the_catalog_by_index_only(chain, exact):
    sql = _core.freshness_sql(exact=exact)
    names = "ARRAY[" + ", ".join(f"'{n}'" for n in chain) + "]"
    # As the check sends it (a plan for these names)...
    assert _catalog_scans("EXPLAIN (FORMAT JSON) " + sql.replace("%s", names)) == []
    # ...and as the capture function's static SQL is planned: once, for any view (generic).
    assert _generic_scans(sql, "text[]", names) == []


def _generic_scans(
    sql: str, types: str, args: str, catalogs: tuple[str, ...] = ("pg_class", "pg_rewrite", "pg_depend")
) -> list[str]:
    """The scans of `catalogs` in the generic plan of `sql` (one parameter %s), as a PL/pgSQL
    function with plan_cache_mode = force_generic_plan plans its static SQL."""
    execute("SET plan_cache_mode = force_generic_plan")
    try:
        execute(f"PREPARE pgvc_plan_probe({types}) AS " + sql.replace("%s", "$1"))
        return _catalog_scans(f"EXPLAIN (FORMAT JSON) EXECUTE pgvc_plan_probe({args})", catalogs)
    finally:
        execute("DEALLOCATE ALL")
        execute("RESET plan_cache_mode")


# Catalogs with a row (or several) per table, index or constraint of the database.
_TABLE_SIZED = ("pg_class", "pg_attribute", "pg_depend", "pg_index", "pg_constraint", "pg_trigger", "pg_proc")
_CROWD = 300


@pytest.fixture(scope="module")
def crowd(django_db_setup, django_db_blocker):
    """_CROWD tables with a primary key and a foreign key each (two pg_class rows, one pg_index
    row and two pg_trigger rows apiece), two of them with the exact mode's trigger, and the
    catalogs analyzed as autovacuum would."""
    with django_db_blocker.unblock():
        made = catalog_rows("SELECT to_regprocedure('public.django_pgviews_c_exact_bump()') IS NULL")[0][0]
        if made:
            execute(_core.query_sql("exact_function", schema="public"))
        execute("CREATE TABLE cpx_ref (id int PRIMARY KEY)")
        for i in range(_CROWD):
            execute(f"CREATE TABLE cpx_{i} (id int PRIMARY KEY, ref int REFERENCES cpx_ref (id))")
        for i in (0, 1):
            execute(_core.query_sql("exact_trigger", table=f"cpx_{i}", schema="public"))
        execute(
            "ANALYZE pg_catalog.pg_class, pg_catalog.pg_index, pg_catalog.pg_trigger, pg_catalog.pg_depend"
        )
        yield
        execute("DROP TABLE cpx_ref CASCADE")
        for i in range(_CROWD):
            execute(f"DROP TABLE cpx_{i}")
        if made:
            execute(_core.query_sql("exact_drop_function", schema="public"))
        execute(
            "ANALYZE pg_catalog.pg_class, pg_catalog.pg_index, pg_catalog.pg_trigger, pg_catalog.pg_depend"
        )


@pytest.mark.parametrize("exact", [False, True])
def test_the_closure_query_reads_the_triggers_by_index_among_many_tables(crowd, chain, exact):
    """The exact mode's trigger of each table is looked up by (table, name): joined, the planner
    hashed the whole of pg_trigger, two rows per foreign key of the database."""
    sql = _core.freshness_sql(exact=exact)
    names = "ARRAY[" + ", ".join(f"'{n}'" for n in chain) + "]"
    assert _catalog_scans("EXPLAIN (FORMAT JSON) " + sql.replace("%s", names), _TABLE_SIZED) == []
    assert _generic_scans(sql, "text[]", names, _TABLE_SIZED) == []


def test_the_exact_state_reads_the_catalog_by_index_among_many_tables(crowd, chain):
    """The sync's exact-mode query: the tables the views read, and those carrying our trigger,
    found from our function through pg_depend (pg_trigger has no index on a name alone)."""
    sql = _core.query_sql("exact_state")
    names = "ARRAY[" + ", ".join(f"'{n}'" for n in chain) + "]"
    assert _catalog_scans("EXPLAIN (FORMAT JSON) " + sql.replace("%s", names), _TABLE_SIZED) == []


@pytest.mark.parametrize("restore", [False, True])
def test_the_sync_catalog_query_reads_indexes_and_triggers_by_index_among_many_tables(crowd, chain, restore):
    """The sync's one catalog query reads every view of the schemas that matter (pg_class and
    pg_rewrite whole: no index finds relations by kind), but the indexes of the relations it
    returns by their oid and our triggers from our function: grouped or filtered by name, it read
    every index and every trigger of the database."""
    sql = _core.catalog_sql()
    for name, value in (
        ("decl_schemas", "ARRAY[NULL, NULL]::text[]"),
        ("decl_names", "ARRAY['t_cpmat', 't_cptop']"),
        ("schemas", "ARRAY[]::text[]"),
        ("restore", "true" if restore else "false"),
    ):
        sql = sql.replace(f"%({name})s", value)
    sizeable = tuple(c for c in _TABLE_SIZED if c != "pg_class")
    assert _catalog_scans("EXPLAIN (FORMAT JSON) " + sql.replace("%%", "%"), sizeable) == []


def test_the_chain_check_reads_pg_depend_by_referenced_object_among_many_tables(crowd, transactional_db):
    """The check that no new version of a chain reads an old object (ddl_chain.c) looks the old
    objects' dependants up in pg_depend by (refclassid, refobjid): oids are unique per catalog
    only, so a reference to a row of another catalog with an old view's oid is not one to it, and
    without its class the lookup cannot use pg_depend's index on referenced objects."""
    vs = ViewSet()
    execute("CREATE TABLE cq_src (id int PRIMARY KEY, v int)")
    try:
        vs.view("CqA", "SELECT id, v FROM cq_src")
        vs.view("CqM", "SELECT id, v FROM t_cqa", materialized=True, dependencies=("viewtest.CqA",))
        vs.sync()
        vs.view("CqA", "SELECT id, v * 10 AS v FROM cq_src")
        check = [a.sql for a in vs.sync().actions if a.op == "chain_check"]
        assert len(check) == 1
        query = re.search(r"IF EXISTS \((SELECT .*\))\) THEN", check[0], re.S)
        assert query is not None, check[0]
        assert "d.refclassid = 'pg_catalog.pg_class'::regclass" in query[1]
        execute("CREATE SCHEMA _pgviews_c_build")
        try:
            assert _catalog_scans("EXPLAIN (FORMAT JSON) " + query[1], _TABLE_SIZED) == []
        finally:
            execute("DROP SCHEMA _pgviews_c_build")
    finally:
        execute("DROP MATERIALIZED VIEW IF EXISTS t_cqm")
        execute("DROP VIEW IF EXISTS t_cqa")
        execute("DROP TABLE cq_src")
