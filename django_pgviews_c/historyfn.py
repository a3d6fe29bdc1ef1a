"""The refresh history's server-side functions: ``django_pgviews_c_capture`` and
``django_pgviews_c_record``, created by the app's migration 0004 beside the history table, and
``django_pgviews_c_record_run``, created by 0005, on every database that holds it
(history.history_allowed).

A recorded ``Model.refresh()`` outside a transaction calls them in its one round trip instead of
sending the capture's catalog query and the record's statement as text: static SQL in PL/pgSQL
is planned once per server backend, which a client's prepared statement could not promise
behind PgBouncer's transaction pooling. Their text is the core's (``_core.query_sql
("history_functions")``, csrc/historyfn.c).

Where they are missing (the migration not applied on that database, or migrated back), the
first call on a connection fails with undefined_function (42883) before anything else ran: that
connection then sends the script of before (``uses_functions`` says which), at no cost to the
refreshes that follow. The same holds for ``django_pgviews_c_record_run``, which writes the
records of a refresh_views() run (runhistory.py), each group of functions on its own: a database
migrated to 0004 but not to 0005 keeps the one round trip of Model.refresh() with its functions.

``django_pgviews_c_refresh`` (migration 0007, with the capture and record it nests) does a whole
Model.refresh() in one call, recorded or not (refreshfn.py); where it is missing, the one round
trip above."""

from __future__ import annotations

__all__ = [
    "CreateHistoryFunctions", "CreateHistoryRunFunction", "ReplaceHistoryFunctions",
    "CreateHistoryRefreshFunction", "ReplaceHistoryRefreshFunction", "PRUNE_SLACK",
    "uses_functions", "forget_functions",
    "missing_function",
]  # fmt: skip

import weakref
from typing import Any

from django.db import migrations
from django.db.backends.base.base import BaseDatabaseWrapper

from django_pgviews_c import _core
from django_pgviews_c.dberrors import diag

#: A view's records beyond PGVIEWS_HISTORY_KEEP that the record function lets accumulate before
#: it deletes them: it deletes once every PRUNE_SLACK refreshes, not on every one.
PRUNE_SLACK = 10

#: The functions of each use: "refresh", Model.refresh()'s one round trip (migration 0004);
#: "run", the records of a refresh_views() run (0005).
_NAMES = {
    "refresh": ("django_pgviews_c_capture", "django_pgviews_c_record"),
    "run": ("django_pgviews_c_record_run",),
    "single": ("django_pgviews_c_refresh",),
}
_EXACT_TABLE = "django_pgviews_c_exact"

# The driver connections (by identity, while they live) on which a use's functions are missing.
_without: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()
_without_ids: set[tuple[int, str]] = set()  # drivers whose connections take no weak references


def uses_functions(connection: BaseDatabaseWrapper, use: str = "refresh") -> bool:
    """Whether ``use`` ("refresh" or "run") on ``connection`` calls its functions (until one is
    found missing on its current driver connection)."""
    raw = connection.connection
    try:
        return use not in _without.get(raw, ())
    except TypeError:
        return (id(raw), use) not in _without_ids


def forget_functions(connection: BaseDatabaseWrapper, use: str = "refresh") -> None:
    """The functions of ``use`` are missing on ``connection``'s driver connection: send the
    statements as text there from now on. A new connection (after a reconnect) tries them again."""
    raw = connection.connection
    try:
        _without.setdefault(raw, set()).add(use)
    except TypeError:
        _without_ids.add((id(raw), use))


def missing_function(exc: BaseException, use: str = "refresh") -> bool:
    """Whether ``exc`` says that one of the functions of ``use`` does not exist."""
    info = diag(exc)
    message = info["message"] or ""
    return info["sqlstate"] == "42883" and any(f"{name}(" in message for name in _NAMES[use])


def _schemas(schema_editor: Any) -> tuple[str | None, str | None]:
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(_core.query_sql("history_schemas"))
        row = cursor.fetchone()
    return row[0], row[1]


def _send(schema_editor: Any, query: _core.QueryName, *, counter: bool = False) -> None:
    """The core's ``query`` for the history table's schema (with the exact mode's counter table
    when ``counter``); nothing where the table is not there (faked migrations)."""
    schema, counter_schema = _schemas(schema_editor)
    if schema is None:
        return
    table = _core.qualified_name(counter_schema or schema, _EXACT_TABLE) if counter else None
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(_core.query_sql(query, schema=schema, table=table))


def create_functions(apps: Any, schema_editor: Any) -> None:
    """Migration 0004 forwards: both functions, in the history table's schema."""
    _send(schema_editor, "history_functions", counter=True)


def drop_functions(apps: Any, schema_editor: Any) -> None:
    """Migration 0004 backwards."""
    _send(schema_editor, "history_drop_functions")


def create_run_function(apps: Any, schema_editor: Any) -> None:
    """Migration 0005 forwards: the run's record function, in the history table's schema."""
    _send(schema_editor, "history_run_function")


def drop_run_function(apps: Any, schema_editor: Any) -> None:
    """Migration 0005 backwards."""
    _send(schema_editor, "history_drop_run_function")


class CreateHistoryFunctions(migrations.RunPython):
    """Creates the functions forwards and drops them backwards, on every database that holds the
    history table (history.history_allowed, as CreateHistoryModel), whatever the routers say of
    this app."""

    def __init__(self) -> None:
        super().__init__(create_functions, drop_functions, elidable=False)

    def database_forwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        from django_pgviews_c.history import history_allowed

        if history_allowed(schema_editor.connection.alias):
            self.code(from_state.apps, schema_editor)

    def database_backwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        from django_pgviews_c.history import history_allowed

        if history_allowed(schema_editor.connection.alias) and self.reverse_code is not None:
            self.reverse_code(from_state.apps, schema_editor)

    def deconstruct(self) -> tuple[str, list[Any], dict[str, Any]]:
        return "django_pgviews_c.historyfn.CreateHistoryFunctions", [], {}


class CreateHistoryRunFunction(CreateHistoryFunctions):
    """As CreateHistoryFunctions, for the function that records a refresh_views() run (0005)."""

    def __init__(self) -> None:
        migrations.RunPython.__init__(self, create_run_function, drop_run_function, elidable=False)

    def deconstruct(self) -> tuple[str, list[Any], dict[str, Any]]:
        return "django_pgviews_c.historyfn.CreateHistoryRunFunction", [], {}


def _keep_functions(apps: Any, schema_editor: Any) -> None:
    """Backwards of a replacement: the functions stay as they are (the earlier migration that
    created them expects them there, and the newer text does the same)."""


class ReplaceHistoryFunctions(CreateHistoryFunctions):
    """Re-creates the capture and record functions with the text of this version, on databases
    that ran migration 0004 with an earlier one (0006: the capture's catalog lookups by index;
    0008: the database's identity in each capture; csrc/freshness.c). Backwards it leaves them."""

    def __init__(self) -> None:
        migrations.RunPython.__init__(self, create_functions, _keep_functions, elidable=False)

    def deconstruct(self) -> tuple[str, list[Any], dict[str, Any]]:
        return "django_pgviews_c.historyfn.ReplaceHistoryFunctions", [], {}


def create_refresh_function(apps: Any, schema_editor: Any) -> None:
    """Migration 0007 forwards: the refresh function and the capture and record it nests, in the
    history table's schema."""
    _send(schema_editor, "history_refresh_function", counter=True)


def drop_refresh_function(apps: Any, schema_editor: Any) -> None:
    """Migration 0007 backwards."""
    _send(schema_editor, "history_drop_refresh_function")


class CreateHistoryRefreshFunction(CreateHistoryFunctions):
    """As CreateHistoryFunctions, for the function that does a Model.refresh() in one call (0007)."""

    def __init__(self) -> None:
        migrations.RunPython.__init__(self, create_refresh_function, drop_refresh_function, elidable=False)

    def deconstruct(self) -> tuple[str, list[Any], dict[str, Any]]:
        return "django_pgviews_c.historyfn.CreateHistoryRefreshFunction", [], {}


class ReplaceHistoryRefreshFunction(CreateHistoryFunctions):
    """Re-creates 0007's refresh function (and the capture it nests) with the text of this
    version, on databases that ran 0007 with an earlier one (0008: the database's identity in
    each capture). Backwards it leaves it."""

    def __init__(self) -> None:
        migrations.RunPython.__init__(self, create_refresh_function, _keep_functions, elidable=False)

    def deconstruct(self) -> tuple[str, list[Any], dict[str, Any]]:
        return "django_pgviews_c.historyfn.ReplaceHistoryRefreshFunction", [], {}
