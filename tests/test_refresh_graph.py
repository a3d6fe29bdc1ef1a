"""The refresh graph comes from the core: Graph.project restricts the declared graph to the
materialized views (direct edges only), the loop picks the longest remaining chain first, and
REFRESH text is written by the core."""

from __future__ import annotations

import pytest
from django.db import connection
from hypothesis import given, settings
from hypothesis import strategies as st

from django_pgviews_c import _core
from django_pgviews_c.exceptions import InvalidNameError
from django_pgviews_c.refresh import connection_params
from tests.helpers import catalog_rows, execute


def _reaches_via_non_members(deps, members, start):
    """Brute force: members reachable from start through non-members only."""
    member = set(members)
    seen, stack, out = set(), list(deps[start]), set()
    while stack:
        v = stack.pop()
        if v in seen:
            continue
        seen.add(v)
        if v in member:
            out.add(v)
        else:
            stack.extend(deps[v])
    return out


@st.composite
def dags(draw):
    n = draw(st.integers(1, 14))
    deps = [sorted(set(draw(st.lists(st.integers(0, i - 1), max_size=4)))) if i else [] for i in range(n)]
    members = draw(st.lists(st.integers(0, n - 1), unique=True))
    return deps, members


@given(dags())
@settings(max_examples=150)
def test_project_matches_brute_force(case):
    deps, members = case
    g = _core.Graph([f"n{i}" for i in range(len(deps))], [[f"n{j}" for j in d] for d in deps])
    projected = g.project(members)
    position = {v: k for k, v in enumerate(members)}
    for k, v in enumerate(members):
        assert projected[k] == sorted(position[w] for w in _reaches_via_non_members(deps, members, v))


def test_project_of_a_deep_chain_is_its_direct_edges():
    # A 6,000-deep chain of materialized views, each over a plain view: the projection has one
    # edge per view (the whole closure would be 18 million).
    n = 6000
    names = []
    deps = []
    for i in range(n):
        names += [f"v{i}", f"m{i}"]
        deps += [[f"m{i - 1}"] if i else [], [f"v{i}"]]
    g = _core.Graph(names, deps)
    projected = g.project(list(range(1, 2 * n, 2)))
    assert projected == [[]] + [[k - 1] for k in range(1, n)]


def test_project_refuses_bad_members():
    g = _core.Graph(["a", "b"], [[], ["a"]])
    with pytest.raises(IndexError):
        g.project([2])
    with pytest.raises(ValueError, match="twice"):
        g.project([0, 0])
    with pytest.raises(TypeError, match="members"):
        g.project(["a"])


def test_refresh_sql_quotes_each_part():
    assert _core.refresh_sql("plain") == "REFRESH MATERIALIZED VIEW plain"
    assert _core.refresh_sql("s.Name", True) == 'REFRESH MATERIALIZED VIEW CONCURRENTLY s."Name"'
    assert _core.refresh_sql('"a.b"') == 'REFRESH MATERIALIZED VIEW "a.b"'
    with pytest.raises(InvalidNameError):
        _core.refresh_sql('"unclosed')
    with pytest.raises(InvalidNameError):
        _core.refresh_sql("x\x00y")


@pytest.mark.django_db(transaction=True)
def test_the_longest_remaining_chain_starts_first():
    execute("CREATE TABLE rg_log (n serial, tag text)")
    try:
        stmts = [f"INSERT INTO rg_log (tag) VALUES ('{t}')" for t in ("d", "e", "a", "b", "c")]
        # a <- b <- c is a chain of three; d and e stand alone and come first by index.
        out = _core.run_parallel(connection_params(connection), stmts, [[], [], [], [2], [3]], None, 1)
        assert [s for s, _, _ in out] == ["ok"] * 5
        assert catalog_rows("SELECT tag FROM rg_log ORDER BY n")[0] == ("a",)
    finally:
        execute("DROP TABLE rg_log")


def test_the_module_exposes_no_dead_helpers():
    # _core.execute (connect, run, close) was called by nothing; the loop is the one libpq user.
    assert not hasattr(_core, "execute")
    g = _core.Graph(["a"], [[]])
    import gc

    assert gc.is_tracked(g)


def test_the_schedule_is_the_loops_own():
    # refresh_views(jobs=1) steps the same schedule: what comes next, what a failure stops.
    s = _core.Schedule([[], [0], [1], [], [3]], [-0.0, -1.0, -2.0, -3.0, -4.0])
    assert s.next() == 0
    assert s.next() == 3  # 1 waits for 0
    assert s.done(0, False) == [1, 2]  # 1 and 2 read 0, directly or not
    assert s.done(3, True) == []
    assert s.next() == 4
    assert s.done(4, True) == []
    assert s.next() is None
    with pytest.raises(ValueError, match="not running"):
        s.done(1, True)


def test_the_schedule_refuses_a_cycle():
    from django_pgviews_c.exceptions import CycleError

    with pytest.raises(CycleError):
        _core.Schedule([[1], [0]])
