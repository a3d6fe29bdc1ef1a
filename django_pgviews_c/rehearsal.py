"""What ``sync_pgviews --plan`` shows besides the plan: the sizes of the objects it rebuilds, and
the plan the rehearsal ran merged with what only the first plan touched. The rehearsal itself
(the plan run WITH NO DATA in a transaction always rolled back) is Syncer._rehearse in sync.py."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django_pgviews_c import _core
from django_pgviews_c.syncresult import Action

__all__ = ["merge_plans", "existing_sizes"]

# The existing objects a plan rebuilds: kind, estimated rows, total size with indexes.
_SIZES_SQL = _core.query_sql("sync_sizes")


def merge_plans(
    first: dict[str, Any],
    first_actions: list[Action],
    ran: dict[str, Any],
    ran_actions: list[Action],
) -> tuple[dict[str, Any], list[Action]]:
    """What --plan shows: the plan the rehearsal ran (its re-plans included: a view that
    turned out to need re-creating shows as such), plus the views only the first plan
    touched (re-populating, which a rehearsal WITH NO DATA leaves out)."""
    touched = {a.decl for a in ran_actions if a.decl >= 0}
    extra = {a.decl for a in first_actions if a.decl >= 0} - touched
    plan = {"statuses": list(ran["statuses"]), "reasons": list(ran["reasons"])}
    for i in extra:
        plan["statuses"][i] = first["statuses"][i]
        plan["reasons"][i] = first["reasons"][i]
    return plan, ran_actions + [a for a in first_actions if a.decl in extra]


def existing_sizes(
    cursor: Any, labels: Sequence[str], names: dict[str, str]
) -> dict[str, tuple[str, str, int, int]]:
    """label -> (quoted qualified name, relkind, estimated rows, bytes) of the declarations whose
    object exists; ``names``: label -> quoted qualified name."""
    labels = list(labels)
    qualified = [names[label] for label in labels]
    if not qualified:
        return {}
    cursor.execute(_SIZES_SQL, [qualified])
    found = {row[0]: row[1:] for row in cursor.fetchall()}
    return {
        label: (name, *found[name]) for label, name in zip(labels, qualified, strict=True) if name in found
    }
