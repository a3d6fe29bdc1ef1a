"""The refresh history's server-side functions: ``django_pgviews_c_capture`` and
``django_pgviews_c_record``, created by the app's migration 0004 beside the history table, on
every database that holds it (history.history_allowed).

A recorded ``Model.refresh()`` outside a transaction calls them in its one round trip instead of
sending the capture's catalog query and the record's statement as text: static SQL in PL/pgSQL
is planned once per server backend, which a client's prepared statement could not promise
behind PgBouncer's transaction pooling. Their text is the core's (``_core.query_sql
("history_functions")``, csrc/historyfn.c).

Where they are missing (the migration not applied on that database, or migrated back), the
first call on a connection fails with undefined_function (42883) before anything else ran: that
connection then sends the script of before (``uses_functions`` says which), at no cost to the
refreshes that follow."""

from __future__ import annotations

__all__ = ["CreateHistoryFunctions", "PRUNE_SLACK", "uses_functions", "forget_functions", "missing_function"]

import weakref
from typing import Any

from django.db import migrations
from django.db.backends.base.base import BaseDatabaseWrapper

from django_pgviews_c import _core
from django_pgviews_c.dberrors import diag

#: A view's records beyond PGVIEWS_HISTORY_KEEP that the record function lets accumulate before
#: it deletes them: it deletes once every PRUNE_SLACK refreshes, not on every one.
PRUNE_SLACK = 10

_NAMES = ("django_pgviews_c_capture", "django_pgviews_c_record")
_EXACT_TABLE = "django_pgviews_c_exact"

# The driver connections (by identity, while they live) on which the functions are missing.
_without: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()
_without_ids: set[int] = set()  # drivers whose connections take no weak references


def uses_functions(connection: BaseDatabaseWrapper) -> bool:
    """Whether the one round trip on ``connection`` calls the functions (until one is found
    missing on its current driver connection)."""
    raw = connection.connection
    try:
        return raw not in _without
    except TypeError:
        return id(raw) not in _without_ids


def forget_functions(connection: BaseDatabaseWrapper) -> None:
    """The functions are missing on ``connection``'s driver connection: send the script of
    before there from now on. A new connection (after a reconnect) tries them again."""
    raw = connection.connection
    try:
        _without[raw] = True
    except TypeError:
        _without_ids.add(id(raw))


def missing_function(exc: BaseException) -> bool:
    """Whether ``exc`` says that one of the functions does not exist."""
    info = diag(exc)
    return info["sqlstate"] == "42883" and any(name in (info["message"] or "") for name in _NAMES)


def _schemas(schema_editor: Any) -> tuple[str | None, str | None]:
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(_core.query_sql("history_schemas"))
        row = cursor.fetchone()
    return row[0], row[1]


def create_functions(apps: Any, schema_editor: Any) -> None:
    """Migration 0004 forwards: both functions, in the history table's schema."""
    schema, counter_schema = _schemas(schema_editor)
    if schema is None:  # the table is not there (faked migrations): nothing to call
        return
    counter = _core.qualified_name(counter_schema or schema, _EXACT_TABLE)
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(_core.query_sql("history_functions", schema=schema, table=counter))


def drop_functions(apps: Any, schema_editor: Any) -> None:
    """Migration 0004 backwards."""
    schema, _ = _schemas(schema_editor)
    if schema is not None:
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(_core.query_sql("history_drop_functions", schema=schema))


class CreateHistoryFunctions(migrations.RunPython):
    """Creates the functions forwards and drops them backwards, on every database that holds the
    history table (history.history_allowed, as CreateHistoryModel), whatever the routers say of
    this app."""

    def __init__(self) -> None:
        super().__init__(create_functions, drop_functions, elidable=False)

    def database_forwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        from django_pgviews_c.history import history_allowed

        if history_allowed(schema_editor.connection.alias):
            create_functions(from_state.apps, schema_editor)

    def database_backwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        from django_pgviews_c.history import history_allowed

        if history_allowed(schema_editor.connection.alias):
            drop_functions(from_state.apps, schema_editor)

    def deconstruct(self) -> tuple[str, list[Any], dict[str, Any]]:
        return "django_pgviews_c.historyfn.CreateHistoryFunctions", [], {}
