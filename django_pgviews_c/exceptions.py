"""Exceptions of django-pgviews-c. The C core raises these same classes.

Every error is a ``PGViewsError``; the two that django-pgviews-redux defines keep their names.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "PGViewsError",
    "SQLNotDefinedError",
    "ConcurrentIndexNotDefinedError",
    "RefreshIntervalError",
    "DependencyError",
    "CycleError",
    "MissingDependencyError",
    "InvalidNameError",
    "PlanError",
    "DependantObjectError",
    "ForceRequiredError",
    "DatabaseError",
    "ViewDefinitionError",
    "ConnectionLostError",
    "ConnectionFailedError",
    "QueryCanceledError",
    "LockNotAvailableError",
    "RefreshError",
]


class PGViewsError(Exception):
    """Base class of every error this package raises."""


class SQLNotDefinedError(PGViewsError):
    """A view has neither ``sql`` nor a ``get_sql()`` of its own."""


class QuerySetViewError(SQLNotDefinedError):
    """A view's QuerySet cannot become a view (``.none()``, a slice with an offset ...)."""


class ConcurrentIndexNotDefinedError(PGViewsError):
    """``refresh(concurrently=True, strict=True)`` on a view without ``concurrent_index``."""


class RefreshIntervalError(PGViewsError, TypeError):
    """A materialized view's ``refresh_interval`` is not a ``datetime.timedelta`` of 0 or more
    (the system check django_pgviews_c.E007 says so before any command runs). A TypeError too,
    as it was before it was a PGViewsError."""


class DependencyError(PGViewsError):
    """The declared dependencies cannot be ordered. Found before anything reaches the database."""


class CycleError(DependencyError):
    def __init__(self, path: Sequence[str]) -> None:
        self.path = list(path)
        super().__init__("dependency cycle: " + " -> ".join(self.path))


class MissingDependencyError(DependencyError):
    def __init__(self, view: str, dependency: str) -> None:
        self.view = view
        self.dependency = dependency
        super().__init__(
            f"{view} depends on {dependency}, which is not a known view "
            f"(dependencies name views as 'app_label.ModelName')"
        )


class InvalidNameError(PGViewsError):
    """A name PostgreSQL cannot take. ``what`` names the argument that held it (``db_table``,
    ``schema``, ``tables[2]`` ...); ``name`` is its whole value."""

    def __init__(self, name: str, why: str, what: str = "db_table") -> None:
        self.name = name
        self.why = why
        self.what = what
        super().__init__(f"invalid {what} {name!r}: {why}")


class PlanError(PGViewsError):
    """The sync cannot be planned: nothing was changed."""

    def __init__(self, message: str, details: Any = None) -> None:
        self.details = details
        super().__init__(message)


class DependantObjectError(PlanError):
    """Objects this app does not manage depend on views that must be dropped.

    ``details`` lists ``(schema, name, blocking view, relkind)``."""


class ForceRequiredError(PlanError):
    """A view's new columns are incompatible with the old ones; ``--force`` re-creates it."""


class DatabaseError(PGViewsError):
    """The server refused a statement. Carries the server's fields and what was being done."""

    def __init__(
        self,
        message: str,
        *,
        sqlstate: str | None = None,
        detail: str | None = None,
        hint: str | None = None,
        position: int | None = None,
        view: str | None = None,
    ) -> None:
        self.message = message.strip()
        self.sqlstate = sqlstate
        self.detail = detail
        self.hint = hint
        self.position = position
        self.view = view
        super().__init__(self._text())

    def _text(self) -> str:
        text = self.message
        if self.view:
            text = f"{self.view}: {text}"
        if self.sqlstate:
            text += f" (SQLSTATE {self.sqlstate})"
        if self.detail:
            text += f"\nDETAIL: {self.detail}"
        if self.hint:
            text += f"\nHINT: {self.hint}"
        return text


class ViewDefinitionError(DatabaseError):
    """A view's SQL was refused by the server. ``position`` is within the view's own SQL."""

    def __init__(self, message: str, *, sql: str | None = None, **kwargs: Any) -> None:
        self.sql = sql
        super().__init__(message, **kwargs)

    def _text(self) -> str:
        text = super()._text()
        if self.sql is not None and self.position:
            line_no, col, line = _locate(self.sql, self.position)
            text += f"\nat line {line_no}, column {col} of its SQL:\n  {line}\n  {' ' * (col - 1)}^"
        return text


class ConnectionLostError(DatabaseError):
    """The connection to the server was lost; the server rolled back the open transaction."""


class ConnectionFailedError(DatabaseError):
    """No connection to the server could be opened; the message carries the driver's reason.
    Nothing was sent, so nothing was changed."""


class QueryCanceledError(DatabaseError):
    """A statement was cancelled (Ctrl-C, statement_timeout)."""


class LockNotAvailableError(DatabaseError):
    """A lock could not be had within the bounded wait; the message names the session holding
    it. The transaction was rolled back: nothing was changed."""


class RefreshError(PGViewsError):
    """One or more materialized views failed to refresh; ``failures`` maps label -> error."""

    def __init__(self, failures: dict[str, str], skipped: Sequence[str] = ()) -> None:
        self.failures = dict(failures)
        self.skipped = list(skipped)
        lines = [f"{label}: {err}" for label, err in self.failures.items()]
        # A failure carries the server's DETAIL and HINT on lines of their own: one failure a line.
        several = len(lines) > 1 and any("\n" in line for line in lines)
        text = "refresh failed for " + ("\n".join(lines) if several else "; ".join(lines))
        if self.skipped:
            text += "\nnot refreshed, as they depend on a failed view: " + ", ".join(self.skipped)
        super().__init__(text)


def _locate(sql: str, position: int) -> tuple[int, int, str]:
    """1-based (line, column, line text) of a 1-based character position in sql."""
    before = sql[: max(position - 1, 0)]
    line_no = before.count("\n") + 1
    start = before.rfind("\n") + 1
    end = sql.find("\n", start)
    line = sql[start : end if end >= 0 else len(sql)]
    return line_no, position - start, line
