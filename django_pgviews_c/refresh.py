"""Refreshing materialized views: one at a time on Django's connection, or the whole dependency
graph in parallel over N libpq connections (the C loop in pqpath.c).

Three strategies: ``_refresh_serial`` (jobs=1, Django's connection, the caller's transaction),
``_refresh_parallel`` (jobs>1, one database) and ``_refresh_per_database`` (jobs>1, views that
belong to several databases). A plain REFRESH takes ACCESS EXCLUSIVE: every strategy waits for
that lock with a short lock_timeout and retries, so readers never queue behind it for long."""

from __future__ import annotations

__all__ = [
    "refresh_specific_views",
    "refresh_views",
    "RefreshResult",
    "RefreshInterrupted",
    "connection_params",
    "session_settings",
    "guarded_refresh",
    "loop_ready",
    "run_loop",
]

import logging
import signal
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from django.db import DEFAULT_DB_ALIAS, connections, router
from django.db import Error as DjangoDBError
from django.db.backends.base.base import BaseDatabaseWrapper

from django_pgviews_c import _core
from django_pgviews_c import view as pg
from django_pgviews_c.dberrors import (
    connection_is_lost,
    diag,
    ensure_connected,
    lost_connection_error,
    wait_until_reachable,
)
from django_pgviews_c.dependencies import get_views_dependants, get_views_dependencies, view_graph
from django_pgviews_c.exceptions import DatabaseError, PGViewsError, RefreshError
from django_pgviews_c.failures import duplicate_key_hint, missing_view_hint, restricted_path_hint
from django_pgviews_c.privileges import INSUFFICIENT_PRIVILEGE, refresh_denied
from django_pgviews_c.refreshlocks import (
    _describe_holders,
    _lock_settings,
    _LoopWaits,
    _waited_for,
    guarded_refresh,
)
from django_pgviews_c.runhistory import Captured, RunRecorder

logger = logging.getLogger("django_pgviews_c.refresh")

# ---- connections of the loop ------------------------------------------------------------------

# Connection parameters of Django's backend that are not libpq keywords: the driver's own, or
# settings Django applies after connecting (session_settings() carries those).
_NOT_LIBPQ = {
    "cursor_factory", "context", "prepare_threshold", "pool", "server_side_binding",
    "assume_role", "isolation_level", "connection_factory", "database",
}  # fmt: skip


def connection_params(connection: BaseDatabaseWrapper) -> dict[str, str]:
    """libpq keywords for a new connection to the same database as ``connection``. Every key of
    OPTIONS that is not one of Django's or the driver's own is passed to libpq, which refuses an
    unknown one by name ("invalid connection option")."""
    params = connection.get_connection_params()
    out = {k: str(v) for k, v in params.items() if k not in _NOT_LIBPQ and v is not None and v != ""}
    if "database" in params and "dbname" not in out:
        out["dbname"] = str(params["database"])
    out.setdefault("application_name", "django-pgviews-c refresh")
    return out


def session_settings(connection: BaseDatabaseWrapper) -> dict[str, str]:
    """What Django's backend sets on its connection after connecting (the time zone, the
    ``assume_role`` role, the ``isolation_level``), for the loop to set on each of its own
    connections, again after every reconnect."""
    session: dict[str, str] = {}
    if connection.timezone_name:
        session["TimeZone"] = str(connection.timezone_name)
    options = connection.settings_dict.get("OPTIONS") or {}
    if options.get("assume_role"):
        session["role"] = str(options["assume_role"])
    if options.get("isolation_level") is not None:
        from django.db.backends.postgresql.psycopg_any import IsolationLevel

        level = IsolationLevel(options["isolation_level"]).name
        session["default_transaction_isolation"] = level.replace("_", " ").lower()
    from django_pgviews_c.clientcheck import loop_session

    session.update(loop_session())  # the refresher's client check, inside checking_client()
    return session


_NOTICE_LEVELS = {"WARNING": logging.WARNING, "NOTICE": logging.INFO, "INFO": logging.INFO}


def _log_notice(label: str, severity: str, message: str) -> None:
    """A server NOTICE or WARNING met while refreshing, to the package's logger."""
    logger.log(_NOTICE_LEVELS.get(severity, logging.DEBUG), "%s: %s: %s", label, severity, message.strip())


# ---- results ------------------------------------------------------------------------------------


@dataclass
class RefreshResult:
    refreshed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    wall: float = 0.0

    @property
    def count(self) -> int:
        return len(self.refreshed)


class RefreshInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) during a refresh. ``refreshed`` were refreshed (committed) before it;
    ``not_refreshed`` were not: the running statements were cancelled and rolled back."""

    def __init__(
        self, refreshed: Sequence[str], not_refreshed: Sequence[str], signum: int = signal.SIGINT
    ) -> None:
        self.refreshed = list(refreshed)
        self.not_refreshed = list(not_refreshed)
        self.signum = signum
        super().__init__(self.summary())

    def summary(self) -> str:
        text = f"interrupted by {signal.Signals(self.signum).name}: "
        if not self.refreshed:
            return text + "no materialized view was refreshed, nothing was changed"
        text += f"refreshed before the interrupt: {', '.join(self.refreshed)}"
        if self.not_refreshed:
            text += f"; not refreshed (their refreshes were cancelled): {', '.join(self.not_refreshed)}"
        return text


def _failure_text(info: dict[str, Any]) -> str:
    """One failure as RefreshError shows it: the message, SQLSTATE, DETAIL, HINT, lock holders."""
    text = (info.get("message") or "failed").strip()
    if info.get("sqlstate") == "55000" and "concurrently" in text:
        text += " (its concurrent_index is missing in the database: run sync_pgviews to create it)"
    if info.get("holders") is not None:
        text += f"; {_describe_holders(info['holders'])}"
    if info.get("sqlstate"):
        text += f" (SQLSTATE {info['sqlstate']})"
    if info.get("detail"):
        text += f"\nDETAIL: {info['detail']}"
    if info.get("hint"):
        text += f"\nHINT: {info['hint']}"
    return text


# ---- what to refresh ----------------------------------------------------------------------------


@dataclass
class _Selection:
    """The materialized views to refresh, in dependency order, with their projected graph."""

    models: list[type[pg.MaterializedView]]
    deps: list[list[int]]  # positions in models of the ones each reads (directly or via views)
    captured: Captured | None = None  # sources the caller read before the run (RunRecorder)
    connections: Any = None  # the C loop's connections, opened before the run (_core.connect_loop)

    @property
    def labels(self) -> list[str]:
        return [m._meta.label for m in self.models]


def _select(models: Iterable[type[pg.View]] | None, using: str | None) -> _Selection:
    graph, nodes = view_graph()
    if models is not None:
        models = list(models)
        wanted = set(models)
        known = set(nodes)
        extra = list(dict.fromkeys(m for m in models if m not in known))
        if extra:  # views declared outside the project's registry
            graph, nodes = view_graph(nodes + extra)
        members = [i for i in graph.order() if nodes[i] in wanted]
    else:
        members = graph.order()
    alias = using or DEFAULT_DB_ALIAS
    matviews = [
        i
        for i in members
        if issubclass(nodes[i], pg.MaterializedView)
        and (using is None or nodes[i].get_view_connection(using=alias, restricted_mode=True) is not None)
    ]
    chosen = [cast("type[pg.MaterializedView]", nodes[i]) for i in matviews]  # issubclass above
    return _Selection(chosen, graph.project(matviews))


def _subset(sel: _Selection, keep: Sequence[int]) -> _Selection:
    position = {k: p for p, k in enumerate(keep)}
    return _Selection(
        [sel.models[k] for k in keep],
        [[position[d] for d in sel.deps[k] if d in position] for k in keep],
        sel.captured,
    )


def refresh_views(
    models: Iterable[type[pg.View]] | None = None,
    *,
    using: str | None = None,
    concurrently: bool = False,
    strict: bool = False,
    jobs: int = 1,
    progress: Callable[[str], None] | None = None,
    setup: str | None = None,
    captured: Captured | None = None,
    connections: Any = None,
    waits: Callable[[str], None] | None = None,
) -> RefreshResult:
    """Refresh the materialized views among ``models`` (default: all that belong to ``using``),
    each after the views it depends on. ``jobs`` > 1 refreshes independent views at once over
    that many new connections; a failure stops only the views that depend on it. ``captured``
    (by database alias, by model: the view's oid and sources snapshot) holds sources the caller
    read before the run, as the staleness check of a --stale pass does: their records keep
    those, and the run reads only the others. ``connections`` (what _core.connect_loop()
    returned for ``using``'s connection, with ``jobs`` connections) are the C loop's, opened
    beforehand, as a --stale pass opens them while its check runs; a run that needs no loop
    leaves them to the caller to close. ``waits`` (a command's output at -v 1): where a refresh
    says a lock wait of more than a second, naming the holder.

    Raises RefreshError naming each failed view (with the server's DETAIL and HINT) and those
    not refreshed because they depend on one; RefreshInterrupted (a KeyboardInterrupt) on
    Ctrl-C, saying which views were refreshed before it."""
    sel = _select(models, using)
    sel.captured = captured
    sel.connections = connections
    flags = [m.can_refresh_concurrently(concurrently, strict) for m in sel.models]
    result = RefreshResult()
    started = time.perf_counter()
    try:
        # The declarations are judged; a database that cannot be reached is said now, naming it,
        # before the history reads its sources or the loop opens connections of its own.
        for conn in {c.alias: c for c in (_refresh_connection(m, using) for m in sel.models)}.values():
            ensure_connected(conn)
        if jobs <= 1 or len(sel.models) <= 1:
            _refresh_serial(sel, flags, using, result, progress, asked=concurrently, waits=waits)
        elif using is None and _databases(sel) != [DEFAULT_DB_ALIAS]:
            _refresh_per_database(sel, flags, jobs, result, progress, setup, waits)
        else:
            _refresh_parallel(sel, flags, using or DEFAULT_DB_ALIAS, jobs, result, progress, setup, waits)
    except KeyboardInterrupt as exc:
        done = set(result.refreshed)
        not_done = [lb for lb in sel.labels if lb not in done]
        raise RefreshInterrupted(result.refreshed, not_done, getattr(exc, "signum", signal.SIGINT)) from exc
    result.wall = time.perf_counter() - started
    if result.failed:
        raise RefreshError(result.failed, result.skipped)
    return result


def _databases(sel: _Selection) -> list[str]:
    return list(dict.fromkeys(router.db_for_write(m) or DEFAULT_DB_ALIAS for m in sel.models))


def _refreshed(
    result: RefreshResult, label: str, seconds: float, progress: Callable[[str], None] | None
) -> None:
    result.refreshed.append(label)
    result.seconds[label] = seconds
    logger.info("pgview %s refreshed", label)
    if progress:
        progress(f"  refreshed {label}  {seconds:.3f}s")


def _refresh_connection(model: type[pg.View], using: str | None) -> BaseDatabaseWrapper:
    """The connection ``model`` refreshes on: ``using``, else the router's choice. Only an
    override of get_view_connection() returns None with restricted_mode=False."""
    conn = model.get_view_connection(using=using or router.db_for_write(model), restricted_mode=False)
    if conn is None:
        raise PGViewsError(
            f"{model._meta.label}: get_view_connection(restricted_mode=False) returned no connection"
        )
    return conn


def _refresh_serial(
    sel: _Selection,
    flags: list[bool],
    using: str | None,
    result: RefreshResult,
    progress: Callable[[str], None] | None,
    asked: bool = False,
    waits: Callable[[str], None] | None = None,
) -> None:
    """One view at a time on Django's connection, so the caller's transaction is what each
    refresh sees, in dependency order (declaration order among equals). The core's schedule
    says which view comes next and which views a failure stops."""
    schedule = _core.Schedule(sel.deps, [-float(k) for k in range(len(sel.models))])
    with RunRecorder(
        None,
        sel.models,
        flags,
        asked_concurrent=asked,
        connection_for=lambda m: _refresh_connection(m, using),
        captured=sel.captured,
    ) as recorder:
        while (k := schedule.next()) is not None:
            model = sel.models[k]
            label = model._meta.label
            conn = _refresh_connection(model, using)
            t0 = time.perf_counter()
            try:
                with recorder.recording(k):
                    pg.run_refresh(conn, model._meta.db_table, flags[k], label, say=waits)
            except DjangoDBError as exc:
                if connection_is_lost(conn, exc):
                    raise lost_connection_error(conn, f"refreshing {label}") from exc
                info = diag(exc)
                info["hint"] = restricted_path_hint(
                    exc, int(getattr(conn, "pg_version", 0) or 0), info["hint"]
                )
                info["hint"] = duplicate_key_hint(model, info["sqlstate"], info["hint"])
                info["hint"] = missing_view_hint(model, info, conn.alias)
                if info["sqlstate"] == INSUFFICIENT_PRIVILEGE:
                    info["message"] = refresh_denied(conn, model._meta.db_table, info["message"])
                result.failed[label] = _failure_text(info)
                if conn.in_atomic_block and conn.needs_rollback:
                    # The caller's transaction is aborted: nothing more can run in it.
                    done = set(result.refreshed) | set(result.failed)
                    raise RefreshError(result.failed, [lb for lb in sel.labels if lb not in done]) from exc
                result.skipped += [sel.labels[j] for j in schedule.done(k, False)]
                continue
            except DatabaseError as exc:  # ours: a lock that was not granted in time
                result.failed[label] = str(exc).removeprefix(f"{label}: ")
                result.skipped += [sel.labels[j] for j in schedule.done(k, False)]
                continue
            schedule.done(k, True)
            _refreshed(result, label, time.perf_counter() - t0, progress)


def _refresh_per_database(
    sel: _Selection,
    flags: list[bool],
    jobs: int,
    result: RefreshResult,
    progress: Callable[[str], None] | None,
    setup: str | None,
    waits: Callable[[str], None] | None = None,
) -> None:
    """Without ``using``, each view is refreshed on the database it belongs to, as with jobs=1:
    one parallel run per database, never every view over the default one's connections."""
    for db in _databases(sel):
        keep = [k for k, m in enumerate(sel.models) if (router.db_for_write(m) or DEFAULT_DB_ALIAS) == db]
        part = RefreshResult()
        try:
            _refresh_parallel(
                _subset(sel, keep), [flags[k] for k in keep], db, jobs, part, progress, setup, waits
            )
        finally:
            result.refreshed += part.refreshed
            result.seconds.update(part.seconds)
            result.failed.update(part.failed)
            result.skipped += part.skipped


def loop_ready(connection: BaseDatabaseWrapper) -> None:
    """Before the C loop opens its own connections to ``connection``'s database: the database
    is reachable, and no transaction is open whose data those connections could not see."""
    if connection.connection is None:
        wait_until_reachable(connection)  # psycopg2: a connect that hangs must not defer Ctrl-C
    if connection.in_atomic_block:
        raise PGViewsError(
            "refresh with jobs > 1 opens its own connections, which cannot see the data of the "
            "open transaction: run it outside transaction.atomic(), or with jobs=1"
        )


def run_loop(
    connection: BaseDatabaseWrapper,
    statements: Sequence[str],
    deps: Sequence[Sequence[int]],
    guards: Sequence[str | None],
    labels: Sequence[str],
    jobs: int,
    on_event: Callable[[int, str, float, dict[str, Any] | None], None],
    setup: str | None = None,
    early: Any = None,
) -> list[tuple[str, float, dict[str, Any] | None]]:
    """Run ``statements`` through the C loop over ``jobs`` new connections to ``connection``'s
    database (its session settings on each), each after the ones ``deps`` names; a statement
    with a guard (the relation a plain REFRESH locks) waits for its lock as guarded_refresh
    does. Server notices go to the package's logger under ``labels``. Returns (state, seconds,
    error) per statement. ``early``: the loop's connections opened beforehand
    (_core.connect_loop), taken over instead of connecting. When the server refuses some
    connections for its connection limit, the run goes on with those it made and says so (a
    warning); any other connect error raises. Call loop_ready() first."""

    def on_notice(k: int, severity: str, message: str) -> None:
        _log_notice(labels[k] if k >= 0 else f"database {connection.alias!r}", severity, message)

    def on_refused(opened: int, wanted: int, reason: str) -> None:
        _warn_refused(connection.alias, jobs, opened, wanted, reason)

    retries, short_ms, last_ms = _lock_settings()
    outcome = _core.run_parallel(
        connection_params(connection),
        statements,
        deps,
        None,
        jobs,
        setup=setup,
        on_event=on_event,
        session=session_settings(connection),
        guard=guards,
        on_notice=on_notice,
        lock_retries=retries,
        lock_timeout_ms=short_ms,
        last_lock_timeout_ms=last_ms,
        connections=early,
        on_refused=on_refused,
    )
    return list(outcome)


def _warn_refused(alias: str, jobs: int, opened: int, wanted: int, reason: str) -> None:
    """The server refused some of the loop's connections for its connection limit (max_connections,
    the slots reserved, a role's or database's CONNECTION LIMIT): the run goes on with the others."""
    logger.warning(
        "--jobs %d: the server accepted %d of %d connections to database %r (%s); refreshing with %d",
        jobs,
        opened,
        wanted,
        alias,
        reason.strip(),
        opened,
    )


def _refresh_parallel(
    sel: _Selection,
    flags: list[bool],
    alias: str,
    jobs: int,
    result: RefreshResult,
    progress: Callable[[str], None] | None,
    setup: str | None,
    waits: Callable[[str], None] | None = None,
) -> None:
    """The C loop over ``jobs`` new connections to ``alias``: each view starts as soon as the
    views it reads are refreshed, longest remaining chain first; a failure skips its dependants.
    ``waits``: where a lock wait is said, as the serial path says it."""
    connection = connections[alias]
    loop_ready(connection)
    names = [_core.qualified_name(*_core.split_table(m._meta.db_table)) for m in sel.models]
    if any(flags):
        # CONCURRENTLY is refused for a view that was never populated: refresh those plainly.
        with connection.cursor() as cursor:
            cursor.execute(_core.populated_sql(), [names])
            populated = [row[0] for row in cursor.fetchall()]
        flags = [f and ok for f, ok in zip(flags, populated, strict=True)]
    statements = [pg.refresh_statement(m._meta.db_table, f) for m, f in zip(sel.models, flags, strict=True)]
    labels = sel.labels
    recorder = RunRecorder(connection, sel.models, flags, captured=sel.captured)

    # Who held up a view whose last try met no holder of the view itself (a lock on a table it
    # reads), read while the holder still holds it.
    elsewhere: dict[int, str] = {}

    retrying = _LoopWaits(connection, sel.models, waits)

    def on_event(k: int, state: str, seconds: float, error: dict[str, Any] | None) -> None:
        if state == "retrying":  # a lock was busy: the loop tries again
            retrying(k, seconds)
            return
        recorder.on_event(k, state, seconds, error)
        if error and error.get("sqlstate") == "55P03" and error.get("holders") == []:
            elsewhere[k] = _waited_for(connection, sel.models[k]._meta.db_table)
        if state == "ok":
            _refreshed(result, labels[k], seconds, progress)
        elif progress and state != "running":
            text = f"  {state:<9} {labels[k]}"
            if error:
                text += f"  {error['message'].strip()}"
            progress(text)

    # Every refresh waits for its locks in guarded tries, concurrent ones too: they block no
    # reader, but behind a data load holding a source table they would wait without a word.
    guards = list(names)
    with recorder:  # the records written once the loop ends (or fails)
        outcome = run_loop(
            connection, statements, sel.deps, guards, labels, jobs, on_event, setup, sel.connections
        )
    _loop_outcome(connection, sel, outcome, elsewhere, result)


def _loop_outcome(
    connection: BaseDatabaseWrapper,
    sel: _Selection,
    outcome: Sequence[tuple[str, float, dict[str, Any] | None]],
    elsewhere: dict[int, str],
    result: RefreshResult,
) -> None:
    """The loop's failures and skips into ``result``; a failure's text says who held it up."""
    for k, (label, (state, _seconds, error)) in enumerate(zip(sel.labels, outcome, strict=True)):
        if state == "failed":
            if error and error.get("sqlstate") == INSUFFICIENT_PRIVILEGE:
                table = sel.models[k]._meta.db_table
                error = {**error, "message": refresh_denied(connection, table, error["message"])}
            if k in elsewhere and error:
                error = {**error, "holders": None, "message": f"{error['message'].strip()}; {elsewhere[k]}"}
            if error:
                error = {
                    **error,
                    "hint": duplicate_key_hint(sel.models[k], error.get("sqlstate"), error.get("hint")),
                }
                error["hint"] = missing_view_hint(sel.models[k], error, connection.alias)
            result.failed[label] = _failure_text(error or {})
        elif state != "ok":
            result.skipped.append(label)


def refresh_specific_views(
    to_refresh: Iterable[type[pg.View]],
    concurrently: bool = True,
    strict: bool = False,
    jobs: int = 1,
    using: str | None = None,
) -> int:
    """Refresh the given views with every view they depend on and every view that depends on
    them, in dependency order (any depth). Returns the number of materialized views refreshed."""
    selected = set(to_refresh)
    selected |= set(get_views_dependants(selected))
    selected |= set(get_views_dependencies(selected))
    return refresh_views(selected, using=using, concurrently=concurrently, strict=strict, jobs=jobs).count
