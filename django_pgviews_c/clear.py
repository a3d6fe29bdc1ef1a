"""clear_pgviews: drop the views that belong to one database, dependants first, explicitly.

Nothing is dropped with CASCADE. The catalog says, before anything is dropped, which objects
read the views; one this app does not manage (a user's own view over ours) makes the command
refuse, naming it, unless ``cascade`` is given, in which case it is dropped too, explicitly and
by name. Everything happens in one transaction, under the lock that serialises syncs, with the
removal of the exact mode's triggers the dropped views needed."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import DEFAULT_DB_ALIAS, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper

from django_pgviews_c import _core
from django_pgviews_c.db.migrations.operations import drop_relation_sql
from django_pgviews_c.dberrors import ensure_connected
from django_pgviews_c.declarations import read_catalog, view_models
from django_pgviews_c.exact import sync_exact
from django_pgviews_c.exceptions import DependantObjectError, PlanError
from django_pgviews_c.view import View

__all__ = ["Doomed", "clear_views", "doomed_by"]

#: Key of the advisory lock that serialises syncs (sync.ADVISORY_LOCK_KEY).
_LOCK_KEY = 0x70677669657773

_KINDS = {"v": "view", "m": "materialized view"}


@dataclass(frozen=True)
class Doomed:
    """One object clear_pgviews drops: ``label`` is the model's, or None for an object this app
    does not manage (dropped only with ``cascade``)."""

    schema: str
    name: str
    kind: str  # 'v' or 'm'
    label: str | None
    reads: tuple[str, ...] = ()  # for an unmanaged object: what it reads among the objects going

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    def describe(self) -> str:
        if self.label:
            return f"{self.label} ({self.qualified}, {_KINDS[self.kind]})"
        reads = ", ".join(self.reads)
        return f"{self.qualified} ({_KINDS[self.kind]} not managed by django-pgviews-c, reads {reads})"


def _by_connection(using: str) -> dict[str, tuple[BaseDatabaseWrapper, list[type[View]]]]:
    found: dict[str, tuple[BaseDatabaseWrapper, list[type[View]]]] = {}
    for model in view_models():
        conn = model.get_view_connection(using=using, restricted_mode=True)
        if conn is not None:
            found.setdefault(conn.alias, (conn, []))[1].append(model)
    return found


def _doomed(
    cursor: CursorWrapper, models: Sequence[type[View]], cascade: bool
) -> tuple[list[Doomed], list[Doomed]]:
    """What dropping ``models`` takes, dependants first: (drop list, unmanaged dependants). The
    new versions of deferred rebuilds waiting beside them go first (nothing reads them)."""
    targets = {_core.split_table(m._meta.db_table): m._meta.label for m in models}
    drop, unmanaged = doomed_by(cursor, targets, targets, cascade)
    return _pending_versions(cursor, targets) + drop, unmanaged


#: How the stamp of a deferred rebuild's waiting version ends its marker line (csrc/ddl.c).
_PENDING_MARK = " pending=1 "


def _pending_versions(cursor: CursorWrapper, targets: dict[tuple[str | None, str], str]) -> list[Doomed]:
    """The waiting new versions of deferred rebuilds (csrc/plan_defer.c) of ``targets``: a
    materialized view beside each, under the derived name, whose stamp says pending=1."""
    pending = {(s, _core.derived_name(n, "_pgvc_pending")): label for (s, n), label in targets.items()}
    nodes, current = _catalog_nodes(cursor, list(pending))
    if not nodes:
        return []
    wanted = {(s or current, n): label for (s, n), label in pending.items()}
    return [
        Doomed(r[1], r[2], "m", f"{wanted[(r[1], r[2])]} (its pending rebuild)")
        for r in nodes
        if (r[1], r[2]) in wanted and r[3] == "m" and _PENDING_MARK in (r[4] or "")
    ]


def _catalog_nodes(
    cursor: CursorWrapper, split: list[tuple[str | None, str]]
) -> tuple[list[Any], str | None]:
    """The catalog's rows of objects (the sync's one query) for the relations ``split``
    ((schema or None, name)), and the connection's current schema (None when there are none)."""
    rows = read_catalog(
        cursor,
        {
            "decl_schemas": [s for s, _ in split],
            "decl_names": [n for _, n in split],
            "schemas": sorted({s for s, _ in split if s}),
            "restore": False,
        },
    )
    nodes = [r for r in rows if r[0] is not None]
    return nodes, (nodes[0][15] if nodes else None)


def doomed_by(
    cursor: CursorWrapper,
    targets: dict[tuple[str | None, str], str],
    known: dict[tuple[str | None, str], str],
    cascade: bool,
) -> tuple[list[Doomed], list[Doomed]]:
    """What dropping the objects ``targets`` ((schema or None, name) -> label) takes, dependants
    first: (drop list, unmanaged dependants). A dependant named in ``known`` (same keys) is
    managed: it is dropped with them (the sync re-creates it); any other is unmanaged, dropped
    only with ``cascade``."""
    split = list(targets)
    nodes, current = _catalog_nodes(cursor, split)
    if not nodes:
        return [], []
    labels = {(s or current, n): label for (s, n), label in known.items()}
    wanted = {(s or current, n) for s, n in split}
    by_oid = {r[0]: k for k, r in enumerate(nodes)}
    names = [str(k) for k in range(len(nodes))]
    deps = [[str(by_oid[o]) for o in r[12] if o in by_oid] for r in nodes]
    graph = _core.Graph(names, deps)
    starts = [k for k, r in enumerate(nodes) if (r[1], r[2]) in wanted]
    if not starts:
        return [], []
    reached = set(graph.dependants(starts, include_self=True))
    managed_set = {k for k in reached if (nodes[k][1], nodes[k][2]) in labels or k in starts}

    def doomed(k: int) -> Doomed:
        r = nodes[k]
        label = labels.get((r[1], r[2]))
        reads: tuple[str, ...] = ()
        if k not in managed_set:
            # What it reads directly: a managed view, or another object that is going too.
            reads = tuple(
                f"{nodes[j][1]}.{nodes[j][2]}"
                for j in (by_oid[o] for o in r[12] if o in by_oid)
                if j in reached
            )
        return Doomed(r[1], r[2], r[3], label, reads)

    unmanaged = [doomed(k) for k in graph.order() if k in reached and k not in managed_set]
    drop = [doomed(k) for k in reversed(graph.order()) if k in (reached if cascade else managed_set)]
    return drop, unmanaged


def _refuse(alias: str, unmanaged: list[Doomed]) -> DependantObjectError:
    return DependantObjectError(
        f"clear_pgviews would drop {len(unmanaged)} objects of database {alias!r} that "
        f"django-pgviews-c does not manage, as they read its views: "
        + "; ".join(d.describe() for d in unmanaged)
        + ". Drop them first, or run clear_pgviews --cascade to drop them too. Nothing was changed.",
        [(d.schema, d.name, ", ".join(d.reads), d.kind) for d in unmanaged],
    )


def clear_views(
    using: str = DEFAULT_DB_ALIAS,
    *,
    cascade: bool = False,
    confirm: Callable[[str, list[Doomed]], bool] | None = None,
    progress: Callable[[Doomed], None] | None = None,
    untriggered: Callable[[str], None] | None = None,
) -> list[Doomed] | None:
    """Drop every view that belongs to database ``using`` (routers decide, as for the sync),
    dependants first, in one transaction. Raises DependantObjectError, changing nothing, when
    an object this app does not manage reads one of them, unless ``cascade``. ``confirm`` is
    asked with the alias and the drop list before anything is dropped; False cancels (returns
    None). In the same transaction the exact mode's triggers (and counters) go from the tables
    no remaining view of ours reads, as the next sync would take them (exact.py); a role that
    may not drop one gets PlanError naming it, and nothing is dropped. ``untriggered`` is told
    each such table. Returns the views dropped."""
    dropped: list[Doomed] = []
    for conn, models in _by_connection(using).values():
        ensure_connected(conn)
        expected = None
        if confirm is not None:
            # Asked outside the transaction: no lock is held while a person reads the list.
            with conn.cursor() as cursor:
                expected, unmanaged = _doomed(cursor, models, cascade)
            if unmanaged and not cascade:
                raise _refuse(conn.alias, unmanaged)
            if expected and not confirm(conn.alias, expected):
                return None
        with transaction.atomic(using=conn.alias), conn.cursor() as cursor:
            cursor.execute("SELECT pg_catalog.pg_advisory_xact_lock(%s)", [_LOCK_KEY])
            drop, unmanaged = _doomed(cursor, models, cascade)
            if unmanaged and not cascade:
                raise _refuse(conn.alias, unmanaged)
            if expected is not None and drop != expected:
                raise PlanError(
                    f"the views of database {conn.alias!r} changed while waiting for confirmation; "
                    f"nothing was changed: run clear_pgviews again"
                )
            for d in drop:
                cursor.execute(drop_relation_sql(d.schema, d.name, d.kind == "m", cascade=False))
                if progress is not None:
                    progress(d)
            # The views are gone: the triggers that counted writes for them would count on.
            for table in sync_exact(cursor, models).dropped:
                if untriggered is not None:
                    untriggered(table)
            dropped += drop
    return dropped
