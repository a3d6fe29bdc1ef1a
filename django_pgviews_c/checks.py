"""System checks of django-pgviews-c (ids django_pgviews_c.W001 ...)."""

from __future__ import annotations

import contextlib
import contextvars
import re
from collections.abc import Iterator
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
    E002: concurrent_index on a plain view; W009: defer_rebuild on a plain view; E006: a staleness
    mode that is not one."""
    from django_pgviews_c import _core
    from django_pgviews_c.exceptions import DependencyError
    from django_pgviews_c.sync import view_models
    from django_pgviews_c.view import declared_dependencies

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
        messages += _declaration_messages(model)
    return messages


def _declaration_messages(model: Any) -> list[CheckMessage]:
    """W002 and E002 of one view model, then the freshness attributes (_freshness_messages)."""
    from django_pgviews_c.view import MaterializedView

    messages: list[CheckMessage] = []
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
    return messages + _freshness_messages(model)


def _freshness_messages(model: Any) -> list[CheckMessage]:
    """W009, W010, E006 and E007 of one view model: the freshness attributes."""
    import datetime as dt

    from django_pgviews_c.view import MaterializedView

    messages: list[CheckMessage] = []
    materialized = issubclass(model, MaterializedView)
    if getattr(model, "defer_rebuild", None) is not None and not materialized:
        messages.append(
            CheckWarning(
                f"{model._meta.label} sets defer_rebuild but is not a materialized view: a plain "
                f"view holds no data and is always replaced at once, so it has no effect.",
                hint="Remove defer_rebuild, or subclass pg.MaterializedView.",
                obj=model,
                id="django_pgviews_c.W009",
            )
        )
    staleness = getattr(model, "staleness", "statistics")
    if staleness not in ("statistics", "exact"):
        messages.append(
            CheckError(
                f'{model._meta.label}.staleness is {staleness!r}: it must be "statistics" or "exact".',
                hint='Set staleness = "exact" (triggers count committed writes), or remove it.',
                obj=model,
                id="django_pgviews_c.E006",
            )
        )
    interval = getattr(model, "refresh_interval", None)
    if interval is not None and not (isinstance(interval, dt.timedelta) and interval >= dt.timedelta(0)):
        messages.append(
            CheckError(
                f"{model._meta.label}.refresh_interval is {interval!r}: it must be a "
                f"datetime.timedelta of 0 or more.",
                hint="Set refresh_interval = datetime.timedelta(minutes=15), say, or remove it.",
                obj=model,
                id="django_pgviews_c.E007",
            )
        )
    elif interval is not None and not materialized:
        messages.append(
            CheckWarning(
                f"{model._meta.label} sets refresh_interval but is not a materialized view: a plain "
                f"view holds no data (it reads its tables live), so --due and the refresher never "
                f"refresh it and it has no effect.",
                hint="Remove refresh_interval, or subclass pg.MaterializedView.",
                obj=model,
                id="django_pgviews_c.W010",
            )
        )
    return messages


# ---- declarations PostgreSQL would refuse or change ---------------------------------------------

_PLAIN_COLUMN = re.compile(r'^(?:[A-Za-z_][A-Za-z0-9_$]*|"(?:[^"]|"")+")$')
_NAMEDATALEN = 63


def _concurrent_index_columns(spec: str) -> list[str] | None:
    """The column names of a concurrent_index, or None when it is not a plain column list."""
    parts = [part.strip() for part in spec.split(",")]
    if not all(_PLAIN_COLUMN.match(part) for part in parts):
        return None
    return [part[1:-1].replace('""', '"') if part.startswith('"') else part.lower() for part in parts]


def _redux_index_name(model: Any) -> str:
    """The concurrent index's name before shortening (django-pgviews-redux's scheme)."""
    tablespace = model._concurrent_index_tablespace
    base: str = model._meta.db_table.replace(".", "_") + "_" + model._concurrent_index.replace(" ", "")
    base = base.replace(",", "_")
    if tablespace:
        base += "_" + tablespace.replace("-", "_")
    return base + "_index"


@register(Tags.models)
def validate_view_names_and_indexes(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """E003: concurrent_index is not a plain column list (an expression, a WHERE clause);
    E004: a db_table PostgreSQL cannot take (over 63 bytes ...); W003: the concurrent index's
    derived name is over 63 bytes, so it is shortened; W006: concurrent_index names a column no
    field has. (A Meta.indexes entry naming a field the model lacks is Django's models.E012.)"""
    from django_pgviews_c.sync import view_models

    return check_view_names(_in_apps(view_models(), app_configs))


def check_view_names(models: list[Any]) -> list[CheckMessage]:
    from django_pgviews_c import _core
    from django_pgviews_c.exceptions import InvalidNameError
    from django_pgviews_c.view import MaterializedView

    messages: list[CheckMessage] = []
    for model in models:
        try:
            _core.split_table(model._meta.db_table)
        except InvalidNameError as exc:
            messages.append(_db_table_error(model, exc))
            continue
        spec = getattr(model, "_concurrent_index", None)
        if spec and issubclass(model, MaterializedView):
            messages += _concurrent_index_messages(model, spec)
    return messages


def _db_table_error(model: Any, exc: Exception) -> CheckMessage:
    """E004: a db_table the core cannot split into a schema and a name."""
    too_long = "63 bytes" in str(exc)
    return CheckError(
        f"{model._meta.label}: {exc}."
        + (
            " PostgreSQL would cut the name, and the view would never be found again under the one declared."
            if too_long
            else ""
        ),
        hint=(
            "Set Meta.db_table to a name of at most 63 bytes (and 63 for its schema)."
            if too_long
            else "Write Meta.db_table as name, schema.name, or their double-quoted forms."
        ),
        obj=model,
        id="django_pgviews_c.E004",
    )


def _concurrent_index_messages(model: Any, spec: str) -> list[CheckMessage]:
    """E003 (not plain columns), W006 (a column no field has), W003 (a name over 63 bytes)."""
    from django_pgviews_c import _core

    label = model._meta.label
    if _concurrent_index_columns(spec) is None:
        where = re.search(r"\bwhere\b", spec, re.IGNORECASE) is not None
        return [
            CheckError(
                f"{label}: concurrent_index = {spec!r} "
                + ("has a WHERE clause" if where else "is not a list of plain columns")
                + ": REFRESH MATERIALIZED VIEW CONCURRENTLY needs a unique index on plain "
                "columns, with no expression and no WHERE clause, and refuses this one.",
                hint=(
                    "Name columns only (concurrent_index = 'a, b'); compute an expression as a "
                    "column of the view's SQL and index that column."
                ),
                obj=model,
                id="django_pgviews_c.E003",
            )
        ]
    messages: list[CheckMessage] = []
    fields = {f.column for f in model._meta.concrete_fields}
    for column in _concurrent_index_columns(spec) or ():
        if column not in fields:
            messages.append(
                CheckWarning(
                    f"{label}: concurrent_index names column {column!r}, which no field of the "
                    f"model has (columns of its fields: {', '.join(sorted(fields))}).",
                    hint=(
                        "Name the column of a field (a ForeignKey 'player' has column "
                        "'player_id'); a column only the SQL has works, but is easy to mistype."
                    ),
                    obj=model,
                    id="django_pgviews_c.W006",
                )
            )
    name = _redux_index_name(model)
    if len(name.encode()) > _NAMEDATALEN:
        messages.append(
            CheckWarning(
                f"{label}: the concurrent index's name {name!r} is {len(name.encode())} bytes, "
                f"over PostgreSQL's 63; it is created as "
                f"{_core.derived_name(name[: -len('_index')], '_index')!r}.",
                hint=(
                    "Nothing breaks; for a readable name use a shorter db_table or "
                    "concurrent_index_tablespace."
                ),
                obj=model,
                id="django_pgviews_c.W003",
            )
        )
    return messages


def _in_apps(models: list[Any], app_configs: Any) -> list[Any]:
    if app_configs is None:
        return models
    wanted = {config.label for config in app_configs}
    return [m for m in models if m._meta.app_label in wanted]


# ---- what the database shows ----------------------------------------------------------------------

# The database_checks query (csrc/queries.c) reads, for the views declared on one database that
# exist there: their columns, which of the others each one's rule reads, and the functions each
# materialized view's query calls (directly or through the plain views it reads) that are neither
# built in, nor an extension's, nor C, and carry no search_path setting.


@register(Tags.database)
def validate_views_in_database(
    app_configs: Any = None, databases: Any = None, **kwargs: Any
) -> list[CheckMessage]:
    """Run by ``manage.py check --database ALIAS`` (and ``migrate``), on the views that exist
    and match their declarations (a view about to change would be judged on its old state):
    E005: a view whose SQL cannot be built (a QuerySet naming a field that is gone ...);
    W004: a materialized view calling a function of the user's with no pinned search_path;
    W005: a view reading another managed view it does not declare a dependency on;
    W007: a field whose column the view does not have; W008: the catalog could not be read."""
    from django.db import connections

    from django_pgviews_c.sync import view_models

    messages: list[CheckMessage] = []
    for alias in databases or ():
        if connections[alias].vendor != "postgresql":
            continue
        models = [m for m in view_models() if m.get_view_connection(alias, restricted_mode=True) is not None]
        messages += check_views_on(alias, models, _in_apps(models, app_configs))
    return messages


def check_views_on(alias: str, models: list[Any], report: list[Any]) -> list[CheckMessage]:
    """The database checks for ``models`` (the views of database ``alias``), reported for the
    views in ``report``."""
    from django.db import DatabaseError as DjangoDatabaseError
    from django.db import connections

    from django_pgviews_c.dberrors import diag
    from django_pgviews_c.exceptions import PGViewsError
    from django_pgviews_c.failures import LOCK_NOT_AVAILABLE

    connection = connections[alias]
    messages: list[CheckMessage] = []
    if models:
        try:
            buildable = _buildable(connection, models, report, messages)
            with _lock_guard(connection):
                in_sync = _in_sync(connection, buildable, {m._meta.label for m in models})
                rows = _read_database(connection, models)
        except PGViewsError:  # a declaration error: the models checks (E001 ...) report it
            return messages
        except DjangoDatabaseError as exc:
            locked = diag(exc)["sqlstate"] == LOCK_NOT_AVAILABLE
            hint = (
                f"A session holds a lock on a table or view the views read (an ALTER, a plain "
                f"REFRESH, a LOCK): {_lock_holders(connection)}; the database checks of views were "
                f"skipped rather than wait."
                if locked
                else "Check that the database is reachable; the database checks of views were skipped."
            )
            messages.append(
                CheckWarning(
                    f"Could not read the views of database {alias!r}: {str(exc).strip()}",
                    hint=hint,
                    id="django_pgviews_c.W008",
                )
            )
            return messages
        messages += _database_messages(alias, models, rows, set(report) & in_sync)
    return messages


def _lock_holders(connection: Any) -> str:
    """Who holds the lock the checks gave up on: the sessions holding ACCESS EXCLUSIVE on a
    relation of the database (the only mode that blocks the checks' reads), as a sync's lock
    waits name them, so the user knows whom to ask."""
    from django.db import DatabaseError as DjangoDatabaseError

    from django_pgviews_c.locks import blocking_holders, describe_holders

    try:
        with connection.cursor() as cursor:
            return describe_holders(blocking_holders(cursor))
    except DjangoDatabaseError as exc:
        return f"its holder could not be read ({str(exc).strip()})"


@contextlib.contextmanager
def _lock_guard(connection: Any) -> Iterator[None]:
    """A check never waits behind a lock (``manage.py check --database``, and migrate before its
    migrations): what it reads runs in a transaction rolled back at its end, under a refresh's
    short lock_timeout (PGVIEWS_LOCK_TIMEOUT_MS, 200). Comparing a changed declaration with its
    view builds it beside the view, and deparsing a view locks what it reads: behind an ALTER or
    a LOCK on a source table, the check waited as long as the lock was held."""
    from django.db import transaction

    from django_pgviews_c.refreshlocks import _guard_sql, _lock_settings

    with transaction.atomic(using=connection.alias):
        with connection.cursor() as cursor:
            cursor.execute(_guard_sql(_lock_settings()[1]))
        yield
        transaction.set_rollback(True, using=connection.alias)


def _buildable(
    connection: Any, models: list[Any], report: list[Any], messages: list[CheckMessage]
) -> list[Any]:
    """The views whose SQL can be built; E005 for the others (a QuerySet that names a field
    that is gone, a get_sql() that raises ...), which a sync would stop at."""
    from django.db import DatabaseError as DjangoDatabaseError

    from django_pgviews_c.querysql import view_query

    buildable = []
    for model in models:
        try:
            view_query(model, connection)
        except DjangoDatabaseError:  # the connection: W008
            raise
        except Exception as exc:
            if model in report:
                messages.append(
                    CheckError(
                        f"{model._meta.label}: its SQL cannot be built: {type(exc).__name__}: {exc}",
                        hint="Fix the view's sql / get_sql(); a sync stops at this view.",
                        obj=model,
                        id="django_pgviews_c.E005",
                    )
                )
            continue
        buildable.append(model)
    return buildable


def _in_sync(connection: Any, models: list[Any], known: set[str]) -> set[Any]:
    """The views whose database object matches their declaration (a dry-run plan: one catalog
    query, nothing run)."""
    from django_pgviews_c.sync import Syncer

    if not models:
        return set()
    statuses = Syncer(connection, models, known).run(dry_run=True).statuses
    return {m for m in models if statuses.get(m._meta.label) == "EXISTS"}


def _read_database(connection: Any, models: list[Any]) -> list[tuple[Any, ...]]:
    from django_pgviews_c import _core

    names = [_core.qualified_name(*_core.split_table(m._meta.db_table)) for m in models]
    with connection.cursor() as cursor:
        cursor.execute(_core.query_sql("database_checks"), [names])
        rows: list[tuple[Any, ...]] = cursor.fetchall()
        return rows


def _database_messages(
    alias: str, models: list[Any], rows: list[tuple[Any, ...]], reported: set[Any]
) -> list[CheckMessage]:
    columns: dict[int, list[str]] = {}
    reads: dict[int, set[int]] = {}
    calls: dict[int, list[tuple[str, str | None]]] = {}
    for kind, idx, text, via in rows:
        i = int(idx) - 1
        if kind == "column":
            columns.setdefault(i, []).append(text)
        elif kind == "reads":
            reads.setdefault(i, set()).add(int(text) - 1)
        else:
            calls.setdefault(i, []).append((text, via))
    graph = _declared_graph(models)
    messages: list[CheckMessage] = []
    for i, model in enumerate(models):
        if model not in reported or i not in columns:
            continue  # not this app's, or not created yet: nothing to compare with
        messages += _missing_columns(alias, model, columns[i])
        messages += _unpinned_functions(model, calls.get(i, []))
        if graph is not None:
            upstream = set(graph.dependencies([i]))
            messages += _undeclared_reads(
                model, [models[j] for j in sorted(reads.get(i, ())) if j not in upstream]
            )
    return messages


def _declared_graph(models: list[Any]) -> Any:
    """The graph of models' declared dependencies among themselves; None when it has a cycle."""
    from django_pgviews_c import _core
    from django_pgviews_c.exceptions import DependencyError
    from django_pgviews_c.view import declared_dependencies

    labels = {m._meta.label for m in models}
    try:
        graph = _core.Graph(
            [m._meta.label for m in models],
            [[d for d in declared_dependencies(m) if d in labels] for m in models],
        )
        graph.order()
    except DependencyError:  # E001 reports it
        return None
    return graph


def _missing_columns(alias: str, model: Any, have: list[str]) -> list[CheckMessage]:
    """W007: a field whose column the view on the database does not have. Not during a migrate
    whose sync follows (the migrate command's check): that sync says it, in the same words, and
    migrate said it twice."""
    from django_pgviews_c.columns import missing_column_fix, missing_column_text

    if _SYNC_FOLLOWS.get():
        return []
    view = f"{model._meta.db_table} on database {alias!r}"
    # The implicit id is not the user's: a view read with values() may well lack it.
    return [
        CheckWarning(
            missing_column_text(model._meta.label, field.name, field.column, view, have),
            hint=missing_column_fix(field.column),
            obj=model,
            id="django_pgviews_c.W007",
        )
        for field in model._meta.concrete_fields
        if field.column not in have and not field.auto_created
    ]


#: Set while the migrate command runs the system checks before migrations whose post_migrate
#: sync reports every field a view lacks: W007 is left to it.
_SYNC_FOLLOWS: contextvars.ContextVar[bool] = contextvars.ContextVar("pgviews_sync_follows", default=False)


@contextlib.contextmanager
def sync_follows(follows: bool = True) -> Iterator[None]:
    """The checks run inside it leave W007 to the sync that follows (``follows``)."""
    token = _SYNC_FOLLOWS.set(follows)
    try:
        yield
    finally:
        _SYNC_FOLLOWS.reset(token)


def _unpinned_functions(model: Any, calls: list[tuple[str, str | None]]) -> list[CheckMessage]:
    """W004: a function the materialized view calls (maybe through a view) with no search_path."""
    messages: list[CheckMessage] = []
    for function, via in calls:
        through = f" (through the view {via})" if via else ""
        messages.append(
            CheckWarning(
                f"{model._meta.label}: the materialized view calls {function}{through}, which has no "
                f"search_path of its own. PostgreSQL 17+ runs CREATE and REFRESH MATERIALIZED "
                f"VIEW with search_path = pg_catalog, pg_temp, so unqualified names in its body "
                f"will not be found.",
                hint=(
                    f"ALTER FUNCTION {function} SET search_path = <the schemas its body uses>, "
                    f"or qualify every name in its body and pin search_path = ''."
                ),
                obj=model,
                id="django_pgviews_c.W004",
            )
        )
    return messages


def _undeclared_reads(model: Any, others: list[Any]) -> list[CheckMessage]:
    """W005: views model reads without declaring them (directly or through its dependencies)."""
    return [
        CheckWarning(
            f"{model._meta.label} reads {other._meta.label} ({other._meta.db_table}) without "
            f"declaring it: creating and refreshing them in the right order works "
            f"only while the declaration order happens to be right.",
            hint=f"Add {other._meta.label!r} to {model.__name__}.dependencies.",
            obj=model,
            id="django_pgviews_c.W005",
        )
        for other in others
    ]
