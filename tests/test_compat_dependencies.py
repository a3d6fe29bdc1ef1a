"""django-pgviews-redux 1.3 parity: get_views_dependants / get_views_dependencies /
reorder_by_dependencies and refresh_specific_views, on the test project's views and on deep
graphs (where redux gave up with ValueError('Endless loop!'))."""

from __future__ import annotations

import random

import pytest

from django_pgviews_c import sync as sync_module
from django_pgviews_c.dependencies import (
    get_views_dependants,
    get_views_dependencies,
    reorder_by_dependencies,
)
from django_pgviews_c.exceptions import ConcurrentIndexNotDefinedError, CycleError, DependencyError
from django_pgviews_c.refresh import refresh_specific_views
from tests.helpers import ViewSet, catalog_rows, execute, populated
from tests.schemadbtest.models import SchemaMonthlyObservationMaterializedView
from tests.viewtest import models
from tests.viewtest.models import (
    DependantMaterializedView,
    DependantView,
    MaterializedRelatedView,
    MaterializedRelatedViewWithIndex,
    RelatedView,
)


@pytest.mark.parametrize(
    ("views", "expected"),
    [
        pytest.param([], [], id="empty"),
        pytest.param([SchemaMonthlyObservationMaterializedView], [], id="no_dependants"),
        pytest.param([MaterializedRelatedView], [DependantMaterializedView], id="mat_view"),
        pytest.param([RelatedView], [DependantView], id="view"),
        pytest.param(
            [RelatedView, MaterializedRelatedView], [DependantView, DependantMaterializedView], id="both"
        ),
    ],
)
def test_get_views_dependants(views, expected):
    assert sorted(get_views_dependants(views), key=str) == sorted(expected, key=str)


@pytest.mark.parametrize(
    ("views", "expected"),
    [
        pytest.param([], [], id="empty"),
        pytest.param([SchemaMonthlyObservationMaterializedView], [], id="no_dependencies"),
        pytest.param([DependantMaterializedView], [MaterializedRelatedView], id="mat_view"),
        pytest.param([DependantView], [RelatedView], id="view"),
    ],
)
def test_get_views_dependencies(views, expected):
    assert get_views_dependencies(views) == expected


@pytest.mark.parametrize(
    ("views", "expected"),
    [
        pytest.param([], [], id="empty"),
        pytest.param(
            [SchemaMonthlyObservationMaterializedView],
            [SchemaMonthlyObservationMaterializedView],
            id="single",
        ),
        pytest.param([DependantMaterializedView], [DependantMaterializedView], id="mat_view_single"),
        pytest.param([DependantView], [DependantView], id="view_single"),
        pytest.param(
            [MaterializedRelatedView, DependantMaterializedView],
            [MaterializedRelatedView, DependantMaterializedView],
            id="mat_view_correct_order",
        ),
        pytest.param(
            [DependantMaterializedView, MaterializedRelatedView],
            [MaterializedRelatedView, DependantMaterializedView],
            id="mat_view_wrong_order",
        ),
        pytest.param([RelatedView, DependantView], [RelatedView, DependantView], id="view_correct_order"),
        pytest.param([DependantView, RelatedView], [RelatedView, DependantView], id="view_wrong_order"),
    ],
)
def test_reorder_by_dependencies(views, expected):
    assert reorder_by_dependencies(views) == expected


# -- deep graphs ------------------------------------------------------------------------------------


DEPTH = 20


def declare_chain(vs: ViewSet, depth: int, *, materialized: bool = True, prefix: str = "Deep"):
    """L0 <- L1 <- ... <- L(depth-1), declared from the top down (each before what it reads).
    Every level is a materialized view (when asked) reading the one below."""
    names = [f"{prefix}{i}" for i in range(depth)]
    for i in reversed(range(depth)):
        sql = (
            "SELECT g AS id FROM generate_series(1, 3) g"
            if i == 0
            else (f"SELECT id FROM t_{names[i - 1].lower()}")
        )
        deps = () if i == 0 else (f"viewtest.{names[i - 1]}",)
        vs.view(names[i], sql, materialized=materialized, dependencies=deps)
    return [vs.models[n] for n in names]


def test_reorder_deep_chain_declared_in_reverse():
    vs = ViewSet()
    chain = declare_chain(vs, DEPTH)
    shuffled = chain[:]
    random.Random(7).shuffle(shuffled)
    assert reorder_by_dependencies(shuffled) == chain
    assert reorder_by_dependencies(list(reversed(chain))) == chain


def test_reorder_subset_of_deep_chain_keeps_transitive_order(deep_project):
    # The views between those listed are known to the project only.
    chain = deep_project
    subset = [chain[17], chain[2], chain[11]]
    assert reorder_by_dependencies(subset) == [chain[2], chain[11], chain[17]]


def test_reorder_wide_diamond_graph():
    vs = ViewSet()
    vs.view("Root", "SELECT 1 AS id", materialized=True)
    mids = [
        vs.view(f"Mid{i}", "SELECT id FROM t_root", materialized=True, dependencies=("viewtest.Root",))
        for i in range(10)
    ]
    top = vs.view(
        "Top",
        " UNION ALL ".join(f"SELECT id FROM t_mid{i}" for i in range(10)),
        materialized=True,
        dependencies=tuple(f"viewtest.Mid{i}" for i in range(10)),
    )
    order = reorder_by_dependencies([top, *reversed(mids), vs.models["Root"]])
    assert order[0] is vs.models["Root"] and order[-1] is top
    assert set(order[1:-1]) == set(mids)


def test_cycle_is_reported_with_its_path():
    vs = ViewSet()
    a = vs.view("CycA", "SELECT 1 AS id", dependencies=("viewtest.CycB",))
    b = vs.view("CycB", "SELECT 1 AS id", dependencies=("viewtest.CycA",))
    with pytest.raises(CycleError) as info:
        reorder_by_dependencies([a, b])
    assert isinstance(info.value, DependencyError)
    assert "viewtest.CycA" in str(info.value) and "viewtest.CycB" in str(info.value)


@pytest.fixture
def deep_project(monkeypatch, db):
    """A 20-level chain of materialized views added to the project's declared views and created
    on the test database."""
    vs = ViewSet()
    chain = declare_chain(vs, DEPTH)
    vs.sync()
    project = sync_module.view_models()
    monkeypatch.setattr(sync_module, "view_models", lambda: project + chain)
    return chain


def test_dependants_and_dependencies_of_deep_chain(deep_project):
    chain = deep_project
    assert get_views_dependants([chain[0]]) == chain[1:]
    assert get_views_dependencies([chain[-1]]) == chain[:-1]
    assert get_views_dependants([chain[-1]]) == []
    assert get_views_dependencies([chain[0]]) == []
    middle = chain[10]
    assert get_views_dependants([middle]) == chain[11:]
    assert get_views_dependencies([middle]) == chain[:10]


def test_refresh_specific_views_deep(deep_project):
    chain = deep_project
    for m in reversed(chain):
        execute(f"REFRESH MATERIALIZED VIEW {m._meta.db_table} WITH NO DATA")
    assert not any(populated(m._meta.db_table) for m in chain)
    # One view in the middle: every view it reads and every view that reads it are refreshed.
    count = refresh_specific_views([chain[15]], concurrently=False)
    assert count == DEPTH
    assert all(populated(m._meta.db_table) for m in chain)
    assert catalog_rows(f"SELECT count(*) FROM {chain[-1]._meta.db_table}") == [(3,)]


# -- refresh_specific_views on the test project -----------------------------------------------------


def test_refresh_specific_views_nothing():
    assert refresh_specific_views([]) == 0


@pytest.mark.django_db
def test_refresh_specific_views_refreshes_dependants():
    assert MaterializedRelatedView.objects.count() == 0
    assert DependantMaterializedView.objects.count() == 0
    models.TestModel.objects.create(name="Bob")
    assert refresh_specific_views([MaterializedRelatedView, RelatedView]) == 2
    assert MaterializedRelatedView.objects.count() == 1
    assert DependantMaterializedView.objects.count() == 1


@pytest.mark.django_db
def test_refresh_specific_views_dependencies_of_dependant():
    models.TestModel.objects.create(name="Bob")
    assert refresh_specific_views([DependantMaterializedView]) == 2
    assert MaterializedRelatedView.objects.count() == 1
    assert DependantMaterializedView.objects.count() == 1


@pytest.mark.django_db
def test_refresh_specific_views_concurrently_strict():
    models.TestModel.objects.create(name="Bob")
    wanted = [MaterializedRelatedView, RelatedView, MaterializedRelatedViewWithIndex]
    with pytest.raises(ConcurrentIndexNotDefinedError):
        refresh_specific_views(wanted, concurrently=True, strict=True)
    assert MaterializedRelatedViewWithIndex.objects.count() == 0
    assert refresh_specific_views(wanted, concurrently=True, strict=False) == 3
    assert MaterializedRelatedViewWithIndex.objects.count() == 1
    assert DependantMaterializedView.objects.count() == 1
