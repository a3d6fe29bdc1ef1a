"""Adoption: an object without our stamp (made by django-pgviews-redux, by hand, restored from
a dump) whose definition equals its declaration is kept as it is: same oid, same data, no
rebuild, no refresh; only the stamp is written."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.helpers import ViewSet, catalog_rows, comment, execute, index_names, leftovers, oid, populated

pytestmark = pytest.mark.django_db


@pytest.fixture
def src():
    execute("CREATE TABLE t_src (id int PRIMARY KEY, v int); INSERT INTO t_src VALUES (1, 10), (2, 20)")


def _redux_materialized_view(table: str, sql: str, concurrent_index: str | None = None) -> None:
    """As django-pgviews-redux 1.3 creates one (create_materialized.py): the SQL as declared,
    WITH DATA, and the unique index named <db_table>_<columns>_index; no comment."""
    execute(f"CREATE MATERIALIZED VIEW {table} AS {sql} WITH DATA;")
    if concurrent_index:
        name = (
            table.replace(".", "_")
            + "_"
            + "_".join(s.strip() for s in concurrent_index.split(","))
            + "_index"
        )
        execute(f"CREATE UNIQUE INDEX {name} ON {table} ({concurrent_index})")


def test_redux_materialized_view_is_adopted_with_its_data(src):
    sql = "SELECT id, v FROM t_src"
    _redux_materialized_view("t_m", sql, concurrent_index="id")
    before = oid("t_m")
    # Rows the old data does not have: a rebuild or a refresh would show them.
    execute("INSERT INTO t_src VALUES (3, 30)")
    vs = ViewSet()
    vs.view("M", sql, materialized=True, with_data=False, concurrent_index="id")
    with CaptureQueriesContext(connection) as ctx:
        r = vs.sync()
    assert [a.op for a in r.actions] == ["stamp"]
    assert r.statuses == {"viewtest.M": "EXISTS"}
    assert r.reasons["viewtest.M"].startswith("adopted")
    assert oid("t_m") == before
    assert populated("t_m")
    assert catalog_rows("SELECT id, v FROM t_m ORDER BY id") == [(1, 10), (2, 20)]
    assert index_names("t_m") == ["t_m_id_index"]
    assert "django-pgviews-c:1 body=" in comment("t_m")
    assert leftovers() == []
    assert not [q for q in ctx.captured_queries if "REFRESH" in q["sql"]]
    assert not catalog_rows("SELECT relname FROM pg_class WHERE relname LIKE '%%pgvc_probe%%'")
    r = vs.sync()
    assert r.actions == [] and r.reasons == {}
    assert oid("t_m") == before


def test_hand_made_view_is_adopted(src):
    execute("CREATE VIEW t_a AS SELECT id, v * 2 AS w FROM t_src")
    before = oid("t_a")
    vs = ViewSet()
    vs.view("A", "SELECT id, v * 2 AS w FROM t_src")
    r = vs.sync()
    assert [a.op for a in r.actions] == ["stamp"]
    assert oid("t_a") == before
    assert vs.sync().actions == []


def test_adopted_materialized_view_gets_its_declared_index_without_a_rebuild(src):
    _redux_materialized_view("t_m", "SELECT id, v FROM t_src")
    before = oid("t_m")
    vs = ViewSet()
    vs.view("M", "SELECT id, v FROM t_src", materialized=True, with_data=False, concurrent_index="id")
    r = vs.sync()
    assert "build" not in {a.op for a in r.actions} and "create" not in {a.op for a in r.actions}
    assert oid("t_m") == before
    assert index_names("t_m") == ["t_m_id_index"]
    assert populated("t_m")
    assert vs.sync().actions == []


def test_differing_definition_is_rebuilt_and_stays_populated(src):
    _redux_materialized_view("t_m", "SELECT id FROM t_src", concurrent_index="id")
    before = oid("t_m")
    vs = ViewSet()
    vs.view("M", "SELECT id, v FROM t_src", materialized=True, with_data=False, concurrent_index="id")
    r = vs.sync()
    assert r.statuses == {"viewtest.M": "UPDATED"}
    assert "differs" in r.reasons["viewtest.M"]
    assert oid("t_m") != before
    assert populated("t_m")
    assert catalog_rows("SELECT id, v FROM t_m ORDER BY id") == [(1, 10), (2, 20)]
    assert leftovers() == []
    assert vs.sync().actions == []


def test_probe_of_invalid_sql_reports_the_sql_error(src):
    """A declaration whose SQL fails is not adopted; the sync then fails naming it."""
    from django_pgviews_c.exceptions import ViewDefinitionError

    execute("CREATE VIEW t_a AS SELECT id FROM t_src")
    vs = ViewSet()
    vs.view("A", "SELECT id, nope FROM t_src")
    with pytest.raises(ViewDefinitionError) as err:
        vs.sync()
    assert "viewtest.A" in str(err.value) and "nope" in str(err.value)
    assert catalog_rows("SELECT count(*) FROM t_a") == [(2,)]
