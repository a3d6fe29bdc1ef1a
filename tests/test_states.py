"""The planner's state per view: a code (what pgviews_status shows) next to the reason, and
named action records; nothing in Python maps English reasons back."""

from __future__ import annotations

import pytest
from django.db import connection

from django_pgviews_c import _core
from django_pgviews_c.sync import Syncer
from tests.helpers import ViewSet, execute

pytestmark = pytest.mark.django_db


def _states(vs: ViewSet) -> dict[str, str]:
    models = list(vs.models.values())
    result = Syncer(connection, models, {m._meta.label for m in models}).run(dry_run=True)
    return {label.split(".")[1]: state for label, state in result.states.items()}


@pytest.fixture
def src():
    execute("CREATE TABLE t_src (id int PRIMARY KEY, v int); INSERT INTO t_src VALUES (1, 10)")


def test_each_state_is_a_code_from_the_planner(src):
    vs = ViewSet()
    vs.view("Same", "SELECT id FROM t_src")
    vs.view("Code", "SELECT id FROM t_src")
    vs.view("Hand", "SELECT id FROM t_src")
    vs.view("Mat", "SELECT id FROM t_src", materialized=True, with_data=False)
    vs.view("Idx", "SELECT id FROM t_src", materialized=True)
    assert set(_states(vs).values()) == {"missing"}
    vs.sync()
    assert set(_states(vs).values()) == {"in sync"}
    assert _states(vs)["Mat"] == "in sync"  # with_data = False: empty is as declared
    vs.view("Code", "SELECT id, v FROM t_src")
    execute("CREATE OR REPLACE VIEW t_hand AS SELECT id FROM t_src WHERE id > 0")
    vs.view("Idx", "SELECT id FROM t_src", materialized=True, concurrent_index="id")
    execute("CREATE VIEW t_adopt AS SELECT id FROM t_src; CREATE VIEW t_other AS SELECT 1 AS one")
    vs.view("Adopt", "SELECT id FROM t_src")
    vs.view("Other", "SELECT 2 AS two")
    states = _states(vs)
    assert states == {
        "Same": "in sync",
        "Code": "changed",
        "Hand": "drifted",
        "Mat": "in sync",
        "Idx": "indexes",
        "Adopt": "unstamped",
        "Other": "unmanaged",
    }


def test_a_view_reading_a_changed_one_is_stale(src):
    execute("CREATE SCHEMA s_st")
    vs = ViewSet()
    vs.view("A", "SELECT id, v FROM t_src", db_table="s_st.a")
    vs.view(
        "M",
        "SELECT count(*) AS n FROM s_st.a",
        materialized=True,
        db_table="s_st.m",
        dependencies=("viewtest.A",),
    )
    vs.sync()
    vs.view("A", "SELECT id, v, 1 AS w FROM t_src", db_table="s_st.a")
    assert _states(vs) == {"A": "changed", "M": "stale"}


def test_actions_are_named_records(src):
    vs = ViewSet()
    vs.view("A", "SELECT id FROM t_src")
    r = vs.sync()
    assert r.actions[0].op == "create" and r.actions[0].target == "viewtest.A (public.t_a)"
    assert _core.PlanAction.__match_args__ == (
        "op",
        "decl",
        "sql",
        "lock",
        "target",
        "phase",
        "sql_offset",
        "populates",
    )
    assert _core.DECL_FIELDS[0] == "label" and _core.DECL_FIELDS[-1] == "columns"
