"""Model fields against the columns of their views. The planner compares each field with the
view's columns (name, and type family) and returns what differs; after a sync creates or adopts
views, those problems are a warning, or with PGVIEWS_STRICT_COLUMNS = True an error that rolls
the whole sync back."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

from django_pgviews_c.declarations import setting
from django_pgviews_c.exceptions import PlanError

__all__ = ["ColumnProblem", "column_problems", "report_column_problems"]

logger = logging.getLogger("django_pgviews_c.sync_pgviews")


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
        return f"{self.label}: {self.detail}"


def column_problems(labels: Sequence[str], found: Sequence[Any]) -> list[ColumnProblem]:
    """The planner's column rows (declaration, field, column, field type, column type, view
    columns) as ColumnProblems named by label."""
    return [ColumnProblem(labels[row[0]], *row[1:]) for row in found]


def report_column_problems(
    problems: Sequence[ColumnProblem], labels: Collection[str], say: Callable[[str, int], None]
) -> None:
    """The problems of the views named in ``labels``: logged and said as warnings, or with
    PGVIEWS_STRICT_COLUMNS = True a PlanError naming all of them."""
    problems = [p for p in problems if p.label in labels]
    if not problems:
        return
    if setting("PGVIEWS_STRICT_COLUMNS", False):
        raise PlanError(
            "\n".join(p.message for p in problems)
            + "\nPGVIEWS_STRICT_COLUMNS is on: nothing was changed. Fix the view's SQL or the model."
        )
    for problem in problems:
        logger.warning("%s", problem.message)
        say(f"warning: {problem.message}", 1)
