"""Cold creation when a view reads another managed view it does not declare: the sync orders
it after that view and goes on, in its one transaction; the W005 check keeps naming both."""

from __future__ import annotations

import pytest
from django.db import connection

from django_pgviews_c.checks import check_views_on
from django_pgviews_c.exceptions import CycleError, ViewDefinitionError
from django_pgviews_c.sync import Syncer
from tests.helpers import ViewSet, catalog_rows, comment, execute, index_names, relkind, snapshot

pytestmark = pytest.mark.django_db


@pytest.fixture
def src():
    execute("CREATE TABLE t_src (id int PRIMARY KEY, v int); INSERT INTO t_src VALUES (1, 10), (2, 20)")


def _w005(vs: ViewSet) -> list[str]:
    chosen = list(vs.models.values())
    return [m.msg for m in check_views_on("default", chosen, chosen) if m.id == "django_pgviews_c.W005"]


def test_two_views_in_the_wrong_order_are_created(src):
    vs = ViewSet()
    # Declared first, reads Base, declares nothing; Top declares Reader.
    vs.view("Reader", "SELECT id, v * 2 AS w FROM t_base")
    vs.view("Top", "SELECT id, w FROM t_reader", dependencies=("viewtest.Reader",))
    vs.view("Base", "SELECT id, v FROM t_src")
    said: list[str] = []
    r = vs.sync(progress=said.append)
    assert set(r.statuses.values()) == {"CREATED"}
    assert (relkind("t_base"), relkind("t_reader"), relkind("t_top")) == ("v", "v", "v")
    assert catalog_rows("SELECT id, w FROM t_top ORDER BY id") == [(1, 20), (2, 40)]
    assert "  viewtest.Reader reads viewtest.Base without declaring it: creating it after that one" in said
    # Stamped like any other view: the next sync has nothing to do.
    assert comment("t_reader").startswith("django-pgviews-c:")
    assert vs.sync().actions == []
    [message] = _w005(vs)
    assert message.startswith("viewtest.Reader reads viewtest.Base (t_base) without declaring it")


def test_materialized_view_over_an_undeclared_view(src):
    vs = ViewSet()
    vs.view(
        "Totals",
        "SELECT count(*)::int AS n, sum(v)::int AS s FROM public.t_base",
        materialized=True,
        concurrent_index="n",
    )
    vs.view("Base", "SELECT id, v FROM t_src")
    r = vs.sync()
    assert set(r.statuses.values()) == {"CREATED"}
    assert relkind("t_totals") == "m"
    assert catalog_rows("SELECT n, s FROM t_totals") == [(2, 30)]
    assert index_names("t_totals") == ["t_totals_n_index"]
    assert vs.sync().actions == []
    [message] = _w005(vs)
    assert message.startswith("viewtest.Totals reads viewtest.Base (t_base) without declaring it")


def test_a_missing_relation_that_is_not_ours_still_fails(src):
    vs = ViewSet()
    vs.view("Reader", "SELECT id FROM t_base")
    vs.view("Lost", "SELECT id FROM t_nowhere")
    vs.view("Base", "SELECT id, v FROM t_src")
    before = snapshot()
    with pytest.raises(ViewDefinitionError) as info:
        vs.sync()
    assert "viewtest.Lost" in info.value.view and "t_lost" in info.value.view
    assert info.value.sqlstate == "42P01"
    assert "t_nowhere" in info.value.message
    assert snapshot() == before


def test_an_undeclared_read_that_would_make_a_cycle_fails(src):
    vs = ViewSet()
    # Base declares Reader, Reader reads Base without declaring it: no order creates both.
    vs.view("Reader", "SELECT id FROM t_base")
    vs.view("Base", "SELECT s.id FROM t_src s", dependencies=("viewtest.Reader",))
    before = snapshot()
    with pytest.raises(ViewDefinitionError) as info:
        vs.sync()
    assert "viewtest.Reader" in info.value.view
    assert info.value.sqlstate == "42P01"
    assert snapshot() == before


def test_a_declared_cycle_is_still_refused_first(src):
    vs = ViewSet()
    vs.view("A", "SELECT 1 AS id", dependencies=("viewtest.B",))
    vs.view("B", "SELECT 1 AS id", dependencies=("viewtest.A",))
    with pytest.raises(CycleError):
        vs.sync()


def test_a_chain_of_undeclared_reads_across_schemas(src):
    execute("CREATE SCHEMA pgvc_cold")
    vs = ViewSet()
    # Declared in the reverse of the order they can be created, nothing declared; two views
    # named t_base, one in a schema off the search path.
    vs.view("Top", "SELECT id, w FROM t_mid")
    vs.view("Mid", "SELECT id, v * 10 AS w FROM pgvc_cold.t_base")
    vs.view("Plain", "SELECT count(*)::int AS n FROM t_base")
    vs.view("Other", "SELECT id, v + 1 AS v FROM t_src", db_table="pgvc_cold.t_base")
    vs.view("Base", "SELECT id, v FROM t_src WHERE id = 1")
    r = vs.sync()
    assert set(r.statuses.values()) == {"CREATED"}
    assert catalog_rows("SELECT id, w FROM t_top ORDER BY id") == [(1, 110), (2, 210)]
    assert catalog_rows("SELECT n FROM t_plain") == [(1,)]
    assert vs.sync().actions == []
    messages = sorted(_w005(vs))
    assert [m.split(" without")[0] for m in messages] == [
        "viewtest.Mid reads viewtest.Other (pgvc_cold.t_base)",
        "viewtest.Plain reads viewtest.Base (t_base)",
        "viewtest.Top reads viewtest.Mid (t_mid)",
    ]


def test_the_plan_rehearsal_orders_them_too(src):
    vs = ViewSet()
    vs.view("Reader", "SELECT id FROM t_base")
    vs.view("Base", "SELECT id, v FROM t_src")
    before = snapshot()
    chosen = list(vs.models.values())
    r = Syncer(connection, chosen, {m._meta.label for m in chosen}).run(rehearse=True)
    assert r.error is None
    assert [(a.op, a.target) for a in r.actions if a.decl >= 0] == [
        ("create", "viewtest.Base (public.t_base)"),
        ("create", "viewtest.Reader (public.t_reader)"),
    ]
    assert snapshot() == before
