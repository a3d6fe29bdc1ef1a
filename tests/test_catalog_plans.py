"""The catalog query of the staleness check and of a refresh's capture looks every relation up
in pg_class by its oid (an index scan), so its cost does not grow with the number of relations
in the database: planned as a hash join, it read the whole of pg_class at each level of the
closure, 17 million instructions per capture in a database of 8,000 relations where an index
lookup takes 1.3 million (docs/freshness.md, "What a capture costs")."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection

from django_pgviews_c import _core
from tests.helpers import ViewSet, execute


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def _catalog_scans(sql: str) -> list[str]:
    with connection.cursor() as cur:
        cur.execute(sql)
        while cur.description is None or cur.description[0].name != "QUERY PLAN":
            assert cur.nextset(), "no plan"
        plan = cur.fetchone()[0]
    plan = json.loads(plan) if isinstance(plan, str) else plan
    return [
        node["Node Type"]
        for node in _nodes(plan[0]["Plan"])
        if node.get("Relation Name") in ("pg_class", "pg_rewrite", "pg_depend")
        and node["Node Type"] not in ("Index Scan", "Index Only Scan")
    ]


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
    execute("SET plan_cache_mode = force_generic_plan")
    try:
        execute("PREPARE pgvc_plan_probe(text[]) AS " + sql.replace("%s", "$1"))
        assert _catalog_scans(f"EXPLAIN (FORMAT JSON) EXECUTE pgvc_plan_probe({names})") == []
    finally:
        execute("DEALLOCATE ALL")
        execute("RESET plan_cache_mode")
