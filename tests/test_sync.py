"""What a sync does to the database, seen from the catalog and from the views' data."""

from __future__ import annotations

import pytest
from django.db import connection, models
from django.test.utils import CaptureQueriesContext

from django_pgviews_c import _core
from django_pgviews_c.exceptions import (
    CycleError,
    ForceRequiredError,
    MissingDependencyError,
    ViewDefinitionError,
)
from tests.helpers import (
    ViewSet,
    catalog_rows,
    comment,
    execute,
    index_names,
    leftovers,
    oid,
    populated,
    relkind,
    snapshot,
    viewdef,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def src():
    execute("CREATE TABLE t_src (id int PRIMARY KEY, v int); INSERT INTO t_src VALUES (1, 10), (2, 20)")
    return "t_src"


def _chain(vs: ViewSet) -> None:
    """A -> B (view) -> M (materialized), M also through nothing else."""
    vs.view("A", "SELECT id, v FROM t_src")
    vs.view("B", "SELECT id, v FROM t_a", dependencies=("viewtest.A",))
    vs.view(
        "M",
        "SELECT sum(v)::int AS s, count(*)::int AS n FROM t_b",
        materialized=True,
        dependencies=("viewtest.B",),
    )


def test_create_and_warm_sync_is_one_catalog_query(src):
    vs = ViewSet()
    _chain(vs)
    r = vs.sync()
    assert r.statuses == {"viewtest.A": "CREATED", "viewtest.B": "CREATED", "viewtest.M": "CREATED"}
    assert (relkind("t_a"), relkind("t_b"), relkind("t_m")) == ("v", "v", "m")
    assert catalog_rows("SELECT s, n FROM t_m") == [(30, 2)]
    with CaptureQueriesContext(connection) as ctx:
        r = vs.sync()
    assert len(ctx.captured_queries) == 1
    assert r.actions == [] and r.catalog_queries == 1
    assert set(r.statuses.values()) == {"EXISTS"}


def test_compatible_change_replaces_in_place(src):
    vs = ViewSet()
    vs.view("A", "SELECT id, v FROM t_src")
    vs.view("B", "SELECT id FROM t_a", dependencies=("viewtest.A",))
    vs.sync()
    before = (oid("t_a"), oid("t_b"))
    vs.view("A", "SELECT id, v, v * 2 AS w FROM t_src")
    r = vs.sync()
    assert r.statuses["viewtest.A"] == "UPDATED"
    assert [a.op for a in r.actions if a.decl == 0] == ["replace"]
    assert (oid("t_a"), oid("t_b")) == before
    assert catalog_rows("SELECT id, v, w FROM t_a ORDER BY id") == [(1, 10, 20), (2, 20, 40)]
    assert vs.sync().actions == []


def test_change_repopulates_every_materialized_view_reading_it(src):
    vs = ViewSet()
    _chain(vs)
    vs.view("N", "SELECT s * 2 AS s2 FROM t_m", materialized=True, dependencies=("viewtest.M",))
    vs.view("D", "SELECT count(*)::int AS c FROM t_a", materialized=True, dependencies=("viewtest.A",))
    vs.sync()
    execute("INSERT INTO t_src VALUES (3, 30)")
    assert catalog_rows("SELECT s, n FROM t_m") == [(30, 2)]  # not refreshed by itself
    # Change the intermediate view only: everything materialized above it is re-populated.
    vs.view("B", "SELECT id, v, v + 1 AS w FROM t_a", dependencies=("viewtest.A",))
    r = vs.sync()
    assert r.statuses["viewtest.B"] == "UPDATED"
    assert catalog_rows("SELECT s, n FROM t_m") == [(60, 3)]
    assert catalog_rows("SELECT s2 FROM t_n") == [(120,)]
    assert catalog_rows("SELECT c FROM t_d") == [(2,)]  # reads A, which did not change
    assert leftovers() == []
    assert vs.sync().actions == []


def test_incompatible_change_requires_force_and_changes_nothing(src):
    vs = ViewSet()
    vs.view("A", "SELECT id, v FROM t_src")
    vs.view("B", "SELECT id FROM t_a", dependencies=("viewtest.A",))
    vs.view("M", "SELECT count(*)::int AS n FROM t_b", materialized=True, dependencies=("viewtest.B",))
    vs.sync()
    before = snapshot()
    vs.view("A", "SELECT id FROM t_src")  # drops column v
    with pytest.raises(ForceRequiredError) as info:
        vs.sync()
    err = info.value
    assert err.details["view"] == "viewtest.A"
    assert "viewtest.A" in str(err) and "--force" in str(err)
    assert any("t_a" in d for d in err.details["drops"]) and any("t_b" in d for d in err.details["drops"])
    assert snapshot() == before
    # Renaming a column is refused the same way.
    vs.view("A", "SELECT id, v AS value FROM t_src")
    with pytest.raises(ForceRequiredError, match="viewtest.A"):
        vs.sync()
    assert snapshot() == before


def test_force_recreates_the_view_and_its_dependants(src):
    vs = ViewSet()
    vs.view("A", "SELECT id, v FROM t_src")
    vs.view("B", "SELECT id FROM t_a", dependencies=("viewtest.A",))
    vs.view("M", "SELECT count(*)::int AS n FROM t_b", materialized=True, dependencies=("viewtest.B",))
    vs.sync()
    execute("INSERT INTO t_src VALUES (3, 30)")
    vs.view("A", "SELECT id FROM t_src")
    r = vs.sync(force=True)
    assert r.statuses["viewtest.A"] == "FORCED"
    assert r.statuses["viewtest.B"] in ("UPDATED", "FORCED")
    assert catalog_rows("SELECT count(*) FROM information_schema.columns WHERE table_name = 't_a'") == [(1,)]
    assert catalog_rows("SELECT n FROM t_m") == [(3,)]
    assert populated("t_m")
    assert leftovers() == []
    assert vs.sync().actions == []


def test_changed_materialized_view_is_rebuilt_with_its_indexes(src):
    vs = ViewSet()
    idx = [models.Index(fields=["v"], name="t_mx_v_idx")]
    vs.view(
        "MX",
        "SELECT id, v FROM t_src",
        materialized=True,
        concurrent_index="id",
        indexes=idx,
        v=models.IntegerField(),
    )
    vs.sync()
    assert index_names("t_mx") == ["t_mx_id_index", "t_mx_v_idx"]
    vs.view(
        "MX",
        "SELECT id, v * 100 AS v FROM t_src",
        materialized=True,
        concurrent_index="id",
        indexes=idx,
        v=models.IntegerField(),
    )
    r = vs.sync()
    assert r.statuses["viewtest.MX"] == "UPDATED"
    assert catalog_rows("SELECT id, v FROM t_mx ORDER BY id") == [(1, 1000), (2, 2000)]
    assert index_names("t_mx") == ["t_mx_id_index", "t_mx_v_idx"]
    assert leftovers() == []
    assert vs.sync().actions == []


def test_changed_indexes_only_reindex(src):
    vs = ViewSet()
    vs.view(
        "MX",
        "SELECT id, v FROM t_src",
        materialized=True,
        concurrent_index="id",
        indexes=[models.Index(fields=["v"], name="t_mx_v_idx")],
        v=models.IntegerField(),
    )
    vs.sync()
    before = oid("t_mx")
    execute("INSERT INTO t_src VALUES (3, 30)")
    vs.view(
        "MX",
        "SELECT id, v FROM t_src",
        materialized=True,
        concurrent_index="id",
        indexes=[models.Index(fields=["v", "id"], name="t_mx_vid_idx")],
        v=models.IntegerField(),
    )
    r = vs.sync()
    assert r.statuses["viewtest.MX"] == "EXISTS" or r.reasons["viewtest.MX"] == "indexes changed"
    assert {a.op for a in r.actions} <= {"drop_index", "index", "stamp"}
    assert oid("t_mx") == before
    assert index_names("t_mx") == ["t_mx_id_index", "t_mx_vid_idx"]
    assert catalog_rows("SELECT count(*) FROM t_mx") == [(2,)]  # data untouched
    assert vs.sync().actions == []


def test_unpopulated_materialized_view_is_populated(src):
    vs = ViewSet()
    vs.view("M", "SELECT count(*)::int AS n FROM t_src", materialized=True)
    vs.view("E", "SELECT count(*)::int AS n FROM t_src", materialized=True, with_data=False)
    vs.sync()
    assert populated("t_m") and not populated("t_e")
    execute("REFRESH MATERIALIZED VIEW t_m WITH NO DATA")
    r = vs.sync()
    assert [(a.op, a.decl) for a in r.actions if a.op == "refresh"] == [("refresh", 0)]
    assert populated("t_m") and catalog_rows("SELECT n FROM t_m") == [(2,)]
    assert not populated("t_e")  # with_data=False stays empty
    assert vs.sync().actions == []


def test_invalid_sql_names_the_view_and_changes_nothing(src):
    vs = ViewSet()
    vs.view("A", "SELECT id, v FROM t_src")
    vs.view("B", "SELECT id FROM t_a", dependencies=("viewtest.A",))
    vs.view("M", "SELECT count(*)::int AS n FROM t_a", materialized=True, dependencies=("viewtest.A",))
    vs.sync()
    before = snapshot()
    old_b = viewdef("t_b")
    vs.view("B", "SELECT id, 1 AS one FROM t_a", dependencies=("viewtest.A",))
    bad_sql = "SELECT id,\n       nope_column\nFROM t_a"
    vs.view("C", bad_sql, dependencies=("viewtest.A",))
    with pytest.raises(ViewDefinitionError) as info:
        vs.sync()
    err = info.value
    assert "viewtest.C" in err.view and "t_c" in err.view
    assert err.sqlstate == "42703"
    assert err.position == bad_sql.index("nope_column") + 1
    assert "nope_column" in err.message
    assert "line 2, column 8" in str(err)
    assert viewdef("t_b") == old_b
    assert relkind("t_c") is None
    assert snapshot() == before


def test_invalid_materialized_view_sql_position_counts_characters(src):
    vs = ViewSet()
    vs.view("A", "SELECT id, v FROM t_src")
    vs.sync()
    before = snapshot()
    bad_sql = "SELECT 'éé' AS x, missing FROM t_a"
    vs.view("M", bad_sql, materialized=True, dependencies=("viewtest.A",))
    with pytest.raises(ViewDefinitionError) as info:
        vs.sync()
    assert "viewtest.M" in info.value.view
    assert info.value.position == bad_sql.index("missing") + 1
    assert snapshot() == before


def test_cycle_is_reported_before_any_ddl(src):
    vs = ViewSet()
    vs.view("A", "SELECT 1 AS id", dependencies=("viewtest.C",))
    vs.view("B", "SELECT 1 AS id", dependencies=("viewtest.A",))
    vs.view("C", "SELECT 1 AS id", dependencies=("viewtest.B",))
    vs.view("D", "SELECT 1 AS id")
    with CaptureQueriesContext(connection) as ctx, pytest.raises(CycleError) as info:
        vs.sync()
    assert ctx.captured_queries == []  # found before anything reaches the server
    path = info.value.path
    assert path[0] == path[-1] and sorted(path[:-1]) == ["viewtest.A", "viewtest.B", "viewtest.C"]
    deps = {"viewtest.A": "viewtest.C", "viewtest.B": "viewtest.A", "viewtest.C": "viewtest.B"}
    for x, y in zip(path, path[1:], strict=False):
        assert deps[x] == y
    assert relkind("t_d") is None


def test_missing_dependency_is_reported_before_any_ddl(src):
    vs = ViewSet()
    vs.view("A", "SELECT 1 AS id")
    vs.view("B", "SELECT 1 AS id", dependencies=("viewtest.Ghost",))
    with CaptureQueriesContext(connection) as ctx, pytest.raises(MissingDependencyError) as info:
        vs.sync()
    assert ctx.captured_queries == []  # found before anything reaches the server
    assert info.value.view == "viewtest.B" and info.value.dependency == "viewtest.Ghost"
    assert relkind("t_a") is None


MB63 = "ü" * 31 + "x"  # 63 bytes
MB63_M = "ä" * 30 + "mat"  # 63 bytes


@pytest.mark.parametrize(
    "view_table, mat_table",
    [
        ("Mixed Case", "Mixed Mat"),
        ('"with""quote"', '"mat""quote"'),
        ("select", "table"),
        ("pgvc_s1.Some View", "pgvc_s1.some mat"),
        (MB63, MB63_M),
        (f"pgvc_s2.{MB63}", f"pgvc_s2.{MB63_M}"),
    ],
)
def test_names_that_need_quoting(src, view_table, mat_table):
    vs = ViewSet()
    vschema, vname = _core.split_table(view_table)
    mschema, mname = _core.split_table(mat_table)
    vq, mq = _core.qualified_name(vschema, vname), _core.qualified_name(mschema, mname)
    for schema in {vschema, mschema} - {None}:  # a sync does not create schemas (by default)
        execute(f"CREATE SCHEMA {_core.quote_ident(schema)}")
    vs.view("A", "SELECT id, v FROM t_src", db_table=view_table)
    idx = [models.Index(fields=["v"], name='Pgvc Q"v" idx')]  # needs quoting too
    vs.view(
        "M",
        f"SELECT id, v FROM {vq}",
        materialized=True,
        db_table=mat_table,
        concurrent_index="id",
        dependencies=("viewtest.A",),
        indexes=idx,
        v=models.IntegerField(),
    )
    vs.sync()
    assert catalog_rows(
        "SELECT c.relname::text, n.nspname::text, c.relkind::text FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relname IN (%s, %s) ORDER BY c.relkind DESC",
        [vname, mname],
    ) == [(vname, vschema or "public", "v"), (mname, mschema or "public", "m")]
    assert catalog_rows(f"SELECT count(*) FROM {vq}") == [(2,)]
    names = index_names(mq)
    assert len(names) == 2 and 'Pgvc Q"v" idx' in names
    assert all(len(n.encode()) <= 63 for n in names)
    execute("INSERT INTO t_src VALUES (3, 30)")
    vs.models["M"].refresh(concurrently=True)
    assert catalog_rows(f"SELECT count(*) FROM {mq}") == [(3,)]
    # A changed definition rebuilds it beside the old one under the same name.
    vs.view(
        "M",
        f"SELECT id, v + 1 AS v FROM {vq}",
        materialized=True,
        db_table=mat_table,
        concurrent_index="id",
        dependencies=("viewtest.A",),
        indexes=idx,
        v=models.IntegerField(),
    )
    r = vs.sync()
    assert r.statuses["viewtest.M"] == "UPDATED"
    assert catalog_rows(f"SELECT sum(v) FROM {mq}") == [(63,)]
    assert index_names(mq) == names
    assert leftovers() == []
    # Only Meta.indexes change: reindex.
    idx2 = [models.Index(fields=["id", "v"], name="Order")]
    vs.view(
        "M",
        f"SELECT id, v + 1 AS v FROM {vq}",
        materialized=True,
        db_table=mat_table,
        concurrent_index="id",
        dependencies=("viewtest.A",),
        indexes=idx2,
        v=models.IntegerField(),
    )
    r = vs.sync()
    assert {a.op for a in r.actions} <= {"drop_index", "index", "stamp"}
    assert "Order" in index_names(mq) and 'Pgvc Q"v" idx' not in index_names(mq)
    vs.models["M"].refresh(concurrently=True)
    assert vs.sync().actions == []


def test_undeclared_real_dependency_is_ordered_by_the_catalog(src):
    vs = ViewSet()
    vs.view("A", "SELECT id, v FROM t_src")
    vs.sync()
    # B reads A without saying so, and comes first.
    vs.view("B", "SELECT id, v FROM t_a")
    vs.view("M", "SELECT sum(v)::int AS s FROM t_b", materialized=True, dependencies=("viewtest.B",))
    r = vs.sync(["B", "M", "A"])
    assert r.statuses["viewtest.B"] == "CREATED"
    execute("INSERT INTO t_src VALUES (3, 30)")
    # Re-creating A takes B down and back up after A; M is re-populated.
    vs.view("A", "SELECT id, v::bigint AS v FROM t_src")  # retyped column: incompatible
    with pytest.raises(ForceRequiredError):
        vs.sync(["B", "M", "A"])
    r = vs.sync(["B", "M", "A"], force=True)
    assert r.statuses["viewtest.A"] == "FORCED"
    assert catalog_rows("SELECT sum(v) FROM t_b") == [(60,)]
    assert catalog_rows("SELECT s FROM t_m") == [(60,)]
    assert vs.sync(["B", "M", "A"]).actions == []


def test_a_change_made_by_hand_is_undone(src):
    vs = ViewSet()
    vs.view("A", "SELECT id, v FROM t_src")
    vs.view("M", "SELECT sum(v)::int AS s FROM t_a", materialized=True, dependencies=("viewtest.A",))
    vs.sync()
    declared = viewdef("t_a")
    execute("CREATE OR REPLACE VIEW t_a AS SELECT id, v + 1000 AS v FROM t_src")
    r = vs.sync()
    assert r.statuses["viewtest.A"] == "UPDATED"
    assert "database" in r.reasons["viewtest.A"]
    assert viewdef("t_a") == declared
    assert catalog_rows("SELECT sum(v) FROM t_a") == [(30,)]
    assert catalog_rows("SELECT s FROM t_m") == [(30,)]
    assert vs.sync().actions == []


def test_a_users_own_comment_survives_a_rebuild(src):
    vs = ViewSet()
    vs.view("A", "SELECT id, v FROM t_src")
    vs.view("M", "SELECT sum(v)::int AS s FROM t_a", materialized=True, dependencies=("viewtest.A",))
    vs.sync()
    execute("COMMENT ON MATERIALIZED VIEW t_m IS 'owned by reporting; ask Ann'")
    execute("COMMENT ON VIEW t_a IS 'the source of t_m'")
    vs.sync()  # adopts them again, keeping the text
    vs.view("M", "SELECT sum(v)::int * 2 AS s FROM t_a", materialized=True, dependencies=("viewtest.A",))
    vs.view("A", "SELECT id, v, 0 AS z FROM t_src")
    r = vs.sync()
    assert r.statuses == {"viewtest.A": "UPDATED", "viewtest.M": "UPDATED"}
    assert catalog_rows("SELECT s FROM t_m") == [(60,)]
    assert comment("t_m").split("\n")[0] == "owned by reporting; ask Ann"
    assert comment("t_a").split("\n")[0] == "the source of t_m"
    assert vs.sync().actions == []
    # The comment is not repeated by further rebuilds.
    vs.view("M", "SELECT sum(v)::int * 3 AS s FROM t_a", materialized=True, dependencies=("viewtest.A",))
    vs.sync()
    assert comment("t_m").count("owned by reporting") == 1


def test_a_users_comment_that_mentions_the_marker_is_kept_whole(src):
    vs = ViewSet()
    vs.view("A", "SELECT id, v FROM t_src")
    vs.sync()
    text = "built by django-pgviews-c:1 docs say so; do not drop"
    execute(f"COMMENT ON VIEW t_a IS '{text}'")
    vs.sync()
    assert comment("t_a").split("\n")[0] == text
    assert vs.sync().actions == []
    vs.view("A", "SELECT id, v, 1 AS one FROM t_src")
    vs.sync()
    assert comment("t_a").split("\n")[0] == text
    assert comment("t_a").count("django-pgviews-c:1") == 2  # the user's words and our stamp


def test_view_sql_params_reach_the_server_as_literals(src):
    from django_pgviews_c.view import ViewSQL

    values = ["it's", "back\\slash", "$$dollar$$", "$tag$", "mix '\\' $$ \"q\""]

    vs = ViewSet()
    query = "SELECT " + ", ".join(f"%s::text AS c{i}" for i in range(len(values)))
    vs.view("P", "", get_sql=classmethod(lambda cls: ViewSQL(query, list(values))))
    vs.view("PM", "", materialized=True, get_sql=classmethod(lambda cls: ViewSQL(query, list(values))))
    vs.sync()
    assert list(catalog_rows("SELECT * FROM t_p")[0]) == values
    assert list(catalog_rows("SELECT * FROM t_pm")[0]) == values
    assert vs.sync().actions == []
