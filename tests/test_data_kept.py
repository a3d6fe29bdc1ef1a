"""Data stays available: a materialized view that held data before a sync holds data after it,
from its new definition, on every rebuild path, whatever ``with_data`` says. ``with_data =
False`` only means "create it empty when it does not exist"."""

from __future__ import annotations

import pytest

from tests.helpers import ViewSet, catalog_rows, execute, leftovers, oid, populated, relkind

pytestmark = pytest.mark.django_db


@pytest.fixture
def src():
    execute("CREATE TABLE t_src (id int PRIMARY KEY, v int); INSERT INTO t_src VALUES (1, 10), (2, 20)")


def _populate(table: str) -> None:
    execute(f"REFRESH MATERIALIZED VIEW {table}")
    assert populated(table)


def test_changed_materialized_view_built_beside_stays_populated(src):
    vs = ViewSet()
    vs.view("M", "SELECT id, v FROM t_src", materialized=True, with_data=False)
    vs.sync()
    assert not populated("t_m")
    _populate("t_m")
    vs.view("M", "SELECT id, v * 2 AS v FROM t_src", materialized=True, with_data=False)
    r = vs.sync()
    assert {a.op for a in r.actions} >= {"build", "swap"}
    assert populated("t_m")
    assert catalog_rows("SELECT id, v FROM t_m ORDER BY id") == [(1, 20), (2, 40)]
    assert leftovers() == []
    assert vs.sync().actions == []


def test_materialized_view_rebuilt_in_a_chain_stays_populated(src):
    vs = ViewSet()
    vs.view("A", "SELECT id, v FROM t_src")
    vs.view(
        "M",
        "SELECT sum(v)::int AS s FROM t_a",
        materialized=True,
        with_data=False,
        dependencies=("viewtest.A",),
    )
    vs.sync()
    _populate("t_m")
    vs.view("A", "SELECT id, v + 1 AS v FROM t_src")
    r = vs.sync()
    assert "chain_schema" in {a.op for a in r.actions}
    assert populated("t_m")
    assert catalog_rows("SELECT s FROM t_m") == [(32,)]


def test_dependant_recreated_with_force_stays_populated(src):
    """An incompatible change re-creates the view and the materialized view reading it."""
    vs = ViewSet()
    vs.view("A", "SELECT id, v FROM t_src")
    vs.view("M", "SELECT id FROM t_a", materialized=True, with_data=False, dependencies=("viewtest.A",))
    vs.sync()
    _populate("t_m")
    vs.view("A", "SELECT id FROM t_src")  # drops a column: CREATE OR REPLACE refuses
    vs.sync(force=True)
    assert populated("t_m")
    assert catalog_rows("SELECT id FROM t_m ORDER BY id") == [(1,), (2,)]


def test_dependant_recreated_outside_a_chain_stays_populated(src):
    """In a schema of its own (no chain there), a changed view is re-created with --force and
    its dependants are dropped and re-created in place."""
    execute("CREATE SCHEMA s_kept")
    vs = ViewSet()
    vs.view("A", "SELECT id, v FROM t_src", db_table="s_kept.a")
    vs.view(
        "M",
        "SELECT id FROM s_kept.a",
        materialized=True,
        with_data=False,
        db_table="s_kept.m",
        dependencies=("viewtest.A",),
    )
    vs.sync()
    _populate("s_kept.m")
    before = oid("s_kept.m")
    vs.view("A", "SELECT id FROM t_src", db_table="s_kept.a")
    r = vs.sync(force=True)
    assert [a.op for a in r.actions if a.target.startswith("viewtest.M ")][:1] == ["drop"]
    assert oid("s_kept.m") != before
    assert populated("s_kept.m")
    assert catalog_rows("SELECT id FROM s_kept.m ORDER BY id") == [(1,), (2,)]


def test_materialized_dependant_of_a_rebuilt_materialized_view_stays_populated(src):
    execute("CREATE SCHEMA s_kept")
    vs = ViewSet()
    vs.view("M", "SELECT id, v FROM t_src", materialized=True, with_data=False, db_table="s_kept.m")
    vs.view(
        "N",
        "SELECT sum(v)::int AS s FROM s_kept.m",
        materialized=True,
        with_data=False,
        db_table="s_kept.n",
        dependencies=("viewtest.M",),
    )
    vs.sync()
    _populate("s_kept.m")
    _populate("s_kept.n")
    vs.view("M", "SELECT id, v * 10 AS v FROM t_src", materialized=True, with_data=False, db_table="s_kept.m")
    vs.sync()
    assert populated("s_kept.m") and populated("s_kept.n")
    assert catalog_rows("SELECT s FROM s_kept.n") == [(300,)]


def test_view_becoming_a_materialized_view_is_populated(src):
    vs = ViewSet()
    vs.view("A", "SELECT id, v FROM t_src")
    vs.sync()
    vs.view("A", "SELECT id, v FROM t_src", materialized=True, with_data=False)
    vs.sync()
    assert relkind("t_a") == "m"
    assert populated("t_a")
    assert catalog_rows("SELECT count(*) FROM t_a") == [(2,)]


def test_empty_materialized_view_stays_empty_when_rebuilt(src):
    """with_data = False still means something: what was never populated is not populated."""
    vs = ViewSet()
    vs.view("M", "SELECT id, v FROM t_src", materialized=True, with_data=False)
    vs.sync()
    vs.view("M", "SELECT id FROM t_src", materialized=True, with_data=False)
    vs.sync()
    assert not populated("t_m")


def test_no_data_builds_everything_empty_and_refreshes_nothing(src):
    vs = ViewSet()
    vs.view("M", "SELECT id, v FROM t_src", materialized=True)
    r = vs.sync(no_data=True)
    assert "WITH NO DATA" in next(a.sql for a in r.actions if a.op == "create")
    assert "refresh" not in {a.op for a in r.actions}
    assert not populated("t_m")
    vs.sync()  # a real sync populates what is empty and wants data
    assert populated("t_m")
    vs.view("M", "SELECT id, v + 1 AS v FROM t_src", materialized=True)
    r = vs.sync(no_data=True)
    assert all("WITH DATA" not in a.sql for a in r.actions)
    assert not populated("t_m")
