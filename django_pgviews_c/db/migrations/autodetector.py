"""A migration autodetector that also notices views added, removed or renamed."""

from __future__ import annotations

import functools
from typing import Any

from django.apps import apps
from django.db.migrations import Migration
from django.db.migrations.autodetector import MigrationAutodetector
from django.db.migrations.operations import CreateModel, DeleteModel

from django_pgviews_c.db.migrations.operations import (
    DeleteViewOperation,
    RegisterViewOperation,
    ViewState,
    state_views,
)
from django_pgviews_c.view import View


class PGViewsAutodetector(MigrationAutodetector):
    def populate_to_state_views(self) -> None:
        """The views of the current code: makemigrations builds its to_state from apps, which
        carries no views, so they are added here."""
        app_views = {}
        for model in apps.get_models():
            if not issubclass(model, View):
                continue
            view_state = ViewState.from_view(model)
            app_views[(view_state.app_label, view_state.name_lower)] = view_state
        state_views(self.to_state).update(app_views)

    def _sort_migrations(self) -> Any:
        """Added and deleted views become operations. This runs after the model operations are
        generated and before they are sorted, which is the one place both hold."""
        self.populate_to_state_views()
        old = dict(state_views(self.from_state))
        new = dict(state_views(self.to_state))
        changed = {key for key in new.keys() & old.keys() if new[key] != old[key]}
        for app_label, view_name in sorted((old.keys() - new.keys()) | changed):
            view_state = old[(app_label, view_name)]
            self.add_operation(
                app_label,
                DeleteViewOperation(
                    name=view_state.name, materialized=view_state.materialized, db_name=view_state.db_name
                ),
            )
        for app_label, view_name in sorted((new.keys() - old.keys()) | changed):
            view_state = new[(app_label, view_name)]
            self.add_operation(
                app_label,
                RegisterViewOperation(
                    name=view_state.name, materialized=view_state.materialized, db_name=view_state.db_name
                ),
            )
        # A private method of Django's autodetector (since 1.7), absent from django-stubs.
        return super()._sort_migrations()  # type: ignore[misc]

    def arrange_for_graph(self, changes: Any, graph: Any, migration_name: str | None = None) -> Any:
        """A view model comes with two operations (Django's CreateModel or DeleteModel of the
        unmanaged model, and ours): name the migration after the view once, not twice."""
        for migrations in changes.values():
            for migration in migrations:
                if any(
                    isinstance(op, (RegisterViewOperation, DeleteViewOperation))
                    for op in migration.operations
                ):
                    migration.suggest_name = functools.partial(_suggest_name, migration)
        return super().arrange_for_graph(changes, graph, migration_name)


def _suggest_name(migration: Migration) -> str:
    views = {
        op.name_lower
        for op in migration.operations
        if isinstance(op, (RegisterViewOperation, DeleteViewOperation))
    }
    shadow = Migration(migration.name, migration.app_label)
    # django-stubs declares both ClassVar; Django's Migration.__init__ sets them per instance.
    shadow.initial = migration.initial  # type: ignore[misc]
    shadow.operations = [  # type: ignore[misc]
        op
        for op in migration.operations
        if not (isinstance(op, (CreateModel, DeleteModel)) and op.name_lower in views)
    ]
    # Migration.suggest_name (Django 4.0+) is missing from django-stubs 5.2.
    name: str = Migration.suggest_name(shadow)  # type: ignore[attr-defined]
    return name
