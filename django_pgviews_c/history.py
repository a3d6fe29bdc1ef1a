"""Refresh history: every refresh this app performs leaves one RefreshRecord in the database
that holds the view, written on the same connection inside the caller's transaction (a refresh
rolled back with it leaves no record). Recording never fails a refresh: the insert runs in a
savepoint, and a failure to record is logged as a warning. The last PGVIEWS_HISTORY_KEEP (50)
records of each view are kept.

The record also keeps, per relation the view reads, the relfilenode and write counter captured
when the refresh started: the staleness check (freshness.py) compares against it."""

from __future__ import annotations

__all__ = [
    "recording", "refresh_recorded", "record", "capture", "latest", "history_allowed", "CreateHistoryModel",
    "history_missing", "missing_history", "missing_failures", "migrate_command",
]  # fmt: skip

import contextlib
import contextvars
import datetime as dt
import json
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, migrations, router, transaction
from django.db import Error as DjangoDBError
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone

from django_pgviews_c import _core
from django_pgviews_c import view as pg
from django_pgviews_c.dberrors import diag
from django_pgviews_c.exceptions import PGViewsError

if TYPE_CHECKING:
    from django.db.models import QuerySet

    from django_pgviews_c.models import RefreshRecord

logger = logging.getLogger("django_pgviews_c.history")

TABLE = "django_pgviews_c_refresh"
_TABLE_Q = _core.qualified_name(None, TABLE)

#: Records kept per view (setting PGVIEWS_HISTORY_KEEP).
DEFAULT_KEEP = 50
#: Views up to this many bytes get an exact row count in their record (PGVIEWS_HISTORY_COUNT_ROWS_UP_TO).
DEFAULT_COUNT_LIMIT = 64 * 1024 * 1024

# One statement: insert the record (rows counted when the view is small enough) and drop the
# records of that view beyond the newest `keep`. The DELETE does not see the new row (same
# snapshot), so it keeps keep - 1 older ones.
_INSERT_SQL = _core.query_sql("history_insert")


def _error(exc: BaseException) -> dict[str, Any]:
    """sqlstate and message of a failed refresh: a database error, or ours (a lock not granted
    in time, which carries the SQLSTATE it ended with)."""
    if isinstance(exc, PGViewsError):
        return {"sqlstate": getattr(exc, "sqlstate", None) or "", "message": str(exc)}
    return diag(exc)


#: The warnings already given in the warn_once() block running (None outside one).
_said: contextvars.ContextVar[set[str] | None] = contextvars.ContextVar(
    "pgviews_c_history_said", default=None
)


@contextlib.contextmanager
def warn_once() -> Iterator[None]:
    """Within the block, each warning about reading the history is given once, not once per
    read (a --due pass, pgviews_status and the refresher each read it more than once). A block
    inside another shares the outer one's."""
    if _said.get() is not None:
        yield
        return
    token = _said.set(set())
    try:
        yield
    finally:
        _said.reset(token)


def _warn(text: str) -> None:
    said = _said.get()
    if said is not None:
        if text in said:
            return
        said.add(text)
    logger.warning("%s", text)


_PRESENT_SQL = _core.query_sql("history_present")


def history_missing(alias: str) -> bool:
    """Whether the history table belongs on database ``alias`` (PGVIEWS_HISTORY on, and
    history_allowed) but is not there: the app's migrations are not applied on it. False when
    the question cannot be asked (the connection fails: the caller says that on its own)."""
    from django.db import connections

    if not setting("PGVIEWS_HISTORY", True) or not history_allowed(alias):
        return False
    connection = connections[alias]
    try:
        with transaction.atomic(using=alias), connection.cursor() as cursor:
            cursor.execute(_PRESENT_SQL)
            row = cursor.fetchone()
    except DjangoDBError:
        return False
    return not (row and row[0])


def migrate_command(alias: str) -> str:
    """What creates the history table on ``alias``: the app's migrations."""
    return "manage.py migrate" + (f" --database {alias}" if alias != DEFAULT_DB_ALIAS else "")


def missing_history(alias: str, *, stale: bool = True) -> str:
    """What every command and task says where history_missing(alias): the table is missing on
    ``alias`` because the app's migrations are not applied there, and (``stale``) what that does
    to a refresh pass. The caller adds what it does about it, and migrate_command(alias)."""
    text = (
        f"the refresh history table ({TABLE}) is missing on database {alias!r} (the app's "
        "migrations are not applied)"
    )
    if stale:
        text += "; without it every view counts as stale and would be refreshed on every pass"
    return text


#: Per alias: how many reads or writes of the history have failed in this process because the
#: table is missing (SQLSTATE 42P01). Whoever remembers having seen the table (the refresher)
#: asks history_missing() again once this moves.
_missing_failures: dict[str, int] = {}


def missing_failures(alias: str) -> int:
    """How many reads or writes of the history on ``alias`` failed on the missing table so far."""
    return _missing_failures.get(alias, 0)


def _hint(exc: BaseException, connection: BaseDatabaseWrapper) -> str:
    """The advice a failed read or write of the history adds to its warning, in the words of
    migrate_command(); a failure on the missing table is counted (missing_failures)."""
    if diag(exc)["sqlstate"] == "42P01":  # undefined_table
        _missing_failures[connection.alias] = missing_failures(connection.alias) + 1
        return f" (run {migrate_command(connection.alias)})"
    return ""


def setting(name: str, default: Any) -> Any:
    return getattr(settings, name, default)


def history_allowed(alias: str) -> bool:
    """Whether the history table belongs on database ``alias``: where routers allow this app's
    migrations, and wherever a view may be migrated (the records live beside the views)."""
    if router.allow_migrate(alias, "django_pgviews_c", model_name="refreshrecord"):
        return True
    from django_pgviews_c.declarations import view_models

    return any(
        issubclass(m, pg.MaterializedView) and m.get_view_connection(using=alias, restricted_mode=True)
        for m in view_models()
    )


class CreateHistoryModel(migrations.CreateModel):
    """CreateModel of the history table, created on every database that holds views."""

    def allow_migrate_model(self, connection_alias: BaseDatabaseWrapper | str, model: Any) -> bool:
        if not isinstance(connection_alias, str):
            connection_alias = connection_alias.alias
        return history_allowed(connection_alias)

    def deconstruct(self) -> tuple[str, Sequence[Any], dict[str, Any]]:
        _, args, kwargs = super().deconstruct()
        return "CreateModel", args, kwargs


def materialized_models(models: Iterable[type[pg.View]] | None, using: str) -> list[type[pg.View]]:
    """The materialized views among ``models`` (default: all) that belong to ``using``, in
    dependency order."""
    from django_pgviews_c.dependencies import view_graph

    graph, nodes = view_graph()
    wanted = set(models) if models is not None else None
    extra = [m for m in wanted or () if m not in set(nodes)]
    if extra:  # views declared outside the project's registry: order by what is known
        nodes = nodes + extra
        known = {m._meta.label for m in nodes}
        graph = _core.Graph(
            [m._meta.label for m in nodes],
            [[d for d in pg.declared_dependencies(m) if d in known] for m in nodes],
        )
    return [
        nodes[i]
        for i in graph.order()
        if (wanted is None or nodes[i] in wanted)
        and issubclass(nodes[i], pg.MaterializedView)
        and nodes[i].get_view_connection(using=using, restricted_mode=True) is not None
    ]


def capture(connection: BaseDatabaseWrapper, models: Sequence[type[pg.View]]) -> list[dict[str, Any] | None]:
    """The sources snapshot of each model, read now (one query). Never raises: a failure to
    read gives None (the view then counts as stale until its next recorded refresh)."""
    return [snapshot for _, snapshot in capture_with_oids(connection, models)]


def capture_with_oids(
    connection: BaseDatabaseWrapper, models: Sequence[type[pg.View]]
) -> list[tuple[str | None, dict[str, Any] | None]]:
    """capture(), with each model's own oid (as the snapshots name relations: a str), None
    where it does not exist or could not be read."""
    from django_pgviews_c.freshness import closure

    try:
        states = closure(connection, models)  # in a savepoint when a transaction is open
    except DjangoDBError as exc:
        logger.warning(
            "could not read the sources of %s for the refresh history: %s",
            ", ".join(m._meta.label for m in models),
            diag(exc)["message"],
        )
        return [(None, None) for _ in models]
    return [(str(s.oid), s.snapshot()) if s.oid is not None else (None, None) for s in states]


def record(
    connection: BaseDatabaseWrapper,
    model: type[pg.View],
    *,
    started_at: dt.datetime,
    duration: float,
    concurrent: bool,
    plain_reason: str = "",
    error: dict[str, Any] | None = None,
    sources: dict[str, Any] | None = None,
) -> bool:
    """Write one record on ``connection``, inside its transaction if one is open. Returns
    whether it was written; a failure is logged, never raised. One call of the function a run's
    records go through (migration 0005; runhistory.send_records): planned once per server
    backend, and pruning the view's records once every PRUNE_SLACK, as Model.refresh()'s one
    round trip does; where it is missing, the statements as text."""
    from django_pgviews_c.runhistory import Done, send_records

    done = Done(model, started_at, duration, concurrent, plain_reason, error, sources)
    try:
        send_records(connection, [done])
    except DjangoDBError as exc:
        logger.warning(
            "the refresh of %s was not recorded in its history (%s): %s%s",
            model._meta.label, TABLE, diag(exc)["message"], _hint(exc, connection),
        )  # fmt: skip
        return False
    return True


@contextlib.contextmanager
def recording(
    connection: BaseDatabaseWrapper,
    model: type[pg.View],
    *,
    concurrent: bool,
    asked_concurrent: bool = False,
    plain_reason: str = "",
) -> Iterator[dict[str, Any]]:
    """Record the refresh run in the ``with`` block on ``connection``: the sources are captured
    before it starts, the outcome (ok, or the error with its SQLSTATE) after. The block may set
    ``info["concurrent"]`` / ``info["plain_reason"]`` when it changes the mode on its way."""
    if not setting("PGVIEWS_HISTORY", True):
        yield {}
        return
    if asked_concurrent and not concurrent and not plain_reason:
        plain_reason = "no concurrent_index"
    sources = capture(connection, [model])[0]
    if concurrent and sources is not None and not sources.get("populated", True):
        concurrent, plain_reason = False, "not populated"
    info: dict[str, Any] = {"concurrent": concurrent, "plain_reason": plain_reason}
    started_at = timezone.now()
    t0 = time.perf_counter()
    try:
        yield info
    except (DjangoDBError, PGViewsError) as exc:
        record(connection, model, started_at=started_at, duration=time.perf_counter() - t0,
               concurrent=info["concurrent"], plain_reason=info["plain_reason"], error=_error(exc),
               sources=sources)  # fmt: skip
        raise
    record(connection, model, started_at=started_at, duration=time.perf_counter() - t0,
           concurrent=info["concurrent"], plain_reason=info["plain_reason"], sources=sources)  # fmt: skip


# Model.refresh() outside a transaction where migration 0007's function is missing (refreshfn.py
# calls it elsewhere), in one round trip: capture, REFRESH and record in one transaction of its
# own. The capture comes first, so a write committed between it and the
# REFRESH's snapshot costs one extra refresh, never a missed one. Two savepoints tell, if the
# script fails, which part failed: the record (rolled back alone, the refresh kept), the REFRESH
# (the whole transaction rolled back; recorded as a failure), or the capture (rolled back; the
# refresh is done again the ordinary way, which captures on its own). The capture and the record
# are calls of the functions of migration 0004 (historyfn.py), planned once per server backend;
# where those are missing, the same script with their statements written out.
_CAPTURE_SQL = {False: _core.query_sql("capture"), True: _core.query_sql("capture_exact")}
_CAPTURE_CALL = _core.query_sql("history_capture_call")
_RECORD_CALL = _core.query_sql("history_record_call")
# READ COMMITTED whatever default_transaction_isolation says: the REFRESH then takes its snapshot
# after the capture. Under REPEATABLE READ the capture's own statement would take the snapshot
# the REFRESH reads, before the capture had read the counters.
_BEGIN = "BEGIN ISOLATION LEVEL READ COMMITTED"
_REFRESH_SAVEPOINT = "SAVEPOINT pgvc_refresh"
_RECORD_SAVEPOINT = "SAVEPOINT pgvc_record"
_KEEP_REFRESH = "ROLLBACK TO SAVEPOINT pgvc_record; COMMIT"
_FAILED_REFRESH = "ROLLBACK TO SAVEPOINT pgvc_refresh"
# The REFRESH retries a lock wait (refresh.guarded_refresh), and a concurrent one of a view that
# was never populated is done plainly (view.run_refresh): both are the ordinary path's.
_ORDINARY_PATH = ("55P03", "0A000")


def _one_trip_sql(model: type[pg.View], concurrent: bool, short_ms: int, functions: bool = True) -> str:
    from django_pgviews_c.freshness import is_exact

    db_table = model._meta.db_table
    key = (db_table, concurrent, short_ms, is_exact(model), functions)
    sql = _one_trip_cache.get(key)
    if sql is None:
        refresh = pg.refresh_statement(db_table, concurrent).replace("%", "%%")
        refresh = _core.query_sql("lock_guard", ms=short_ms) + refresh + _core.query_sql("lock_restore")
        capture, record = (
            (_CAPTURE_CALL, _RECORD_CALL)
            if functions
            else (_CAPTURE_SQL[key[3]], _core.query_sql("history_insert_captured", table=db_table))
        )
        sql = _one_trip_cache[key] = ";\n".join([
            _BEGIN, capture, _REFRESH_SAVEPOINT, refresh, _RECORD_SAVEPOINT, record,
            "RELEASE SAVEPOINT pgvc_record", "COMMIT",
        ])  # fmt: skip
    return sql


_one_trip_cache: dict[tuple[str, bool, int, bool, bool], str] = {}


def _one_trip_params(model: type[pg.View], plain_reason: str, concurrent: bool, functions: bool) -> list[Any]:
    from django_pgviews_c.freshness import is_exact
    from django_pgviews_c.historyfn import PRUNE_SLACK

    label, db_table = model._meta.label, model._meta.db_table
    name = _core.qualified_name(*_core.split_table(db_table))
    keep = max(1, int(setting("PGVIEWS_HISTORY_KEEP", DEFAULT_KEEP)))
    limit = int(setting("PGVIEWS_HISTORY_COUNT_ROWS_UP_TO", DEFAULT_COUNT_LIMIT))
    started_at = timezone.now()
    if functions:
        fn_params = [
            name,
            is_exact(model),
            label,
            db_table,
            started_at,
            name,
            limit,
            concurrent,
            plain_reason,
        ]
        return [*fn_params, keep, PRUNE_SLACK]
    return [[name], label, db_table, started_at, limit, name, concurrent, plain_reason, True, "", "",
            label, label, keep - 1]  # fmt: skip


def refresh_recorded(
    connection: BaseDatabaseWrapper, model: type[pg.View], *, concurrent: bool, asked_concurrent: bool
) -> bool:
    """Refresh ``model`` and record it in one round trip, when ``connection`` is in autocommit
    outside any transaction. Returns False when the caller must refresh the ordinary way
    (``recording`` around ``run_refresh``): inside a transaction, with the history off, after
    a lock wait or a concurrent refresh of a view never populated. A failed REFRESH is recorded
    and raised; a failure to record is logged, never raised."""
    if not setting("PGVIEWS_HISTORY", True) or connection.in_atomic_block:
        return False
    connection.ensure_connection()
    if not connection.get_autocommit():
        return False
    from django_pgviews_c.historyfn import forget_functions, missing_function, uses_functions
    from django_pgviews_c.refreshlocks import _lock_settings

    label = model._meta.label
    plain_reason = "no concurrent_index" if asked_concurrent and not concurrent else ""
    functions = uses_functions(connection)
    sql = _one_trip_sql(model, concurrent, _lock_settings()[1], functions)
    params = _one_trip_params(model, plain_reason, concurrent, functions)
    t0 = time.perf_counter()
    try:
        _execute(connection, sql, params)
        return True
    except DjangoDBError as exc:
        gone = functions and missing_function(exc)
        if gone:
            forget_functions(connection)
        if _run(connection, _KEEP_REFRESH):
            logger.warning(
                "the refresh of %s was not recorded in its history (%s): %s%s",
                label, TABLE, diag(exc)["message"], _hint(exc, connection),
            )  # fmt: skip
            return True
        refresh_failed = _run(connection, _FAILED_REFRESH)
        _run(connection, "ROLLBACK")
        if not refresh_failed and gone:  # nothing ran: the same trip without the functions
            return refresh_recorded(
                connection, model, concurrent=concurrent, asked_concurrent=asked_concurrent
            )
        if not refresh_failed or diag(exc)["sqlstate"] in _ORDINARY_PATH:
            return False
        record(connection, model, started_at=params[4 if functions else 3], duration=time.perf_counter() - t0,
               concurrent=concurrent, plain_reason=plain_reason, error=_error(exc))  # fmt: skip
        raise
    except BaseException:
        _run(connection, "ROLLBACK")  # Ctrl-C: the transaction must not stay open
        raise


def _run(connection: BaseDatabaseWrapper, sql: str) -> bool:
    """Transaction control after a failed script: whether it succeeded."""
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql)
    except DjangoDBError:
        return False
    return True


def _execute(connection: BaseDatabaseWrapper, sql: str, params: list[Any]) -> None:
    """``sql`` with ``params`` bound on the client (several statements), on the driver's cursor
    when nothing would observe Django's wrapper (as view._execute_fast)."""
    from django_pgviews_c.dberrors import _binds_server_side, execute_script

    raw = connection.connection
    if not (connection.queries_logged or connection.execute_wrappers or raw is None):
        try:
            cursor = pg._raw_cursors.get(raw)
        except TypeError:
            cursor = None
        if cursor is None or cursor.closed:
            cursor = raw.cursor()
            if _binds_server_side(cursor):
                import psycopg

                cursor = psycopg.ClientCursor(raw)
            with contextlib.suppress(TypeError):
                pg._raw_cursors[raw] = cursor
        if not _binds_server_side(cursor):
            with connection.wrap_database_errors:
                cursor.execute(sql, params)
            return
    with connection.cursor() as cursor:
        execute_script(cursor, sql, params)


@dataclass
class Record:
    """A refresh record as the staleness check reads it (the fields of RefreshRecord)."""

    id: int
    view: str
    ok: bool
    started_at: dt.datetime
    duration: float
    rows: int | None
    concurrent: bool
    plain_reason: str
    sqlstate: str
    message: str
    sources: dict[str, Any] | None

    @property
    def mode(self) -> str:
        return "concurrent" if self.concurrent else "plain"


# The newest successful and the newest failed record of each view, in one query (the index on
# (view, -id) serves it); the sources only for the successful one.
_LATEST_SQL = _core.query_sql("history_latest")


def latest(
    connection: BaseDatabaseWrapper, labels: Sequence[str]
) -> tuple[dict[str, Record], dict[str, Record]]:
    """(last successful record, last record) of each label that has any, in one query.
    Empty when the history table is missing (not migrated on this database)."""
    if not labels:
        return {}, {}
    try:
        if connection.in_atomic_block:
            with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
                cursor.execute(_LATEST_SQL, [list(labels)])
                rows = cursor.fetchall()
        else:
            with connection.cursor() as cursor:
                cursor.execute(_LATEST_SQL, [list(labels)])
                rows = cursor.fetchall()
    except DjangoDBError as exc:
        _warn(f"could not read the refresh history ({TABLE}) on {connection.alias!r}: "
              f"{diag(exc)['message']}{_hint(exc, connection)}")  # fmt: skip
        return {}, {}
    ok: dict[str, Record] = {}
    newest: dict[str, Record] = {}
    for row in rows:
        sources = row[10]
        if isinstance(sources, (str, bytes)):  # Django hands jsonb over undecoded
            sources = json.loads(sources)
        head = cast("tuple[int, str, bool, dt.datetime, float, int | None, bool, str, str, str]", row[:10])
        rec = Record(*head, sources)
        if rec.ok:
            ok[rec.view] = rec
        if rec.view not in newest or rec.id > newest[rec.view].id:
            newest[rec.view] = rec
    return ok, newest


def records(model: type[pg.View], using: str | None = None) -> QuerySet[RefreshRecord]:
    """The recorded refreshes of ``model``, newest first (a QuerySet)."""
    from django_pgviews_c.models import RefreshRecord

    alias = using or router.db_for_write(model) or DEFAULT_DB_ALIAS
    return RefreshRecord.objects.using(alias).filter(view=model._meta.label).order_by("-id")
