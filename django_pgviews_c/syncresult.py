"""What a sync planned and did: the planned statements (Action) and one database's outcome
(SyncResult), shared by the sync's parts and returned to the commands."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django_pgviews_c.columns import ColumnProblem
from django_pgviews_c.exact import ExactChanges
from django_pgviews_c.exceptions import PGViewsError

__all__ = ["Action", "SyncResult"]


@dataclass
class Action:
    """One planned statement. The core returns each as a named record (``_core.PlanAction``,
    whose fields are the one definition of this contract); this mirror adds type hints and is
    filled by name, never by position."""

    op: str
    decl: int
    sql: str
    lock: str
    target: str
    phase: int
    sql_offset: int
    #: it computes a declared materialized view's data (WITH DATA, or a REFRESH): a refresh the
    #: history records (synchistory.py)
    populates: bool = False

    @classmethod
    def from_tuple(cls, t: Any) -> Action:
        return cls(**{name: getattr(t, name) for name in cls.__dataclass_fields__})


@dataclass
class SyncResult:
    """What one sync of one database did."""

    using: str
    statuses: dict[str, str] = field(default_factory=dict)  # label -> status
    reasons: dict[str, str] = field(default_factory=dict)  # label -> why it was touched
    states: dict[str, str] = field(default_factory=dict)  # label -> state code (pgviews_status)
    # (schema.name, relkind) of the objects with our stamp that no declaration claims
    orphans: list[tuple[str, str]] = field(default_factory=list)
    # Fields whose column the view lacks or has with another type: ColumnProblem each
    column_problems: list[ColumnProblem] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    seconds: float = 0.0
    catalog_queries: int = 0
    touched: set[str] = field(default_factory=set)  # labels an action was (or would be) run for
    names: dict[str, str] = field(default_factory=dict)  # label -> quoted qualified name
    #: label -> (seconds, rows; -1 when not known) of computing each materialized view's data
    timings: dict[str, tuple[float, int]] = field(default_factory=dict)
    #: --plan: what a rehearsal of the plan (run, then rolled back) raised; None when it passed
    error: PGViewsError | None = None
    #: --plan: label -> (quoted qualified name, relkind, estimated rows, bytes) of the objects
    #: that exist and that the plan rebuilds or re-populates
    sizes: dict[str, tuple[str, str, int, int]] = field(default_factory=dict)
    #: --plan on PostgreSQL 17+: label -> (function, the plain view it is called through or None)
    #: of the functions without a search_path of their own that each materialized view the
    #: rehearsal built calls; the rehearsal (WITH NO DATA) never ran them
    unpinned: dict[str, list[tuple[str, str | None]]] = field(default_factory=dict)
    #: the exact mode's triggers this sync created and dropped (exact.py)
    exact: ExactChanges = field(default_factory=ExactChanges)

    @property
    def changed(self) -> list[str]:
        """Views this sync touched: created, updated, re-created, re-populated or re-indexed."""
        return [
            label
            for label, status in self.statuses.items()
            if status not in ("EXISTS", "FORCE_REQUIRED") or label in self.touched
        ]
