"""Staleness and due-ness of materialized views, from one catalog query.

A materialized view is stale when a relation it reads (directly or through views, down to
tables, foreign tables and other materialized views) had writes since its last successful
refresh began. Each refresh records, when it starts, the relfilenode and the write counter
(``n_tup_ins + n_tup_upd + n_tup_del`` of the cumulative statistics) of every such relation
(history.py); the check compares them with their values now. Every doubt counts as stale:
counters that went down (a reset, a crash), a database whose statistics were reset, relations
without statistics (foreign tables, ``track_counts = off``), a view never refreshed by this app.
"""

from __future__ import annotations

__all__ = ["ViewFreshness", "freshness", "stale_models", "due_models", "closure", "next_due"]

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone

from django_pgviews_c import _core
from django_pgviews_c import view as pg

_CLOSURE_SQL = _core.freshness_sql()


def qualified(model: type[pg.View]) -> str:
    return _core.qualified_name(*_core.split_table(model._meta.db_table))


@dataclass
class Source:
    oid: int
    name: str
    relkind: str
    relfilenode: int
    counter: int | None  # None: no statistics for this relation


@dataclass
class ViewState:
    """What the catalog says of one materialized view now."""

    oid: int | None  # None: the view does not exist
    populated: bool
    stats_reset: str | None
    sources: dict[int, Source] = field(default_factory=dict)

    def snapshot(self) -> dict[str, Any]:
        """The JSON form a refresh record keeps (history.RefreshRecord.sources)."""
        return {
            "populated": self.populated,
            "stats_reset": self.stats_reset,
            "rels": {
                str(s.oid): [s.relfilenode, s.counter, s.relkind, s.name] for s in self.sources.values()
            },
        }


def closure(
    connection: BaseDatabaseWrapper, models: Sequence[type[pg.View]], *, fresh_stats: bool = True
) -> list[ViewState]:
    """One catalog query: for each model, its oid, populated flag and every relation it reads
    with relfilenode and write counter. ``fresh_stats`` drops the statistics snapshot a
    transaction may hold (stats_fetch_consistency), so the counters are read anew."""
    states = [ViewState(None, False, None) for _ in models]
    if not models:
        return states
    with connection.cursor() as cursor:
        if fresh_stats and connection.in_atomic_block:
            cursor.execute("SELECT pg_catalog.pg_stat_clear_snapshot()")
        cursor.execute(_CLOSURE_SQL, [[qualified(m) for m in models]])
        rows = cursor.fetchall()
    for n, oid, name, relkind, relfilenode, counter, populated, stats_reset in rows:
        state = states[n - 1]
        if relkind == "self":
            state.oid, state.populated = oid, bool(populated)
            state.stats_reset = stats_reset.isoformat() if stats_reset is not None else None
        else:
            state.sources[oid] = Source(oid, name, relkind, relfilenode, counter)
    return states


@dataclass
class ViewFreshness:
    label: str
    model: type[pg.View]
    exists: bool
    stale: bool
    reasons: list[str]
    last_ok: Any = None  # history.RefreshRecord of the last successful refresh, or None
    last_failure: Any = None  # the last failed one, when newer than last_ok
    interval: dt.timedelta | None = None
    due: bool = False
    due_at: dt.datetime | None = None  # when a stale view falls due (now or later)

    @property
    def why(self) -> str:
        return "; ".join(self.reasons)


def refresh_interval(model: type[pg.View]) -> dt.timedelta | None:
    interval = getattr(model, "refresh_interval", None)
    if interval is None:
        return None
    if not isinstance(interval, dt.timedelta):
        raise TypeError(
            f"{model._meta.label}.refresh_interval must be a datetime.timedelta, not {interval!r}"
        )
    return interval


def _kind(relkind: str) -> str:
    return {"m": "materialized view", "f": "foreign table", "p": "partitioned table"}.get(relkind, "table")


def judge(
    state: ViewState,
    last_ok: Any,
    refreshed_since: dict[int, dt.datetime],
) -> list[str]:
    """Why a view is stale (empty: fresh). ``refreshed_since`` maps the oid of each materialized
    view this app refreshed to the start of its last successful refresh."""
    if state.oid is None:
        return ["does not exist"]
    if not state.populated:
        return ["not populated"]
    if last_ok is None or not last_ok.sources:
        return ["no successful refresh recorded"]
    snap = last_ok.sources
    reasons = []
    if snap.get("stats_reset") != state.stats_reset:
        reasons.append("the database's statistics were reset")
    rels = snap.get("rels", {})
    for source in state.sources.values():
        name = f"{_kind(source.relkind)} {source.name}"
        if source.counter is None:
            reasons.append(f"{name} has no statistics")
            continue
        before = rels.get(str(source.oid))
        if before is None:
            reasons.append(f"{name} was not read at the last refresh")
            continue
        old_node, old_counter = before[0], before[1]
        if source.relkind == "m":
            started = refreshed_since.get(source.oid)
            if started is not None and started > last_ok.started_at:
                reasons.append(f"{name} was refreshed since")
                continue
        if old_node != source.relfilenode:
            verb = "was refreshed since" if source.relkind == "m" else "was rewritten (TRUNCATE or similar)"
            reasons.append(f"{name} {verb}")
        elif old_counter is None or source.counter < old_counter:
            reasons.append(f"{name}'s statistics were reset")
        elif source.counter > old_counter:
            reasons.append(f"{name} had {source.counter - old_counter} writes")
    return reasons


def freshness(
    models: Iterable[type[pg.View]] | None = None,
    *,
    using: str = DEFAULT_DB_ALIAS,
    now: dt.datetime | None = None,
) -> list[ViewFreshness]:
    """Staleness and due-ness of the materialized views among ``models`` (default: every one
    that belongs to ``using``), in dependency order. Two queries: the catalog and the history."""
    from django_pgviews_c import history

    chosen = history.materialized_models(models, using)
    connection = connections[using]
    states = closure(connection, chosen)
    last_ok, last_any = history.latest(connection, [m._meta.label for m in chosen])
    refreshed_since = {
        state.oid: last_ok[m._meta.label].started_at
        for m, state in zip(chosen, states, strict=True)
        if state.oid is not None and m._meta.label in last_ok
    }
    now = now or timezone.now()
    out = []
    for model, state in zip(chosen, states, strict=True):
        label = model._meta.label
        ok = last_ok.get(label)
        reasons = judge(state, ok, refreshed_since)
        newest = last_any.get(label)
        failure = (
            newest if newest is not None and not newest.ok and (ok is None or newest.id > ok.id) else None
        )
        item = ViewFreshness(
            label=label,
            model=model,
            exists=state.oid is not None,
            stale=bool(reasons),
            reasons=reasons,
            last_ok=ok,
            last_failure=failure,
            interval=refresh_interval(model),
        )
        if item.stale and item.exists and item.interval is not None:
            item.due_at = now if ok is None else ok.started_at + item.interval
            item.due = item.due_at <= now
        out.append(item)
    return out


def stale_models(models: Iterable[type[pg.View]] | None = None, *, using: str = DEFAULT_DB_ALIAS):
    return [f.model for f in freshness(models, using=using) if f.stale and f.exists]


def due_models(models: Iterable[type[pg.View]] | None = None, *, using: str = DEFAULT_DB_ALIAS):
    return [f.model for f in freshness(models, using=using) if f.due]


def next_due(items: Iterable[ViewFreshness]) -> dt.datetime | None:
    """When the next stale view falls due (None: none is waiting)."""
    times = [f.due_at for f in items if f.due_at is not None and not f.due]
    return min(times) if times else None
