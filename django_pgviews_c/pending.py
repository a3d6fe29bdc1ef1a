"""Deferred rebuilds, the refresh side: refresh_pgviews --pending (and --due, the refresher).

With ``defer_rebuild = True`` on a materialized view (or ``PGVIEWS_DEFER_REBUILD = True``), a
sync that must rebuild it creates the new version beside the old one, WITH NO DATA, under a
derived name and stamped as pending (csrc/plan_defer.c); the old one keeps serving. Here the
pending version is populated by a plain REFRESH (nobody reads it, so no reader waits), then a
sync planned with ``swap_pending`` swaps it in: the same transaction, advisory lock and
lock_timeout-guarded phase 1 as any sync (drop the old one, re-create what reads it, rename
the new one and its indexes into place, carry grants over, stamp). The refresh is recorded in
the view's history, in the swap's transaction.

The views that read a deferred rebuild and do not change wait along with it: each has a waiting
version that reads the deferred one's (a plain view between them too, with nothing to
populate), populated here after it, so the swap renames and drops only.
"""

from __future__ import annotations

__all__ = [
    "PENDING_STATE",
    "PendingInterrupted",
    "PendingResult",
    "PendingSwap",
    "complete_pending",
    "pending_models",
]

import signal
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
from django_pgviews_c.refresh import RefreshInterrupted
from django_pgviews_c.sync import Syncer, send_view_synced
from django_pgviews_c.syncresult import SyncResult

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
    #: The rebuilds the pass set out to complete, and those whose new version it populated.
    selected: list[str] = field(default_factory=list)
    populated: list[str] = field(default_factory=list)
    #: The databases (aliases) whose views may wait, in the order the pass goes through them, and
    #: those whose waiting versions it read (and so selected).
    databases: list[str] = field(default_factory=list)
    reached: list[str] = field(default_factory=list)


class PendingInterrupted(RefreshInterrupted):
    """SIGINT or SIGTERM while --pending populated or swapped in new versions. ``refreshed``
    were swapped in before it (committed); ``not_refreshed`` are still pending: their old
    version serves on, and of those, ``populated`` had their new version populated (committed,
    kept for the next --pending). ``not_reached`` are the databases (aliases) whose waiting
    versions the pass had not read yet: it did nothing there, and what waits there waits on.
    The running statement was cancelled and rolled back."""

    def __init__(self, result: PendingResult, signum: int = signal.SIGINT) -> None:
        self.populated = [lb for lb in result.populated if lb not in result.swapped]
        self.not_reached = [db for db in result.databases if db not in result.reached]
        waiting = [lb for lb in result.selected if lb not in result.swapped]
        super().__init__(result.swapped, waiting, signum)

    def summary(self) -> str:
        parts = []
        if len(self.not_refreshed) == 1:
            parts.append(
                f"the rebuild of {self.not_refreshed[0]} is still pending (the old version still "
                "serves; refresh_pgviews --pending completes it)"
            )
        elif self.not_refreshed:
            parts.append(
                f"the rebuilds of {', '.join(self.not_refreshed)} are still pending (their old "
                "versions still serve; refresh_pgviews --pending completes them)"
            )
        if self.not_reached:
            # Their waiting versions were never read: none can be named, nor can it be said that
            # none waits.
            one = len(self.not_reached) == 1
            parts.append(
                f"database{'' if one else 's'} {', '.join(repr(db) for db in self.not_reached)} "
                f"not reached: the deferred rebuilds waiting there, if any, are still pending "
                f"(refresh_pgviews --pending completes them)"
            )
        if self.populated:
            kept = ", ".join(self.populated)
            parts.append(f"populated before the interrupt, kept for the next --pending: {kept}")
        text = f"interrupted by {signal.Signals(self.signum).name}: " + "; ".join(
            parts or ["no rebuild was left pending"]
        )
        if self.refreshed:
            return text + f"; swapped in before the interrupt: {', '.join(self.refreshed)}"
        return text + "; nothing was swapped in"


class PendingSwap(Syncer):
    """A sync that swaps in the populated pending versions of the declarations ``swap`` and
    changes nothing else but what reads them (re-created against the new version)."""

    #: The new version is built already, beside the old one: no build schema.
    _chain = False

    def __init__(self, connection: BaseDatabaseWrapper, models: Sequence[type[pg.View]], known: set[str],
                 swap: Sequence[int], **options: Any) -> None:  # fmt: skip
        super().__init__(connection, models, known, **options)
        self.options["swap_pending"] = list(swap)
        labels = ", ".join(models[i]._meta.label for i in swap)
        # No sync ran: the waiting versions were populated (committed) before the swap.
        self.executor.lock_failure_outcome = (
            f"Nothing was swapped in: the old versions of {labels} keep serving; their populated "
            "new versions wait beside them, and the next refresh_pgviews --pending swaps them in."
            if len(swap) > 1
            else f"Nothing was swapped in: the old version of {labels} keeps serving; its populated "
            "new version waits beside it, and the next refresh_pgviews --pending swaps it in."
        )


def _by_connection(
    using: str, models: Iterable[type[pg.View]] | None, *, deferring_only: bool = False
) -> dict[str, tuple[BaseDatabaseWrapper, list[type[pg.View]]]]:
    """The views of each connection ``using`` routes to, as sync_pgviews groups them (every
    declared view of that connection: the swap re-creates dependants it reads). Models given
    that the project's registry does not hold (declared elsewhere) are grouped with them.
    Whether a view defers now does not matter: a rebuild deferred before the setting (or the
    view's defer_rebuild) was turned off still waits. ``deferring_only`` (the passes of --due,
    --stale, the refresher: no catalog query where nothing defers) keeps only the connections
    where a view defers its rebuilds now."""
    found: dict[str, tuple[BaseDatabaseWrapper, list[type[pg.View]]]] = {}
    registry = view_models()
    candidates = registry + [m for m in models or () if m not in registry]
    can_wait = defers if deferring_only else (lambda m: issubclass(m, pg.MaterializedView))
    if not any(can_wait(m) for m in candidates):
        return found  # nothing can wait (and nothing is routed)
    for model in candidates:
        conn = model.get_view_connection(using=using, restricted_mode=True)
        if conn is not None:
            found.setdefault(conn.alias, (conn, []))[1].append(model)
    wanted = set(models) if models is not None else None
    # A view that waits along with a deferred rebuild need not defer itself.
    return {
        alias: (conn, chosen)
        for alias, (conn, chosen) in found.items()
        if any(can_wait(m) for m in chosen) and (wanted is None or any(m in wanted for m in chosen))
    }


def pending_models(
    using: str = DEFAULT_DB_ALIAS, models: Iterable[type[pg.View]] | None = None
) -> list[type[pg.View]]:
    """The views of ``using`` whose new version waits beside them, those waiting along with a
    deferred rebuild included (one catalog query per connection; none when no view is
    materialized)."""
    out = []
    for conn, conn_models in _by_connection(using, models).values():
        ensure_connected(conn)
        known = {m._meta.label for m in conn_models}
        with conn.cursor() as cursor:
            plan = Syncer(conn, conn_models, known).plan(cursor)
        out += [conn_models[i] for i, *_ in plan["pending"]]
    wanted = set(models) if models is not None else None
    return [m for m in out if wanted is None or m in wanted]


def current_waiting(using: str = DEFAULT_DB_ALIAS) -> set[str]:
    """The labels of the views of ``using`` whose waiting version is there and matches the code
    (what --pending would populate and swap in). A view a sync would defer but whose waiting
    version is missing, or is of an older definition, is not among them: a sync makes it."""
    out: set[str] = set()
    for conn, conn_models in _by_connection(using, None).values():
        ensure_connected(conn)
        known = {m._meta.label for m in conn_models}
        with conn.cursor() as cursor:
            plan = Syncer(conn, conn_models, known).plan(cursor)
        out |= {conn_models[i]._meta.label for i, _s, _n, _p, current, _r in plan["pending"] if current}
    return out


#: A populated pending version, ready to swap: (declaration index, label, sources captured
#: before its REFRESH, when that began, seconds it took).
_Ready = tuple[int, str, "dict[str, Any] | None", Any, float]


def complete_pending(
    using: str = DEFAULT_DB_ALIAS,
    *,
    models: Iterable[type[pg.View]] | None = None,
    verbosity: int = 1,
    progress: Callable[[str], None] | None = None,
    raise_errors: bool = True,
    jobs: int = 1,
    deferring_only: bool = False,
) -> PendingResult:
    """Populate every pending version of ``using`` (among ``models``, default all) and swap it
    in. With ``jobs`` > 1 the versions are populated at once over that many connections of the
    C loop (not inside a transaction); the swap stays one short transaction for them all. A
    failed REFRESH is recorded and reported in the result, stops none of the others, and the
    old version keeps serving; a swap that cannot take its locks in time raises
    LockNotAvailableError naming the holder (the REFRESHed new version stays beside the old
    one, for the next try), recorded as a failure in the view's history; with
    ``raise_errors=False`` (the --due pass, the refresher) it is reported in ``result.failed``
    instead. After the swap, ``view_synced`` is sent for each view it changed. A rebuild that
    waits is completed whether or not its view defers now; ``deferring_only`` looks only on the
    connections where a view defers (a pass's shortcut: none there, no catalog query)."""
    started = time.perf_counter()
    result = PendingResult()
    wanted = set(models) if models is not None else None
    groups = _by_connection(using, models, deferring_only=deferring_only)
    known = {m._meta.label for _, chosen in groups.values() for m in chosen} | {
        m._meta.label for m in view_models()
    }
    result.databases = list(groups)
    try:
        for conn, conn_models in groups.values():
            _complete_connection(conn, conn_models, known, wanted, result, using=using, verbosity=verbosity,
                                 progress=progress, raise_errors=raise_errors, jobs=jobs)  # fmt: skip
    except KeyboardInterrupt as exc:
        raise PendingInterrupted(result, getattr(exc, "signum", signal.SIGINT)) from exc
    result.wall = time.perf_counter() - started
    return result


def _complete_connection(
    conn: BaseDatabaseWrapper,
    conn_models: list[type[pg.View]],
    known: set[str],
    wanted: set[type[pg.View]] | None,
    result: PendingResult,
    *,
    using: str,
    verbosity: int,
    progress: Callable[[str], None] | None,
    raise_errors: bool,
    jobs: int,
) -> None:
    """complete_pending on one connection: populate its waiting versions, then swap them in."""
    ensure_connected(conn)
    with conn.cursor() as cursor:
        plan = Syncer(conn, conn_models, known).plan(cursor)
    todo, plain = _split_plain(conn_models, _todo(conn_models, plan["pending"], wanted, result))
    result.selected += [conn_models[i]._meta.label for i, *_ in todo + plain]
    result.reached.append(conn.alias)
    if jobs > 1 and len(todo) > 1:
        ready = _populate_parallel(conn, conn_models, todo, jobs, result, progress)
    else:
        ready = _populate_serial(conn, conn_models, todo, result, progress)
    ready += _plain_ready(conn_models, plain, ready, result)
    if not ready:
        return
    try:
        swapped = _swap(conn, conn_models, known, ready, result, verbosity, progress)
    except PGViewsError as exc:
        _record_failed_swap(conn, conn_models, ready, exc)
        if raise_errors:
            raise
        for _, label, *_ in ready:
            result.failed[label] = f"its new version is populated but was not swapped in: {exc}"
        return
    # As a sync does for the views it changes, once the swap has committed.
    send_view_synced(conn_models, swapped, using, update=True, force=False, changed_only=True)


#: A waiting version to populate: (declaration index, quoted name, the declarations whose
#: waiting versions it reads).
_Todo = tuple[int, str, tuple[int, ...]]


def _todo(
    conn_models: list[type[pg.View]],
    pending: Sequence[tuple[int, str, str, bool, bool, tuple[int, ...]]],
    wanted: set[type[pg.View]] | None,
    result: PendingResult,
) -> list[_Todo]:
    """The waiting versions to populate, in dependency order (the planner's): those of
    ``wanted`` (all when None) with the waiting versions they read and those that read theirs
    (waiting along: swapped without them, they would be re-populated under the swap's locks),
    since they are swapped in together. One that reads a waiting version which no longer
    matches the code is left waiting with it (named in the result): a sync replaces both."""
    needed = {i for i, *_ in pending if wanted is None or conn_models[i] in wanted}
    grown = -1
    while grown != len(needed):
        grown = len(needed)
        for i, *_, reads in reversed(pending):
            if i in needed:
                needed |= set(reads)
        for i, *_, reads in pending:
            if needed & set(reads):
                needed.add(i)
    todo: list[_Todo] = []
    for i, schema, name, _populated, current, reads in pending:
        label = conn_models[i]._meta.label
        if i not in needed:
            continue
        if not current:
            result.waiting[label] = "its waiting version no longer matches the code: a sync replaces it"
            continue
        stale = [conn_models[r]._meta.label for r in reads if conn_models[r]._meta.label in result.waiting]
        if stale:
            result.waiting[label] = (
                f"its waiting version reads the waiting version of {stale[0]}, which is not "
                "populated here: a sync replaces it"
            )
            continue
        todo.append((i, _core.qualified_name(schema, name), tuple(reads)))
    return todo


def _split_plain(conn_models: list[type[pg.View]], todo: list[_Todo]) -> tuple[list[_Todo], list[_Todo]]:
    """The materialized waiting versions to populate, each reading the materialized ones it reads
    through plain waiting versions; and the plain waiting versions (nothing to populate), each
    with the materialized ones it reads, in dependency order."""
    through: dict[int, tuple[int, ...]] = {}
    matviews: list[_Todo] = []
    plain: list[_Todo] = []
    for i, qualified, reads in todo:
        expanded = tuple(dict.fromkeys(m for r in reads for m in through.get(r, (r,))))
        if issubclass(conn_models[i], pg.MaterializedView):
            matviews.append((i, qualified, expanded))
        else:
            through[i] = expanded
            plain.append((i, qualified, expanded))
    return matviews, plain


def _plain_ready(
    conn_models: list[type[pg.View]], plain: list[_Todo], ready: list[_Ready], result: PendingResult
) -> list[_Ready]:
    """The plain waiting versions to swap in: those whose materialized waiting versions were
    populated; the others are named in result.failed (nothing of theirs is recorded: a plain
    view has no refresh history)."""
    done = {i for i, *_ in ready}
    out: list[_Ready] = []
    for i, _, reads in plain:
        blocked = next((r for r in reads if r not in done), None)
        if blocked is None:
            out.append((i, conn_models[i]._meta.label, None, timezone.now(), 0.0))
        else:
            text = _blocked_text(conn_models, blocked)["message"]
            result.failed[conn_models[i]._meta.label] = f"{BLOCKED}: {text}"
    return out


def _blocked_text(conn_models: list[type[pg.View]], upstream: int) -> dict[str, Any]:
    """Why a waiting version was not populated: one it reads was not."""
    label = conn_models[upstream]._meta.label
    return {"sqlstate": "", "message": f"it reads the new version of {label}, which was not populated"}


#: What result.failed says of a waiting version not populated because one it reads was not.
BLOCKED = "its new version was not populated"


def _populate_serial(
    conn: BaseDatabaseWrapper,
    conn_models: list[type[pg.View]],
    todo: list[_Todo],
    result: PendingResult,
    progress: Callable[[str], None] | None,
) -> list[_Ready]:
    """Populate the waiting versions ``todo`` one after the other, in dependency order; one that
    reads a waiting version whose population failed is not populated (named in result.failed,
    recorded), and keeps waiting with it."""
    ready: list[_Ready] = []
    done: set[int] = set()
    for i, qualified, reads in todo:
        model = conn_models[i]
        blocked = next((r for r in reads if r not in done), None)
        if blocked is not None:
            _populate_failed(conn, model, _blocked_text(conn_models, blocked), timezone.now(), 0.0,
                             None, result, BLOCKED)  # fmt: skip
            continue
        populated = _populate(conn, model, qualified, result, progress)
        if populated is not None:
            done.add(i)
            ready.append((i, model._meta.label, *populated))
    return ready


def _sources(
    conn: BaseDatabaseWrapper, models: Sequence[type[pg.View]], names: Sequence[str]
) -> list[dict[str, Any] | None]:
    """The sources of each pending version ``names`` (one query), for the history record of its
    refresh; None each when the history is off or the read failed (logged)."""
    from django_pgviews_c import history
    from django_pgviews_c.freshness import closure

    if not setting("PGVIEWS_HISTORY", True):
        return [None for _ in models]
    try:
        states = closure(conn, models, names=names)
    except DjangoDBError as exc:
        history.logger.warning(
            "could not read the sources of %s: %s",
            ", ".join(m._meta.label for m in models),
            diag(exc)["message"],
        )
        return [None for _ in models]
    return [state.snapshot() if state.oid is not None else None for state in states]


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
    from django_pgviews_c.refresh import guarded_refresh

    sources = _sources(conn, [model], [qualified])[0]
    started_at = timezone.now()
    t0 = time.perf_counter()
    try:
        guarded_refresh(conn, qualified, model._meta.label)
    except (DjangoDBError, PGViewsError) as exc:
        _populate_failed(
            conn, model, history._error(exc), started_at, time.perf_counter() - t0, sources, result
        )
        return None
    seconds = time.perf_counter() - t0
    result.populated.append(model._meta.label)
    if progress is not None:
        progress(f"  populated the new version of {model._meta.label} ({qualified})  {seconds:.2f}s")
    return sources, started_at, seconds


def _populate_parallel(
    conn: BaseDatabaseWrapper,
    conn_models: list[type[pg.View]],
    todo: list[_Todo],
    jobs: int,
    result: PendingResult,
    progress: Callable[[str], None] | None,
) -> list[_Ready]:
    """Populate the pending versions ``todo`` over ``jobs`` connections of the C loop, as
    refresh_views(jobs=N) refreshes: plain REFRESHes, each waiting for its lock as
    guarded_refresh does. A waiting version that reads another waiting version (the sync made
    it so, csrc/ddl_defer.c) starts after that one is populated, and is not populated when that
    one failed; the others wait for none, and a failure stops only what reads it."""
    from django_pgviews_c.refresh import loop_ready, run_loop

    loop_ready(conn)
    models = [conn_models[i] for i, *_ in todo]
    names = [qualified for _, qualified, _ in todo]
    position = {i: k for k, (i, *_) in enumerate(todo)}
    deps = [[position[r] for r in reads] for *_, reads in todo]
    labels = [m._meta.label for m in models]
    sources = _sources(conn, models, names)
    began: dict[int, Any] = {}

    def on_event(k: int, state: str, seconds: float, error: dict[str, Any] | None) -> None:
        if state == "running":
            began[k] = timezone.now()
        elif state == "ok":
            result.populated.append(labels[k])
            if progress is not None:
                progress(f"  populated the new version of {labels[k]} ({names[k]})  {seconds:.2f}s")

    statements = [pg.refresh_statement(name, False) for name in names]
    outcome = run_loop(conn, statements, deps, names, labels, jobs, on_event)
    ready: list[_Ready] = []
    for k, (state, seconds, error) in enumerate(outcome):
        started_at = began.get(k) or timezone.now()
        if state == "ok":
            ready.append((todo[k][0], labels[k], sources[k], started_at, seconds))
        else:
            blocked = next((r for r in todo[k][2] if outcome[position[r]][0] != "ok"), None)
            if error is None and blocked is not None:
                _populate_failed(conn, models[k], _blocked_text(conn_models, blocked), started_at,
                                 seconds, sources[k], result, BLOCKED)  # fmt: skip
                continue
            info = error or {"sqlstate": "", "message": f"not populated ({state})"}
            _populate_failed(conn, models[k], info, started_at, seconds, sources[k], result)
    return ready


def _populate_failed(
    conn: BaseDatabaseWrapper,
    model: type[pg.View],
    error: dict[str, Any],
    started_at: Any,
    seconds: float,
    sources: dict[str, Any] | None,
    result: PendingResult,
    what: str = "populating its new version failed",
) -> None:
    """A pending version whose REFRESH failed (or was not run: ``what`` says which): named in
    result.failed with the reason, recorded in the view's history; its old version keeps
    serving."""
    from django_pgviews_c import history
    from django_pgviews_c.refresh import _failure_text

    result.failed[model._meta.label] = f"{what}: {_failure_text(error)}"
    if setting("PGVIEWS_HISTORY", True):
        history.record(conn, model, started_at=started_at, duration=seconds, concurrent=False,
                       plain_reason="pending rebuild", error=error, sources=sources)  # fmt: skip


def _record_failed_swap(
    conn: BaseDatabaseWrapper,
    conn_models: list[type[pg.View]],
    ready: list[_Ready],
    exc: PGViewsError,
) -> None:
    """The swap was rolled back: each view's history says why its refresh did not land."""
    from django_pgviews_c import history

    if not setting("PGVIEWS_HISTORY", True):
        return
    for i, _, sources, started_at, seconds in ready:
        if not issubclass(conn_models[i], pg.MaterializedView):
            continue
        history.record(conn, conn_models[i], started_at=started_at, duration=seconds,
                       concurrent=False, plain_reason="pending rebuild", error=history._error(exc),
                       sources=sources)  # fmt: skip


def _swap(
    conn: BaseDatabaseWrapper,
    conn_models: list[type[pg.View]],
    known: set[str],
    ready: list[_Ready],
    result: PendingResult,
    verbosity: int,
    progress: Callable[[str], None] | None,
) -> SyncResult:
    """One transaction: the sync's swap of every populated pending version, then their history
    records (rolled back with it). Returns what the swap did."""
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
    landed: list[str] = []  # in result once committed: an interrupt may roll the swap back
    with transaction.atomic(using=conn.alias):
        synced = syncer.run()
        for i, label, sources, started_at, seconds in ready:
            if synced.statuses.get(label) != "UPDATED":
                why = synced.reasons.get(label, "")
                result.waiting[label] = (
                    why
                    if why.startswith("its waiting version reads")
                    else "its new version changed meanwhile: not swapped in"
                )
                continue
            materialized = issubclass(conn_models[i], pg.MaterializedView)
            if materialized and setting("PGVIEWS_HISTORY", True):
                history.record(conn, conn_models[i], started_at=started_at, duration=seconds,
                               concurrent=False, plain_reason="pending rebuild", sources=sources)  # fmt: skip
            landed.append(label)
            result.timings[label] = (seconds, None)
    result.swapped += landed
    return synced
