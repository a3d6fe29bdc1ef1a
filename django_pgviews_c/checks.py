"""System checks of django-pgviews-c (ids django_pgviews_c.W001 ...)."""

from __future__ import annotations

from typing import Any

from django.core.checks import CheckMessage, Tags, register
from django.core.checks import Error as CheckError
from django.core.checks import Warning as CheckWarning


@register(Tags.database)
def validate_has_pgviews_autodetector(**kwargs: Any) -> list[CheckMessage]:
    """W001: another app's makemigrations/migrate replaced ours, so removed views are not dropped."""
    from django.core.management import get_commands, load_command_class

    from django_pgviews_c.db.migrations.autodetector import PGViewsAutodetector

    commands = get_commands()
    make_migrations = load_command_class(commands["makemigrations"], "makemigrations")
    migrate = load_command_class(commands["migrate"], "migrate")
    make_ok = issubclass(getattr(make_migrations, "autodetector", object), PGViewsAutodetector)
    migrate_ok = issubclass(getattr(migrate, "autodetector", object), PGViewsAutodetector)
    if make_ok and migrate_ok:
        return []
    return [
        CheckWarning(
            "If you don't use PGViewsAutodetector on your migrate and makemigrations commands, "
            "django_pgviews_c will not detect and delete that views have been removed. "
            "You are seeing this because you or some other dependency has overwritten the commands "
            "from django_pgviews_c.",
            hint=(
                f"The makemigrations.Command.autodetector is "
                f"{getattr(make_migrations, 'autodetector', type(None)).__name__}, the migrate.Command."
                f"autodetector is {getattr(migrate, 'autodetector', type(None)).__name__}. Subclass "
                f"django_pgviews_c.db.migrations.autodetector.PGViewsAutodetector in yours, or list "
                f"django_pgviews_c before the app whose commands win."
            ),
            id="django_pgviews_c.W001",
        )
    ]


@register(Tags.models)
def validate_view_declarations(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """E001: a dependency cycle or an unknown dependency; W002: a view without managed = False;
    E002: concurrent_index on a plain view."""
    from django_pgviews_c import _core
    from django_pgviews_c.exceptions import DependencyError
    from django_pgviews_c.sync import view_models
    from django_pgviews_c.view import MaterializedView, declared_dependencies

    models = view_models()
    messages: list[CheckMessage] = []
    try:
        _core.Graph([m._meta.label for m in models], [declared_dependencies(m) for m in models]).order()
    except DependencyError as exc:
        messages.append(
            CheckError(
                str(exc),
                hint="dependencies name other views as 'app_label.ModelName'; remove the cycle",
                id="django_pgviews_c.E001",
            )
        )
    for model in models:
        if model._meta.managed:
            messages.append(
                CheckWarning(
                    f"{model._meta.label} is a view but Meta.managed is True: migrations will try to "
                    f"create a table for it.",
                    hint="Set managed = False in the view's Meta.",
                    obj=model,
                    id="django_pgviews_c.W002",
                )
            )
        if getattr(model, "_concurrent_index", None) and not issubclass(model, MaterializedView):
            messages.append(
                CheckError(
                    f"{model._meta.label} sets concurrent_index but is not a materialized view.",
                    hint="Subclass pg.MaterializedView, or remove concurrent_index.",
                    obj=model,
                    id="django_pgviews_c.E002",
                )
            )
    return messages
