"""Model fields against the columns of their views. The planner compares each field with the
view's columns (name, and type family) and returns what differs; after a sync creates or adopts
views, those problems are a warning, or with PGVIEWS_STRICT_COLUMNS = True an error that rolls
the whole sync back. A missing column is said at every sync, also of a view left as it was, in
the words of the system check W007 (one text, missing_column_text)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

from django_pgviews_c.declarations import setting
from django_pgviews_c.exceptions import PlanError
from django_pgviews_c.wording import warn

__all__ = ["ColumnProblem", "column_problems", "missing_column_text", "report_column_problems", "to_report"]

logger = logging.getLogger("django_pgviews_c.sync_pgviews")


def missing_column_text(label: str, field: str, column: str, view: str, view_columns: Sequence[str]) -> str:
    """What the sync and the system check W007 say of a field whose column the view lacks: the
    model and field, the view, the column and the columns it has, and what breaks (the fix is
    MISSING_COLUMN_FIX)."""
    return (
        f"{label}.{field}: the view {view} has no column {column!r} (its columns: "
        f"{', '.join(view_columns) or 'none'}); a query that selects the field fails."
    )


def missing_column_fix(column: str) -> str:
    return f"Add a column {column!r} to the view's SQL, or set db_column on the field to a column it has."


@dataclass
class ColumnProblem:
    """A model field whose column the view does not have (column_type None), or has with a type
    of another family than the field's."""

    label: str
    field: str
    column: str
    field_type: str | None
    column_type: str | None
    view_columns: tuple[str, ...]
    view: str = ""  # the view's name, and its database: "t_sales on database 'default'"

    @property
    def detail(self) -> str:
        if self.column_type is None:
            return (
                f"field {self.field!r} reads column {self.column!r}, which the view does not have "
                f"(its columns: {', '.join(self.view_columns) or 'none'})"
            )
        return (
            f"field {self.field!r} ({self.field_type}) reads column {self.column!r} "
            f"of type {self.column_type}"
        )

    @property
    def message(self) -> str:
        if self.column_type is None:
            text = missing_column_text(self.label, self.field, self.column, self.view, self.view_columns)
            return f"{text} {missing_column_fix(self.column)}"
        return f"{self.label}: {self.detail}"


def column_problems(labels: Sequence[str], views: Sequence[str], found: Sequence[Any]) -> list[ColumnProblem]:
    """The planner's column rows (declaration, field, column, field type, column type, view
    columns) as ColumnProblems named by label, their views by ``views`` (by declaration)."""
    return [
        ColumnProblem(labels[decl], field, column, field_type, column_type, view_columns, views[decl])
        for decl, field, column, field_type, column_type, view_columns in found
    ]


def to_report(problems: Sequence[ColumnProblem], labels: Collection[str]) -> list[ColumnProblem]:
    """What a sync says: every problem of the views named in ``labels`` (those it created,
    changed or adopted), and every missing column of the others. A missing column makes every
    query of the model fail, so it is said at each sync until it is fixed, also when the view is
    unchanged (a field added to the model, its SQL left as it was); another type family is said
    once, when the view is built."""
    return [p for p in problems if p.label in labels or p.column_type is None]


def report_column_problems(
    problems: Sequence[ColumnProblem], say: Callable[[str, int], None], *, said: bool
) -> None:
    """``problems`` said as warnings (``said``: ``say`` writes them on the command's output) and
    logged, or with PGVIEWS_STRICT_COLUMNS = True a PlanError naming all of them."""
    if not problems:
        return
    if setting("PGVIEWS_STRICT_COLUMNS", False):
        raise PlanError(
            "\n".join(p.message for p in problems)
            + "\nPGVIEWS_STRICT_COLUMNS is on: nothing was changed. Fix the view's SQL or the model."
        )
    for problem in problems:
        say(f"warning: {problem.message}", 1)
        warn(logger, problem.message, said=said)
