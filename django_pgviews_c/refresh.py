"""Refreshing materialized views: one at a time on Django's connection, or the whole dependency
graph in parallel over N libpq connections (the C loop in pqpath.c)."""

from __future__ import annotations

__all__ = ["refresh_specific_views", "refresh_views", "RefreshResult", "connection_params", "session_settings"]

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, router
from django.db import Error as DjangoDBError
from django.db.backends.base.base import BaseDatabaseWrapper

from django_pgviews_c import _core
from django_pgviews_c import view as pg
from django_pgviews_c.dberrors import connection_is_lost, lost_connection_error
from django_pgviews_c.dependencies import get_views_dependants, get_views_dependencies, view_graph
from django_pgviews_c.exceptions import PGViewsError, RefreshError

logger = logging.getLogger("django_pgviews_c.refresh")

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
    return session


_NOTICE_LEVELS = {"WARNING": logging.WARNING, "NOTICE": logging.INFO, "INFO": logging.INFO}


def _log_notice(label: str, severity: str, message: str) -> None:
    """A server NOTICE or WARNING met while refreshing, to the package's logger."""
    logger.log(_NOTICE_LEVELS.get(severity, logging.DEBUG), "%s: %s: %s", label, severity, message.strip())


_POPULATED_SQL = """
SELECT coalesce((SELECT c.relispopulated FROM pg_catalog.pg_class c
                 WHERE c.oid = pg_catalog.to_regclass(t)), true)
FROM unnest(%s::text[]) WITH ORDINALITY AS u(t, n) ORDER BY n
"""


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


def _statement(model: type[pg.MaterializedView], concurrently: bool, strict: bool) -> str:
    concurrently = model.can_refresh_concurrently(concurrently, strict)
    return pg.refresh_statement(model._meta.db_table, concurrently)


def refresh_views(
    models: Iterable[type[pg.View]] | None = None,
    *,
    using: str | None = None,
    concurrently: bool = False,
    strict: bool = False,
    jobs: int = 1,
    progress: Callable[[str], None] | None = None,
    setup: str | None = None,
) -> RefreshResult:
    """Refresh the materialized views among ``models`` (default: all that belong to ``using``),
    each after the views it depends on. ``jobs`` > 1 refreshes independent views at once over
    that many new connections; a failure stops only the views that depend on it."""
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
    statements = [_statement(nodes[i], concurrently, strict) for i in matviews]
    result = RefreshResult()
    started = time.perf_counter()
    if jobs <= 1 or len(matviews) <= 1:
        failed: dict[str, str] = {}
        blocked: set[int] = set()  # views that read a failed one
        for k, i in enumerate(matviews):
            model = nodes[i]
            label = model._meta.label
            if i in blocked:
                result.skipped.append(label)
                continue
            t0 = time.perf_counter()
            conn = model.get_view_connection(using=using or router.db_for_write(model), restricted_mode=False)
            try:
                pg.run_refresh(
                    conn, model._meta.db_table, concurrently and model._concurrent_index is not None
                )
            except DjangoDBError as exc:
                if connection_is_lost(conn, exc):
                    raise lost_connection_error(conn, f"refreshing {label}") from exc
                info = str(exc.__cause__ or exc).strip().splitlines()[0]
                state = getattr(exc.__cause__, "sqlstate", getattr(exc.__cause__, "pgcode", None))
                failed[label] = info + (f" (SQLSTATE {state})" if state else "")
                if conn.in_atomic_block:
                    # The caller's transaction is aborted: nothing more can run in it.
                    rest = [nodes[j]._meta.label for j in matviews[k + 1 :]]
                    raise RefreshError(failed, rest) from exc
                blocked.update(graph.dependants([i]))
                continue
            result.refreshed.append(label)
            result.seconds[label] = time.perf_counter() - t0
            logger.info("pgview %s refreshed", label)
            if progress:
                progress(f"  refreshed {label}  {result.seconds[label]:.3f}s")
        if failed:
            raise RefreshError(failed, result.skipped)
        result.wall = time.perf_counter() - started
        return result

    if using is None:
        # Without `using`, each view is refreshed on the database it belongs to, as with jobs=1:
        # one parallel run per database, never every view over the default one's connections.
        groups: dict[str, list[type[pg.View]]] = {}
        for i in matviews:
            groups.setdefault(router.db_for_write(nodes[i]) or DEFAULT_DB_ALIAS, []).append(nodes[i])
        if list(groups) != [DEFAULT_DB_ALIAS]:
            failed: dict[str, str] = {}
            skipped: list[str] = []
            for db, group in groups.items():
                try:
                    part = refresh_views(
                        group,
                        using=db,
                        concurrently=concurrently,
                        strict=strict,
                        jobs=jobs,
                        progress=progress,
                        setup=setup,
                    )
                except RefreshError as exc:
                    failed.update(exc.failures)
                    skipped += exc.skipped
                    continue
                result.refreshed += part.refreshed
                result.seconds.update(part.seconds)
            result.wall = time.perf_counter() - started
            if failed:
                raise RefreshError(failed, skipped)
            return result

    connection = connections[alias]
    if connection.in_atomic_block:
        raise PGViewsError(
            "refresh with jobs > 1 opens its own connections, which cannot see the data of the "
            "open transaction: run it outside transaction.atomic(), or with jobs=1"
        )
    if concurrently:
        # CONCURRENTLY is refused for a view that was never populated: refresh those plainly.
        tables = [nodes[i]._meta.db_table for i in matviews]
        with connection.cursor() as cursor:
            cursor.execute(_POPULATED_SQL, [[_core.qualified_name(*_core.split_table(t)) for t in tables]])
            populated = [row[0] for row in cursor.fetchall()]
        statements = [
            sql if ok else pg.refresh_statement(table, False)
            for sql, ok, table in zip(statements, populated, tables, strict=True)
        ]
    position = {node: k for k, node in enumerate(matviews)}
    deps = [[position[j] for j in graph.dependencies([i]) if j in position] for i in matviews]
    weights = [1.0 if issubclass(m, pg.MaterializedView) else 0.0 for m in nodes]
    chain = graph.critical_path(weights)
    priority = [chain[i] for i in matviews]
    labels = [nodes[i]._meta.label for i in matviews]

    def on_event(k: int, state: str, seconds: float, error: dict[str, Any] | None) -> None:
        if state == "running":
            return
        if progress:
            text = f"  {state:<9} {labels[k]}"
            if state in ("ok", "failed"):
                text += f"  {seconds:.3f}s"
            if error:
                text += f"  {error['message'].strip()}"
            progress(text)

    def on_notice(k: int, severity: str, message: str) -> None:
        _log_notice(labels[k] if k >= 0 else f"database {alias!r}", severity, message)

    outcome = _core.run_parallel(
        connection_params(connection),
        statements,
        deps,
        priority,
        jobs,
        setup=setup,
        on_event=on_event,
        session=session_settings(connection),
        on_notice=on_notice,
    )
    for k, (state, seconds, error) in enumerate(outcome):
        label = labels[k]
        if state == "ok":
            result.refreshed.append(label)
            result.seconds[label] = seconds
            logger.info("pgview %s refreshed", label)
        elif state == "failed":
            message = error["message"].strip() if error else "failed"
            if error and error.get("sqlstate"):
                message += f" (SQLSTATE {error['sqlstate']})"
            result.failed[label] = message
        else:
            result.skipped.append(label)
    result.wall = time.perf_counter() - started
    if result.failed:
        raise RefreshError(result.failed, result.skipped)
    return result


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
    everything = selected
    return refresh_views(everything, using=using, concurrently=concurrently, strict=strict, jobs=jobs).count
