"""django-pgviews-redux 1.3 parity: the migration state of views (ViewState), the operations
makemigrations writes (RegisterViewOperation / DeleteViewOperation: state, optimizer, database
effect on a real schema editor) and PGViewsAutodetector on the test project's own views.
The full makemigrations/migrate round trip in processes is tests/test_migrations_roundtrip.py."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.optimizer import MigrationOptimizer
from django.db.migrations.state import ProjectState

from django_pgviews_c.db.migrations.autodetector import PGViewsAutodetector
from django_pgviews_c.db.migrations.operations import (
    DeleteViewOperation,
    DropView,
    RefreshMaterializedView,
    RegisterViewOperation,
    SyncView,
    ViewState,
)
from django_pgviews_c.exceptions import DependantObjectError
from tests.helpers import ViewSet, relkind
from tests.multidbtest.models import MonthlyObservation
from tests.viewtest import models


def test_view_state_from_view():
    state = ViewState.from_view(models.RelatedView)
    assert (state.app_label, state.name, state.materialized, state.db_name) == (
        "viewtest",
        "RelatedView",
        False,
        "viewtest_relatedview",
    )
    state = ViewState.from_view(models.MaterializedRelatedViewWithIndex)
    assert state.materialized is True
    assert state.db_name == "viewtest_materializedrelatedviewwithindex"
    assert ViewState.from_view(models.CustomSchemaView).db_name == "test_schema.my_custom_view"


def test_view_state_equality():
    a = ViewState("app", "V", False, "v")
    assert a == ViewState("app", "V", False, "v")
    assert a != ViewState("app", "V", True, "v")
    assert a != ViewState("app", "V", False, "w")
    assert len({a, ViewState("app", "V", False, "v")}) == 1


def test_register_and_delete_state_forwards():
    state = ProjectState()
    RegisterViewOperation(name="Thing", materialized=True, db_name="thing_table").state_forwards("app", state)
    assert state.views == {("app", "thing"): ViewState("app", "Thing", True, "thing_table")}
    DeleteViewOperation(name="Thing", materialized=True, db_name="thing_table").state_forwards("app", state)
    assert state.views == {}


def test_operations_describe_and_deconstruct():
    op = RegisterViewOperation(name="Thing", materialized=True, db_name="thing_table")
    assert op.describe() == "Register materialized view Thing"
    assert op.deconstruct() == (
        "RegisterViewOperation",
        [],
        {"name": "Thing", "materialized": True, "db_name": "thing_table"},
    )
    assert (
        DeleteViewOperation(name="Thing", materialized=False, db_name="t").describe() == "Delete view Thing"
    )
    assert SyncView("viewtest.RelatedView").deconstruct() == ("SyncView", ["viewtest.RelatedView"], {})
    assert DropView("viewtest.RelatedView").deconstruct() == ("DropView", ["viewtest.RelatedView"], {})
    assert RefreshMaterializedView("viewtest.MaterializedRelatedView", concurrently=True).deconstruct() == (
        "RefreshMaterializedView",
        ["viewtest.MaterializedRelatedView"],
        {"concurrently": True},
    )


R = RegisterViewOperation
D = DeleteViewOperation


@pytest.mark.parametrize(
    ("operations", "expected"),
    [
        pytest.param([R("A", False, "a"), R("B", True, "b")], None, id="two_different_views"),
        pytest.param(
            [R("A", False, "a"), R("A", False, "a")], [R("A", False, "a")], id="two_identical_register"
        ),
        pytest.param(
            [D("A", False, "a"), D("A", False, "a")], [D("A", False, "a")], id="two_identical_delete"
        ),
        pytest.param([R("A", False, "a"), D("A", False, "a")], [], id="register_then_delete"),
        pytest.param([D("A", False, "a"), R("A", False, "a")], None, id="delete_then_register"),
        pytest.param(
            [R("A", False, "a"), D("A", False, "a"), R("A", True, "a")],
            [R("A", True, "a")],
            id="change_materialized",
        ),
        pytest.param(
            [R("A", False, "a"), D("A", False, "a"), R("A", False, "a2")],
            [R("A", False, "a2")],
            id="change_db_name",
        ),
    ],
)
def test_optimizer(operations, expected):
    expected = operations if expected is None else expected
    got = MigrationOptimizer().optimize(operations, "app")
    assert [(type(o), o.name, o.materialized, o.db_name) for o in got] == [
        (type(o), o.name, o.materialized, o.db_name) for o in expected
    ]


# -- the autodetector on the project's views --------------------------------------------------------


def detect(from_views: dict | None) -> dict[str, list]:
    from_state = ProjectState()
    if from_views is not None:
        from_state.views = from_views
    detector = PGViewsAutodetector(from_state, ProjectState())
    detector.generated_operations = {}
    detector._sort_migrations()
    return {
        app: [op for op in ops if isinstance(op, (R, D))]
        for app, ops in detector.generated_operations.items()
    }


def project_views() -> dict:
    from django_pgviews_c.sync import view_models

    return {(m._meta.app_label, m.__name__.lower()): ViewState.from_view(m) for m in view_models()}


def test_autodetector_registers_every_new_view():
    ops = detect(None)
    registered = {(op.name, op.materialized, op.db_name) for op in ops["viewtest"]}
    assert ("RelatedView", False, "viewtest_relatedview") in registered
    assert (
        "MaterializedRelatedViewWithIndex",
        True,
        "viewtest_materializedrelatedviewwithindex",
    ) in registered
    assert ("CustomSchemaView", False, "test_schema.my_custom_view") in registered
    assert all(isinstance(op, R) for op in ops["viewtest"])
    assert len(ops["viewtest"]) == 12
    assert [(op.name, op.materialized) for op in ops["multidbtest"] if op.name == "MonthlyObservation"] == [
        ("MonthlyObservation", True)
    ]


def test_autodetector_nothing_when_state_matches():
    assert detect(project_views()) == {}


def test_autodetector_deletes_a_removed_view():
    views = project_views()
    views[("viewtest", "gone")] = ViewState("viewtest", "Gone", True, "viewtest_gone")
    ops = detect(views)
    assert [(type(op), op.name, op.materialized, op.db_name) for op in ops["viewtest"]] == [
        (D, "Gone", True, "viewtest_gone")
    ]


def test_autodetector_changed_db_table_is_delete_then_register():
    views = project_views()
    views[("viewtest", "relatedview")] = ViewState("viewtest", "RelatedView", False, "old_related")
    ops = detect(views)
    assert [(type(op), op.db_name) for op in ops["viewtest"]] == [
        (D, "old_related"),
        (R, "viewtest_relatedview"),
    ]


def test_autodetector_view_becoming_materialized():
    views = project_views()
    key = ("multidbtest", "monthlyobservation")
    views[key] = ViewState("multidbtest", "MonthlyObservation", False, MonthlyObservation._meta.db_table)
    ops = detect(views)
    assert [(type(op), op.materialized) for op in ops["multidbtest"]] == [(D, False), (R, True)]


# -- DeleteViewOperation on the database ------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("materialized", [False, True])
def test_delete_view_operation_drops_the_view(materialized):
    vs = ViewSet()
    vs.view("Doomed", "SELECT 1 AS id", materialized=materialized, db_table="doomed_view")
    vs.view(
        "Reader", "SELECT id FROM doomed_view", db_table="doomed_reader", dependencies=("viewtest.Doomed",)
    )
    vs.sync()
    assert relkind("doomed_view") == ("m" if materialized else "v")
    op = DeleteViewOperation(name="Doomed", materialized=materialized, db_name="doomed_view")
    # Reader is declared in no installed app: the project does not manage it, so the operation
    # refuses, naming it, and drops nothing (redux dropped it silently with CASCADE).
    refused = pytest.raises(DependantObjectError, match=r"public\.doomed_reader \(view not managed")
    with refused, connection.schema_editor() as editor:
        op.database_forwards("viewtest", editor, ProjectState(), ProjectState())
    assert relkind("doomed_view") == ("m" if materialized else "v")
    assert relkind("doomed_reader") == "v"
    with connection.cursor() as cursor:
        cursor.execute("DROP VIEW doomed_reader")
    with connection.schema_editor() as editor:
        op.database_forwards("viewtest", editor, ProjectState(), ProjectState())
    assert relkind("doomed_view") is None
    # Dropping what is already gone is not an error.
    with connection.schema_editor() as editor:
        op.database_forwards("viewtest", editor, ProjectState(), ProjectState())


@pytest.mark.django_db
def test_delete_view_operation_in_a_schema():
    vs = ViewSet()
    vs.view("Schemed", "SELECT 1 AS id", db_table="test_schema.doomed_schemed")
    vs.sync()
    assert relkind("test_schema.doomed_schemed") == "v"
    with connection.schema_editor() as editor:
        D("Schemed", False, "test_schema.doomed_schemed").database_forwards(
            "viewtest", editor, ProjectState(), ProjectState()
        )
    assert relkind("test_schema.doomed_schemed") is None


@pytest.mark.django_db
def test_delete_view_operation_respects_the_router():
    # multidbtest's migrations are not allowed on default: its operation leaves default alone.
    vs = ViewSet()
    vs.view("Kept", "SELECT 1 AS id", db_table="kept_on_default")
    vs.sync()
    with connection.schema_editor() as editor:
        D("Kept", False, "kept_on_default").database_forwards(
            "multidbtest", editor, ProjectState(), ProjectState()
        )
    assert relkind("kept_on_default") == "v"


@pytest.mark.django_db
def test_sql_of_delete_view_operation():
    with connection.schema_editor(collect_sql=True) as editor:
        D("X", True, "test_schema.Odd Name").database_forwards(
            "viewtest", editor, ProjectState(), ProjectState()
        )
    assert any(
        'DROP MATERIALIZED VIEW IF EXISTS test_schema."Odd Name"' in s
        or 'DROP MATERIALIZED VIEW IF EXISTS "test_schema"."Odd Name"' in s
        for s in editor.collected_sql
    ), editor.collected_sql
    assert not any("CASCADE" in s for s in editor.collected_sql)
