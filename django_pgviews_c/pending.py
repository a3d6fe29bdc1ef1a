"""Deferred rebuilds, the refresh side: refresh_pgviews --pending (and --due, the refresher).

With ``defer_rebuild = True`` on a materialized view (or ``PGVIEWS_DEFER_REBUILD = True``), a
sync that must rebuild it creates the new version beside the old one, WITH NO DATA, under a
derived name and stamped as pending (csrc/plan_defer.c); the old one keeps serving. Here the
pending version is populated by a plain REFRESH (nobody reads it, so no reader waits), then a
sync planned with ``swap_pending`` swaps it in: the same transaction, advisory lock and
lock_timeout-guarded phase 1 as any sync (drop the old one, re-create what reads it, rename
the new one and its indexes into place, carry grants over, stamp). The refresh is recorded in
the view's history, in the swap's transaction.
"""

from __future__ import annotations

__all__ = ["PENDING_STATE", "PendingResult", "PendingSwap", "complete_pending", "pending_models"]

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import DEFAULT_DB_ALIAS, transaction
from django.db import Error as DjangoDBError
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone

from django_pgviews_c import _core
from django_pgviews_c import view as pg
from django_pgviews_c.dberrors import diag, ensure_connected
from django_pgviews_c.declarations import defers, setting, view_models
from django_pgviews_c.exceptions import PGViewsError
from django_pgviews_c.sync import Syncer

#: The state pgviews_status shows for a view whose new version waits beside it.
PENDING_STATE = "pending rebuild"


@dataclass
class PendingResult:
    """What one --pending pass did, by label: swapped in, failed (with why), and pending
    versions left waiting because they no longer match the code (the next sync replaces them)."""

    swapped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    waiting: dict[str, str] = field(default_factory=dict)
    #: label -> (seconds, rows or None) of populating the new version
    timings: dict[str, tuple[float, int | None]] = field(default_factory=dict)
    wall: float = 0.0


class PendingSwap(Syncer):
    """A sync that swaps in the populated pending versions of the declarations ``swap`` and
    changes nothing else but what reads them (re-created against the new version)."""

    #: The new version is built already, beside the old one: no build schema.
    _chain = False

    def __init__(self, connection: BaseDatabaseWrapper, models: Sequence[type[pg.View]], known: set[str],
                 swap: Sequence[int], **options: Any) -> None:  # fmt: skip
        super().__init__(connection, models, known, **options)
        self.options["swap_pending"] = list(swap)


def _by_connection(
    using: str, models: Iterable[type[pg.View]] | None
) -> dict[str, tuple[BaseDatabaseWrapper, list[type[pg.View]]]]:
    """The views of each connection ``using`` routes to, as sync_pgviews groups them (every
    declared view of that connection: the swap re-creates dependants it reads). Models given
    that the project's registry does not hold (declared elsewhere) are grouped with them."""
    found: dict[str, tuple[BaseDatabaseWrapper, list[type[pg.View]]]] = {}
    registry = view_models()
    for model in registry + [m for m in models or () if m not in registry]:
        conn = model.get_view_connection(using=using, restricted_mode=True)
        if conn is not None:
            found.setdefault(conn.alias, (conn, []))[1].append(model)
    wanted = set(models) if models is not None else None
    return {
        alias: (conn, chosen)
        for alias, (conn, chosen) in found.items()
        if any(defers(m) and (wanted is None or m in wanted) for m in chosen)
    }


def pending_models(
    using: str = DEFAULT_DB_ALIAS, models: Iterable[type[pg.View]] | None = None
) -> list[type[pg.View]]:
    """The materialized views of ``using`` whose new version waits beside them (one catalog
    query per connection; none when no view defers its rebuilds)."""
    out = []
    for conn, conn_models in _by_connection(using, models).values():
        ensure_connected(conn)
        known = {m._meta.label for m in conn_models}
        with conn.cursor() as cursor:
            plan = Syncer(conn, conn_models, known).plan(cursor)
        out += [conn_models[i] for i, *_ in plan["pending"]]
    wanted = set(models) if models is not None else None
    return [m for m in out if wanted is None or m in wanted]


def complete_pending(
    using: str = DEFAULT_DB_ALIAS,
    *,
    models: Iterable[type[pg.View]] | None = None,
    verbosity: int = 1,
    progress: Callable[[str], None] | None = None,
    raise_errors: bool = True,
) -> PendingResult:
    """Populate every pending version of ``using`` (among ``models``, default all) and swap it
    in. A failed REFRESH is recorded and reported in the result, the old version keeps serving;
    a swap that cannot take its locks in time raises LockNotAvailableError naming the holder
    (the REFRESHed new version stays beside the old one, for the next try), recorded as a
    failure in the view's history; with ``raise_errors=False`` (the --due pass, the refresher)
    it is reported in ``result.failed`` instead."""
    started = time.perf_counter()
    result = PendingResult()
    wanted = set(models) if models is not None else None
    groups = _by_connection(using, models)
    known = {m._meta.label for _, chosen in groups.values() for m in chosen} | {
        m._meta.label for m in view_models()
    }
    for conn, conn_models in groups.values():
        ensure_connected(conn)
        with conn.cursor() as cursor:
            plan = Syncer(conn, conn_models, known).plan(cursor)
        ready: list[tuple[int, str, dict[str, Any] | None, Any, float]] = []
        for i, schema, name, _populated, current in plan["pending"]:
            model = conn_models[i]
            label = model._meta.label
            if wanted is not None and model not in wanted:
                continue
            if not current:
                result.waiting[label] = "its waiting version no longer matches the code: a sync replaces it"
                continue
            populated = _populate(conn, model, _core.qualified_name(schema, name), result, progress)
            if populated is not None:
                ready.append((i, label, *populated))
        if not ready:
            continue
        try:
            _swap(conn, conn_models, known, ready, result, verbosity, progress)
        except PGViewsError as exc:
            _record_failed_swap(conn, conn_models, ready, exc)
            if raise_errors:
                raise
            for _, label, *_ in ready:
                result.failed[label] = f"its new version is populated but was not swapped in: {exc}"
    result.wall = time.perf_counter() - started
    return result


def _populate(
    conn: BaseDatabaseWrapper,
    model: type[pg.View],
    qualified: str,
    result: PendingResult,
    progress: Callable[[str], None] | None,
) -> tuple[dict[str, Any] | None, Any, float] | None:
    """REFRESH the pending version (plain: nobody reads it). Returns (sources captured before,
    start time, seconds), or None when it failed (recorded, and in result.failed)."""
    from django_pgviews_c import history
    from django_pgviews_c.freshness import closure
    from django_pgviews_c.refresh import guarded_refresh

    label = model._meta.label
    sources = None
    if setting("PGVIEWS_HISTORY", True):
        try:
            state = closure(conn, [model], names=[qualified])[0]
            sources = state.snapshot() if state.oid is not None else None
        except DjangoDBError as exc:
            history.logger.warning("could not read the sources of %s: %s", label, diag(exc)["message"])
    started_at = timezone.now()
    t0 = time.perf_counter()
    try:
        guarded_refresh(conn, qualified, label)
    except (DjangoDBError, PGViewsError) as exc:
        info = history._error(exc)
        result.failed[label] = f"populating its new version failed: {info['sqlstate']} {info['message']}"
        if setting("PGVIEWS_HISTORY", True):
            history.record(conn, model, started_at=started_at, duration=time.perf_counter() - t0,
                           concurrent=False, plain_reason="pending rebuild", error=info,
                           sources=sources)  # fmt: skip
        return None
    seconds = time.perf_counter() - t0
    if progress is not None:
        progress(f"  populated the new version of {label} ({qualified})  {seconds:.2f}s")
    return sources, started_at, seconds


def _record_failed_swap(
    conn: BaseDatabaseWrapper,
    conn_models: list[type[pg.View]],
    ready: list[tuple[int, str, dict[str, Any] | None, Any, float]],
    exc: PGViewsError,
) -> None:
    """The swap was rolled back: each view's history says why its refresh did not land."""
    from django_pgviews_c import history

    if not setting("PGVIEWS_HISTORY", True):
        return
    for i, _, sources, started_at, seconds in ready:
        history.record(conn, conn_models[i], started_at=started_at, duration=seconds,
                       concurrent=False, plain_reason="pending rebuild", error=history._error(exc),
                       sources=sources)  # fmt: skip


def _swap(
    conn: BaseDatabaseWrapper,
    conn_models: list[type[pg.View]],
    known: set[str],
    ready: list[tuple[int, str, dict[str, Any] | None, Any, float]],
    result: PendingResult,
    verbosity: int,
    progress: Callable[[str], None] | None,
) -> None:
    """One transaction: the sync's swap of every populated pending version, then their history
    records (rolled back with it)."""
    from django_pgviews_c import history

    syncer = PendingSwap(
        conn,
        conn_models,
        known,
        [i for i, *_ in ready],
        restore_dependants=setting("PGVIEWS_RESTORE_DEPENDANTS", False),
        verbosity=verbosity,
        progress=progress,
    )
    with transaction.atomic(using=conn.alias):
        synced = syncer.run()
        for i, label, sources, started_at, seconds in ready:
            if synced.statuses.get(label) != "UPDATED":
                result.waiting[label] = "its new version changed meanwhile: not swapped in"
                continue
            if setting("PGVIEWS_HISTORY", True):
                history.record(conn, conn_models[i], started_at=started_at, duration=seconds,
                               concurrent=False, plain_reason="pending rebuild", sources=sources)  # fmt: skip
            result.swapped.append(label)
            result.timings[label] = (seconds, None)
