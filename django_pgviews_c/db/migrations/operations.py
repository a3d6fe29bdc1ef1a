"""Migration operations.

``RegisterViewOperation`` and ``DeleteViewOperation`` are what ``makemigrations`` writes (as in
django-pgviews-redux). ``SyncView``, ``DropView`` and ``RefreshMaterializedView`` are for writing
by hand, for projects that want a view's life under migration control."""

from __future__ import annotations

from typing import Any

from django.db import router
from django.db.migrations.operations.base import Operation, OperationCategory
from django.db.migrations.state import ProjectState

from django_pgviews_c import _core
from django_pgviews_c.view import MaterializedView, View


class ViewState:
    def __init__(self, app_label: str, name: str, materialized: bool, db_name: str) -> None:
        self.app_label = app_label
        self.name = name
        self.materialized = materialized
        self.db_name = db_name

    @property
    def name_lower(self) -> str:
        return self.name.lower()

    @classmethod
    def from_view(cls, view: type[View]) -> ViewState:
        return cls(
            app_label=view._meta.app_label,
            name=view.__name__,
            materialized=issubclass(view, MaterializedView),
            db_name=view._meta.db_table,
        )

    def __eq__(self, value: object, /) -> bool:
        return isinstance(value, ViewState) and self.__dict__ == value.__dict__

    def __hash__(self) -> int:
        return hash((self.app_label, self.name, self.materialized, self.db_name))


def state_views(state: ProjectState) -> dict[tuple[str, str], ViewState]:
    """The views a migration state carries: (app_label, name_lower) -> ViewState, an attribute
    the package adds to Django's ProjectState (created empty on first use)."""
    views: dict[tuple[str, str], ViewState] = vars(state).setdefault("views", {})
    return views


def drop_relation_sql(schema: str | None, name: str, materialized: bool, *, cascade: bool = True) -> str:
    query: _core.QueryName
    if materialized:
        query = "drop_materialized_view_cascade" if cascade else "drop_materialized_view"
    else:
        query = "drop_view_cascade" if cascade else "drop_view"
    return _core.query_sql(query, table=_core.qualified_name(schema, name))


def drop_view_sql(db_name: str, materialized: bool) -> str:
    schema, name = _core.split_table(db_name)
    return drop_relation_sql(schema, name, materialized)


def drop_statements(what: str, label: str, connection: Any, db_table: str) -> list[str]:
    """DROP statements for a view and the views the project manages that read it, dependants
    first, never CASCADE. An object the project does not manage that reads it makes the
    operation ``what`` fail, naming each one, before anything is dropped."""
    from django_pgviews_c.clear import doomed_by
    from django_pgviews_c.declarations import view_models
    from django_pgviews_c.exceptions import DependantObjectError

    schema, name = _core.split_table(db_table)
    known = {_core.split_table(m._meta.db_table): m._meta.label for m in view_models()}
    known[(schema, name)] = label
    with connection.cursor() as cursor:
        drop, unmanaged = doomed_by(cursor, {(schema, name): label}, known, cascade=False)
    if unmanaged:
        raise DependantObjectError(
            f"migration operation '{what}' would drop {len(unmanaged)} objects of database "
            f"{connection.alias!r} that django-pgviews-c does not manage, as they read {db_table}: "
            + "; ".join(d.describe() for d in unmanaged)
            + ". Drop them first (or in a RunSQL before this operation), then migrate again. "
            "This operation dropped nothing.",
            [(d.schema, d.name, ", ".join(d.reads), d.kind) for d in unmanaged],
        )
    return [drop_relation_sql(d.schema, d.name, d.kind == "m", cascade=False) for d in drop]


class ViewOperation(Operation):
    reversible = False
    reduces_to_sql = True
    elidable = False

    serialization_expand_args = ["name", "materialized", "db_name"]

    def __init__(self, name: str, materialized: bool, db_name: str) -> None:
        self.name = name
        self.materialized = materialized
        self.db_name = db_name
        super().__init__()

    def deconstruct(self) -> tuple[str, list[Any], dict[str, Any]]:
        kwargs = {"name": self.name, "materialized": self.materialized, "db_name": self.db_name}
        return self.__class__.__qualname__, [], kwargs

    @property
    def name_lower(self) -> str:
        return self.name.lower()

    def _same(self, operation: Operation) -> bool:
        return (
            isinstance(operation, (DeleteViewOperation, RegisterViewOperation))
            and self.name_lower == operation.name_lower
            and self.materialized == operation.materialized
            and self.db_name == operation.db_name
        )


class RegisterViewOperation(ViewOperation):
    """Records a view in the migration state; the view itself is created by the sync."""

    category = OperationCategory.ADDITION

    def describe(self) -> str:
        return f"Register {'materialized view' if self.materialized else 'view'} {self.name}"

    @property
    def migration_name_fragment(self) -> str:
        return self.name_lower

    def state_forwards(self, app_label: str, state: ProjectState) -> None:
        view_state = ViewState(app_label, self.name, materialized=self.materialized, db_name=self.db_name)
        state_views(state)[(view_state.app_label, view_state.name_lower)] = view_state

    def database_forwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        if schema_editor.collect_sql:  # sqlmigrate: say where the SQL comes from
            schema_editor.collected_sql.append(
                f"-- {self.db_name} is created or updated by the sync that follows migrate "
                f"(manage.py sync_pgviews --plan shows its SQL)"
            )

    def database_backwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        pass

    def reduce(self, operation: Operation, app_label: str) -> bool | list[Operation]:
        if not self._same(operation):
            return False
        return [operation] if isinstance(operation, RegisterViewOperation) else []


class DeleteViewOperation(ViewOperation):
    """Drops a view whose model was removed (or renamed)."""

    category = OperationCategory.REMOVAL

    def describe(self) -> str:
        return f"Delete {'materialized view' if self.materialized else 'view'} {self.name}"

    @property
    def migration_name_fragment(self) -> str:
        return f"delete_{self.name_lower}"

    def state_forwards(self, app_label: str, state: ProjectState) -> None:
        state_views(state).pop((app_label, self.name_lower), None)

    def database_forwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        if not router.allow_migrate(schema_editor.connection.alias, app_label):
            return
        schema, name = _core.split_table(self.db_name)
        if schema_editor.collect_sql:  # sqlmigrate: the view itself; dependants are read at migrate
            schema_editor.execute(drop_relation_sql(schema, name, self.materialized, cascade=False))
            return
        what = f"Delete {'materialized view' if self.materialized else 'view'} {self.name}"
        for sql in drop_statements(what, f"{app_label}.{self.name}", schema_editor.connection, self.db_name):
            schema_editor.execute(sql)

    def reduce(self, operation: Operation, app_label: str) -> bool | list[Operation]:
        if not self._same(operation):
            return False
        return [operation] if isinstance(operation, DeleteViewOperation) else False


class _ModelOperation(Operation):
    """An operation on a view model given as 'app_label.ModelName' (the current declaration)."""

    reversible = True
    reduces_to_sql = True  # sqlmigrate prints the statements (SyncView: those planned now)
    category = OperationCategory.SQL
    verb = ""

    def __init__(self, model: str) -> None:
        self.model = model
        super().__init__()

    def deconstruct(self) -> tuple[str, list[Any], dict[str, Any]]:
        return self.__class__.__qualname__, [self.model], {}

    def state_forwards(self, app_label: str, state: ProjectState) -> None:
        pass

    def view(self) -> type[View]:
        from django.apps import apps

        return apps.get_model(self.model)

    @property
    def migration_name_fragment(self) -> str:
        return f"{self.verb}_{self.model.rpartition('.')[2].lower()}"

    def _allowed(self, app_label: str, schema_editor: Any) -> bool:
        return router.allow_migrate(schema_editor.connection.alias, app_label)

    def _drop(self, app_label: str, schema_editor: Any, what: str) -> None:
        """Drop the view and the project's views that read it, dependants first, never CASCADE:
        an object the project does not manage that reads it makes the operation ``what`` fail
        before anything is dropped."""
        if not self._allowed(app_label, schema_editor):
            return
        view = self.view()
        if schema_editor.collect_sql:  # sqlmigrate: the view itself; dependants are read at migrate
            schema_editor.execute(drop_view_sql(view._meta.db_table, issubclass(view, MaterializedView)))
            return
        for sql in drop_statements(what, view._meta.label, schema_editor.connection, view._meta.db_table):
            schema_editor.execute(sql)


class SyncView(_ModelOperation):
    """Create or update one view from its model, as sync_pgviews would (its dependants that a
    change takes down are re-created). Backwards: drop it."""

    verb = "sync"

    def describe(self) -> str:
        return f"Create or update view {self.model}"

    def database_forwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        if not self._allowed(app_label, schema_editor):
            return
        from django_pgviews_c.dependencies import get_views_dependants, get_views_dependencies
        from django_pgviews_c.sync import Syncer, view_models

        view = self.view()
        # The views it reads and the views that read it are declared too: a change that must
        # re-create it re-creates them rather than refusing them as unmanaged.
        related = [view, *get_views_dependencies([view]), *get_views_dependants([view])]
        known = {m._meta.label for m in view_models()}
        syncer = Syncer(schema_editor.connection, related, known, force=True)
        if not schema_editor.collect_sql:
            syncer.run()
            return
        # sqlmigrate: the statements the sync would run on the database as it is now.
        actions = syncer.run(dry_run=True).actions
        if not actions:
            schema_editor.collected_sql.append(f"-- {view._meta.label} is up to date: nothing to run")
        for action in actions:
            schema_editor.execute(action.sql, params=None)

    def database_backwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        self._drop(app_label, schema_editor, f"Create or update view {self.model}, backwards")


class DropView(_ModelOperation):
    """Drop one view (IF EXISTS) and the project's views that read it, never CASCADE: a view the
    project does not manage that reads it makes it fail, naming it. Backwards: create it."""

    verb = "drop"

    def describe(self) -> str:
        return f"Drop view {self.model}"

    def database_forwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        self._drop(app_label, schema_editor, f"Drop view {self.model}")

    def database_backwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        SyncView(self.model).database_forwards(app_label, schema_editor, from_state, to_state)


class RefreshMaterializedView(_ModelOperation):
    """Refresh one materialized view inside the migration's transaction."""

    def __init__(self, model: str, concurrently: bool = False) -> None:
        self.concurrently = concurrently
        super().__init__(model)

    def deconstruct(self) -> tuple[str, list[Any], dict[str, Any]]:
        return self.__class__.__qualname__, [self.model], {"concurrently": self.concurrently}

    verb = "refresh"

    def describe(self) -> str:
        return f"Refresh materialized view {self.model}"

    def database_forwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        if not self._allowed(app_label, schema_editor):
            return
        from django_pgviews_c.history import recording
        from django_pgviews_c.view import refresh_statement

        model, sql = self.view(), refresh_statement(self.view()._meta.db_table, self.concurrently)
        if schema_editor.collect_sql:  # sqlmigrate: nothing runs, nothing is recorded
            schema_editor.execute(sql)
            return
        with recording(schema_editor.connection, model, concurrent=self.concurrently):
            schema_editor.execute(sql)

    def database_backwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        pass
