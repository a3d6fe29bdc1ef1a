"""What a database error means: its SQLSTATE and diagnostics, and whether the connection it
came from is gone. Shared by sync, refresh and the commands."""

from __future__ import annotations

import contextlib
import sys
import threading
from typing import Any

from django.db import Error as DjangoDBError
from django.db.backends.base.base import BaseDatabaseWrapper

from django_pgviews_c.exceptions import ConnectionFailedError, ConnectionLostError, DatabaseError

__all__ = [
    "sqlstate",
    "diag",
    "error_context",
    "connection_is_lost",
    "lost_connection_error",
    "is_connect_failure",
    "connect_failed_error",
    "ensure_connected",
    "wait_until_reachable",
    "database_error",
    "describe",
    "describe_result",
    "execute_script",
]


def sqlstate(exc: BaseException) -> str | None:
    cause = exc.__cause__ or exc
    return getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)


def diag(exc: BaseException) -> dict[str, Any]:
    cause = exc.__cause__ or exc
    diag = getattr(cause, "diag", None)
    position = getattr(diag, "statement_position", None)
    return {
        "message": getattr(diag, "message_primary", None) or str(cause).strip().splitlines()[0],
        "sqlstate": sqlstate(exc),
        "detail": getattr(diag, "message_detail", None),
        "hint": getattr(diag, "message_hint", None),
        "position": int(position) if position else None,
    }


def error_context(exc: BaseException) -> str:
    """The server's CONTEXT of a database error (the functions and statements it came through,
    innermost first; "" without one): psycopg 3's and psycopg2's diag both carry it."""
    cause = exc.__cause__ or exc
    return getattr(getattr(cause, "diag", None), "context", None) or ""


def database_error(exc: BaseException, view: str | None = None) -> DatabaseError:
    """A driver (or Django) error as our DatabaseError: message, SQLSTATE, DETAIL and HINT."""
    info = diag(exc)
    info.pop("position")
    return DatabaseError(info.pop("message"), view=view, **info)


def describe(exc: BaseException) -> str:
    """A database error in one text with the server's DETAIL and HINT lines."""
    return str(database_error(exc))


def describe_result(error: dict[str, Any] | None) -> str:
    """The same text for an error reported by the C core (its dict of the server's fields)."""
    if not error:
        return "failed"
    return str(
        DatabaseError(
            error.get("message") or "failed",
            sqlstate=error.get("sqlstate"),
            detail=error.get("detail"),
            hint=error.get("hint"),
        )
    )


def execute_script(cursor: Any, sql: str, params: Any = None) -> Any:
    """Run ``sql``, several statements in one string, on Django's ``cursor``; returns the cursor
    to read the results from. With parameters, psycopg 3's server-side binding (OPTIONS
    ``server_side_binding``) sends the string as one prepared statement, which the server
    refuses for several commands: a client-side cursor of the driver on the same connection
    (the same session and transaction) binds them instead. Without parameters every cursor
    sends the simple protocol, which takes several statements."""
    raw = getattr(cursor, "cursor", None)
    if params is None or raw is None or not _binds_server_side(raw):
        cursor.execute(sql, params)
        return cursor
    import psycopg

    client = psycopg.ClientCursor(raw.connection)
    with cursor.db.wrap_database_errors:
        client.execute(sql, params)
    return client


def _binds_server_side(raw: Any) -> bool:
    module = type(raw).__module__ or ""
    if not module.startswith(("psycopg.", "django.db.backends.postgresql")):
        return False  # psycopg2 always binds on the client
    import psycopg

    return not isinstance(raw, psycopg.ClientCursor)


def is_connect_failure(exc: BaseException) -> bool:
    """Whether ``exc`` was raised while opening a connection (it never was open)."""
    tb = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_name == "get_new_connection" and "django" in code.co_filename:
            return True
        tb = tb.tb_next
    return False


def _driver_reason(exc: BaseException) -> str:
    cause = exc.__cause__ or exc
    return " ".join(line.strip() for line in str(cause).strip().splitlines() if line.strip())


def connect_failed_error(alias: str, exc: BaseException) -> ConnectionFailedError:
    """The driver's own reason for not connecting (no such database, authentication failed,
    connection refused...), naming the alias."""
    return ConnectionFailedError(
        f"cannot connect to database {alias!r}: {_driver_reason(exc)}", sqlstate=sqlstate(exc)
    )


def ensure_connected(connection: BaseDatabaseWrapper) -> None:
    """Open ``connection`` now, so a database that cannot be reached is reported as such (with
    the driver's reason) and never as a connection lost in the middle of the work."""
    try:
        if connection.connection is None:
            wait_until_reachable(connection)
        connection.ensure_connection()
    except DjangoDBError as exc:
        raise connect_failed_error(connection.alias, exc) from exc


def wait_until_reachable(connection: BaseDatabaseWrapper) -> None:
    """Connect once in a thread of its own, the main thread waiting where a signal reaches it.

    psycopg2's connect is one call into libpq that
    Python's signal handlers cannot interrupt: Ctrl-C or SIGTERM against a server that never
    answers would wait for connect_timeout, or forever without one. Waiting here instead, the
    handler runs at once (the commands' ``interrupts()`` turns it into ``Interrupted``); the
    abandoned attempt ends with the process. Whatever the attempt's outcome, the caller then
    connects as usual, so errors come from the driver as they always do."""
    if threading.current_thread() is not threading.main_thread():
        return
    driver = getattr(connection, "Database", None)  # the backend's DB-API module
    if getattr(driver, "__name__", "") != "psycopg2":
        return  # psycopg 3 waits for the connection in Python: signals reach it

    def attempt() -> None:
        with contextlib.suppress(Exception):  # the caller's own connect reports it
            connection.get_new_connection(connection.get_connection_params()).close()

    probe = threading.Thread(target=attempt, name="pgviews-connect", daemon=True)
    probe.start()
    while probe.is_alive():
        probe.join(0.05)


def connection_is_lost(connection: BaseDatabaseWrapper, exc: BaseException) -> bool:
    if is_connect_failure(exc):
        return True  # the caller's lost_connection_error says it never connected
    state = sqlstate(exc) or ""
    if state.startswith("08") or state in ("57P01", "57P02", "57P03"):
        return True
    raw = connection.connection
    if raw is None or getattr(raw, "closed", False) or getattr(raw, "broken", False):
        return True
    # psycopg2 does not always mark a dropped connection closed; libpq's transaction status is
    # UNKNOWN (4) once the connection is bad.
    status = getattr(raw, "get_transaction_status", None)
    return status is not None and status() == 4


def lost_connection_error(
    connection: BaseDatabaseWrapper, doing: str, exc: BaseException | None = None
) -> ConnectionLostError | ConnectionFailedError:
    """The error for a connection that went away while ``doing``; for one that was never open
    (``exc``, by default the exception being handled, came from connecting), the driver's reason
    for not connecting instead."""
    if exc is None:
        exc = sys.exc_info()[1]
    if exc is not None and is_connect_failure(exc):
        return connect_failed_error(connection.alias, exc)
    return ConnectionLostError(
        f"the connection to database {connection.alias!r} was lost while {doing}; the server "
        f"rolled back the open transaction, so nothing was changed",
        sqlstate="08006",
    )


# Names kept for callers of the module before the split.
_sqlstate = sqlstate
_diag = diag
