"""What ``sync_pgviews --plan`` shows besides the plan: the sizes of the objects it rebuilds, and
the plan the rehearsal ran merged with what only the first plan touched. The rehearsal itself
(the plan run WITH NO DATA in a transaction always rolled back) is Syncer._rehearse in sync.py."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django_pgviews_c import _core
from django_pgviews_c.syncresult import Action

__all__ = ["merge_plans", "existing_sizes", "unpinned_calls"]

# The existing objects a plan rebuilds: kind, estimated rows, total size with indexes.
_SIZES_SQL = _core.query_sql("sync_sizes")
# The declared views' columns, reads and calls (check W004's query); only the calls are used here.
_CHECKS_SQL = _core.query_sql("database_checks")
# Since PostgreSQL 17, CREATE and REFRESH MATERIALIZED VIEW run with search_path = pg_catalog, pg_temp.
_RESTRICTED_SEARCH_PATH = 170000


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


def unpinned_calls(
    connection: Any, cursor: Any, models: Sequence[Any], actions: Sequence[Action]
) -> dict[str, list[tuple[str, str | None]]]:
    """On PostgreSQL 17+, in the rehearsal's transaction after its plan ran: label -> (function,
    the plain view it is called through or None) of the functions with no search_path of their
    own that each materialized view the plan touched calls. A rehearsal builds WITH NO DATA and
    never runs them; the real sync does, with the restricted search_path, where a name their
    body does not qualify is not found (check W004 says the same of views that exist)."""
    if int(getattr(connection, "pg_version", 0) or 0) < _RESTRICTED_SEARCH_PATH:
        return {}
    touched = sorted({a.decl for a in actions if 0 <= a.decl < len(models)})
    if not touched:
        return {}
    names = [_core.qualified_name(*_core.split_table(models[i]._meta.db_table)) for i in touched]
    cursor.execute(_CHECKS_SQL, [names])
    found: dict[str, list[tuple[str, str | None]]] = {}
    for kind, idx, function, via in cursor.fetchall():
        if kind == "calls":
            label = models[touched[int(idx) - 1]]._meta.label
            found.setdefault(label, []).append((function, via))
    return {label: sorted(calls, key=lambda c: (c[1] or "", c[0])) for label, calls in found.items()}
