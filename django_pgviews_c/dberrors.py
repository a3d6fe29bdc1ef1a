"""What a database error means: its SQLSTATE and diagnostics, and whether the connection it
came from is gone. Shared by sync, refresh and the commands."""

from __future__ import annotations

from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper

from django_pgviews_c.exceptions import ConnectionLostError

__all__ = ["sqlstate", "diag", "connection_is_lost", "lost_connection_error"]


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


def connection_is_lost(connection: BaseDatabaseWrapper, exc: BaseException) -> bool:
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


def lost_connection_error(connection: BaseDatabaseWrapper, doing: str) -> ConnectionLostError:
    return ConnectionLostError(
        f"the connection to database {connection.alias!r} was lost while {doing}; the server "
        f"rolled back the open transaction, so nothing was changed",
        sqlstate="08006",
    )


# Names kept for callers of the module before the split.
_sqlstate = sqlstate
_diag = diag
