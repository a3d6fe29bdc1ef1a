"""Passes: refresh what is stale (``refresh_pgviews --stale``), or due (``--due``, the
refresher, the Celery task), in dependency order, from one staleness check (freshness.py).

With ``jobs`` > 1 a --stale pass opens the C loop's connections while the check runs (a thread waits on
their connects, with the GIL released): their backends start while the check's queries and
Python run, rather than after them. Whatever the pass does not hand to the loop (nothing stale,
a failed or interrupted check) is closed before the pass returns or raises.
"""

from __future__ import annotations

__all__ = ["PassInterrupted", "PassResult", "plan_pass", "refresh_pass"]

import datetime as dt
import signal
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.db import DEFAULT_DB_ALIAS, connections
from django.utils import timezone

from django_pgviews_c import _core
from django_pgviews_c import view as pg
from django_pgviews_c.dberrors import ensure_connected
from django_pgviews_c.refresh import RefreshInterrupted

if TYPE_CHECKING:
    from django_pgviews_c.freshness import ViewFreshness


class EarlyConnections:
    """The C loop's ``jobs`` connections to ``using``'s database, connecting in a thread from
    now on (as run_parallel would connect them). ``take()`` waits for them: the capsule for
    refresh_views' ``connections``, or None when they failed (the loop then connects itself and
    reports why). ``close()`` closes what no run took without waiting: connects still under way
    are closed by the thread as soon as they end."""

    def __init__(self, using: str, jobs: int) -> None:
        from django_pgviews_c.refresh import connection_params, session_settings

        connection = connections[using]
        self._args = (connection_params(connection), jobs, session_settings(connection))
        self._made: Any = None
        self._closed = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._connect, name="pgviews-loop-connect", daemon=True)
        self._thread.start()

    def _connect(self) -> None:
        conninfo, jobs, session = self._args
        try:
            made = _core.connect_loop(conninfo, jobs, session=session)
        except Exception:  # the loop connects again and says why
            return
        with self._lock:
            keep = not self._closed
            if keep:
                self._made = made
        if not keep:  # closed meanwhile: nobody will take them
            _core.close_loop_connections(made)

    def take(self) -> Any:
        self._thread.join()
        with self._lock:
            return self._made

    def close(self) -> None:
        with self._lock:
            self._closed = True
            made, self._made = self._made, None
        if made is not None:
            _core.close_loop_connections(made)


def _early(using: str, jobs: int) -> EarlyConnections | None:
    """The loop's connections opened now, when the pass will run the loop on ``using`` (jobs
    > 1, no transaction open: refresh_views refuses the loop inside one and says so). Django's
    own connection, which the check needs, is opened first: on a server short of connections the
    loop's connects would otherwise take its place, and the loop runs with fewer instead."""
    if jobs <= 1 or connections[using].in_atomic_block:
        return None
    ensure_connected(connections[using])
    return EarlyConnections(using, jobs)


@dataclass
class PassResult:
    """What one --stale / --due pass did: views refreshed, and views skipped with why."""

    refreshed: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    #: Views whose refresh_interval is unusable, with why (never due; --stale refreshes them).
    misconfigured: dict[str, str] = field(default_factory=dict)
    wall: float = 0.0
    next_due: dt.datetime | None = None


class PassInterrupted(RefreshInterrupted):
    """SIGINT or SIGTERM during a --stale / --due pass that had changed something: in a refresh,
    or in a staleness check (the one after the deferred rebuilds, or --due's last). ``swapped``
    are the deferred rebuilds it swapped in first, ``refreshed`` (them too, as RefreshInterrupted
    has it) what it committed before the interrupt, ``not_refreshed`` the refreshes cancelled."""

    def __init__(
        self,
        swapped: Sequence[str],
        refreshed: Sequence[str],
        not_refreshed: Sequence[str] = (),
        signum: int = signal.SIGINT,
    ) -> None:
        self.swapped = list(swapped)
        super().__init__(refreshed, not_refreshed, signum)

    def summary(self) -> str:
        if not self.swapped:
            return super().summary()
        text = f"interrupted by {signal.Signals(self.signum).name}: "
        text += f"swapped in before the interrupt: {', '.join(self.swapped)}"
        refreshed = [label for label in self.refreshed if label not in self.swapped]
        if refreshed:
            text += f"; refreshed before the interrupt: {', '.join(refreshed)}"
        if self.not_refreshed:
            text += f"; not refreshed (their refreshes were cancelled): {', '.join(self.not_refreshed)}"
        elif not refreshed:
            text += "; the staleness check that followed was cancelled, no view was refreshed"
        return text


def plan_pass(
    items: Sequence[ViewFreshness], *, due: bool = False, now: dt.datetime | None = None
) -> tuple[list[type[pg.View]], dict[str, str]]:
    """The views a pass refreshes, in dependency order, and why each other one is skipped.
    A view refreshed in the pass makes every view that reads it stale: with ``due`` those are
    refreshed too when their own interval has passed."""
    from django_pgviews_c.dependencies import get_views_dependants

    now = now or timezone.now()
    chosen = {f.model for f in items if f.exists and (f.due if due else f.stale)}
    by_model = {f.model: f for f in items}
    for dependant in get_views_dependants(chosen) if chosen else []:
        f = by_model.get(dependant)
        if f is None or not f.exists or dependant in chosen:
            continue
        interval_passed = f.interval is not None and (
            f.last_ok is None or f.last_ok.started_at + f.interval <= now
        )
        if not due or interval_passed:
            chosen.add(dependant)
    order = [f.model for f in items if f.model in chosen]
    skipped = {}
    for f in items:
        if f.model in chosen:
            continue
        if not f.exists:
            skipped[f.label] = "does not exist: migrate (or sync_pgviews) creates it"
        elif f.misconfigured:
            skipped[f.label] = f"misconfigured: {f.misconfigured}"
        elif not f.stale:
            skipped[f.label] = "fresh"
        elif f.interval is None:
            skipped[f.label] = f"stale ({f.why}) but has no refresh_interval"
        else:
            skipped[f.label] = f"stale ({f.why}), due at {f.due_at:%Y-%m-%d %H:%M:%S %Z}"
    return order, skipped


def refresh_pass(
    using: str = DEFAULT_DB_ALIAS,
    *,
    due: bool = False,
    models: Iterable[type[pg.View]] | None = None,
    jobs: int = 1,
    concurrently: bool = False,
    strict: bool = False,
    progress: Any = None,
    stop: Any = None,
) -> PassResult:
    """One pass: refresh the stale (``due``: the due) materialized views of ``using`` in
    dependency order, through refresh_views (the C loop with ``jobs`` > 1). ``stop`` (a
    threading.Event) ends a one-job pass between two views. Failures are in the result."""
    from django_pgviews_c import history

    # The history is read two or three times: a warning about it (not migrated there) once.
    with history.warn_once():
        return _pass(
            using, due=due, models=models, jobs=jobs, stop=stop,
            run={"concurrently": concurrently, "strict": strict, "progress": progress},
        )  # fmt: skip


def _pass(
    using: str,
    *,
    due: bool,
    models: Iterable[type[pg.View]] | None,
    jobs: int,
    stop: Any,
    run: dict[str, Any],
) -> PassResult:
    """refresh_pass's work (``run``: refresh_views's concurrently, strict and progress)."""
    import time as _time

    from django_pgviews_c.freshness import freshness, next_due
    from django_pgviews_c.pending import complete_pending

    started = _time.perf_counter()
    # A deferred rebuild waiting beside its old version is due: completed first, so the pass
    # judges the new version (its refresh is recorded) and what reads it. Where no view defers
    # now, no catalog query: one left waiting by a deferral turned off since is for --pending.
    pending = complete_pending(
        using, models=models, progress=run["progress"], raise_errors=False, jobs=jobs, deferring_only=True
    )
    result = PassResult(refreshed=list(pending.swapped), failed=dict(pending.failed))
    try:
        _check_and_refresh(result, using, due=due, models=models, jobs=jobs, stop=stop, run=run)
        result.next_due = next_due(freshness(models, using=using)) if due else None
    except RefreshInterrupted as exc:
        # What the pass did before (rebuilds swapped in, earlier batches) is committed: the
        # interrupt must not be reported as having changed nothing.
        raise PassInterrupted(pending.swapped, exc.refreshed, exc.not_refreshed, exc.signum) from None
    except KeyboardInterrupt as exc:  # in a staleness check, after the swaps or the refreshes
        if not result.refreshed:
            raise
        raise PassInterrupted(
            pending.swapped, result.refreshed, [], getattr(exc, "signum", signal.SIGINT)
        ) from None
    result.wall = _time.perf_counter() - started
    return result


def _check_and_refresh(
    result: PassResult,
    using: str,
    *,
    due: bool,
    models: Iterable[type[pg.View]] | None,
    jobs: int,
    stop: Any,
    run: dict[str, Any],
) -> None:
    """_pass's staleness check and refreshes, into ``result`` (which holds the rebuilds swapped
    in already)."""
    from django_pgviews_c.freshness import freshness

    # Connecting while the check runs; closed unless the loop took them. Not for --due: a due pass
    # mostly finds nothing due (the refresher runs one whenever a view may fall due).
    early = None if due else _early(using, jobs)
    try:
        items = freshness(models, using=using)
        order, skipped = plan_pass(items, due=due)
        result.misconfigured = {f.label: f.misconfigured for f in items if f.misconfigured}
        # A rebuild just swapped in is fresh: it was refreshed, not skipped.
        result.skipped = {label: why for label, why in skipped.items() if label not in result.refreshed}
        # With a stop event and one job: view by view, so a stop request ends the pass between
        # two views. Otherwise one call, which orders the views and skips those a failure blocks.
        batches = [order] if stop is None or jobs > 1 else [[m] for m in order]
        # One run: its records keep the sources the check just read, captured before any of its
        # refreshes began (a write since then costs one more refresh, never a missed one), rather
        # than a second read of the same catalog. View by view, each run captures its own: a view
        # refreshed by an earlier run of the pass would otherwise be recorded as it was before it.
        captured = _captured(items, set(order), using) if len(batches) == 1 else None
        # One view or none: no loop to run (refresh_views refreshes one on Django's connection).
        _refresh_batches(
            batches, result, using=using, jobs=jobs, stop=stop, captured=captured, run=run,
            early=early if len(order) > 1 else None,
        )  # fmt: skip
    finally:
        if early is not None:
            early.close()


def _refresh_batches(
    batches: list[list[type[pg.View]]],
    result: PassResult,
    *,
    using: str,
    jobs: int,
    stop: Any,
    captured: Any,
    run: dict[str, Any],
    early: EarlyConnections | None = None,
) -> None:
    """refresh_pass's refreshes, batch by batch, into ``result``: a failed view's dependants
    are skipped in later batches, a ``stop`` request skips the batches not started."""
    from django_pgviews_c.dependencies import get_views_dependants
    from django_pgviews_c.exceptions import RefreshError
    from django_pgviews_c.refresh import refresh_views

    blocked: set[type[pg.View]] = set()
    for batch in batches:
        batch = [m for m in batch if m not in blocked]
        if not batch:
            continue
        if stop is not None and stop.is_set():
            for m in batch:
                result.skipped[m._meta.label] = "not started: stopping"
            continue
        try:
            # The connections opened during the check serve the first run of the loop.
            conns = early.take() if early is not None else None
            early = None
            done = refresh_views(batch, using=using, jobs=jobs, captured=captured, connections=conns, **run)
            result.refreshed += done.refreshed
        except RefreshInterrupted as exc:  # with what the pass committed before this batch
            raise RefreshInterrupted(
                result.refreshed + exc.refreshed, exc.not_refreshed, exc.signum
            ) from None
        except RefreshError as exc:
            result.failed.update(exc.failures)
            for label in exc.skipped:
                result.skipped[label] = "reads a view that failed"
            blocked.update(get_views_dependants([m for m in batch if m._meta.label in exc.failures]))
    for m in blocked:
        if m._meta.label not in result.failed and m._meta.label not in result.refreshed:
            result.skipped[m._meta.label] = "reads a view that failed"


def _captured(
    items: Sequence[ViewFreshness], chosen: set[type[pg.View]], using: str
) -> dict[str, dict[type[pg.View], tuple[str | None, dict[str, Any] | None]]]:
    """The sources the check read of the ``chosen`` views, as a run's records keep them
    (refresh_views' ``captured``)."""
    return {
        using: {
            f.model: (str(f.state.oid), f.state.snapshot())
            for f in items
            if f.model in chosen and f.state is not None and f.state.oid is not None
        }
    }
