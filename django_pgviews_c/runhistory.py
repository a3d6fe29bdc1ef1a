"""Recording the refreshes of a refresh_views() run (refresh_pgviews with or without --jobs,
--stale, --due, refresh_specific_views, the admin's "Refresh all stale").

The sources of every view are captured before the run starts, in one query per database (a write
after that costs at most one extra refresh, never a missed one). As each refresh ends, its record
is kept in memory; the records are written together, on Django's connection to the database that
holds the views, inside its transaction when one is open (a run rolled back with the caller's
transaction leaves none): at the end of the run (the exit of ``with RunRecorder(...)``, an
exception's included), and during a long run whenever FLUSH_RECORDS are waiting or the oldest has
waited FLUSH_SECONDS. So the C loop's callback no longer waits for a round trip per view, during
which it started no new refresh. Once every refresh of a C loop's run has started, the loop has
nothing left to start: from then on each ended refresh's record is written at once, while the
last refreshes run, rather than all of them after the last one.

Each write is one call of ``django_pgviews_c_record_run`` (migration 0005; historyfn.py), whose
plan is made once per server backend: it counts each successful view's rows, inserts the records
in the order the refreshes ended and deletes the records of the views that have more than
PGVIEWS_HISTORY_KEEP + PRUNE_SLACK, back to PGVIEWS_HISTORY_KEEP. Where the function is missing,
the call fails with 42883 before anything was written, and that connection sends the statements
as text from then on (``history_insert_many`` for the successful ones, one statement, pruned on
every write).

The rows are counted when the records are written, not as each refresh ends: a materialized view
changes only by a REFRESH and the run refreshes each view once, so the count is the one its
refresh left (unless another session refreshes it meanwhile, as it could before the record).

A materialized view that another view of the run reads is read again as soon as its refresh ends
(relfilenode and write counter, one query; the C loop calls on_event before it starts the views
that wait for it), so the views that read it record it as they saw it. Views no other view of the
run reads cost no round trip until the write.

Recording never fails a refresh: a failure to write is logged as a warning naming the views (they
then count as stale until their next recorded refresh)."""

from __future__ import annotations

__all__ = ["RunRecorder", "Captured", "FLUSH_RECORDS", "FLUSH_SECONDS", "write_records", "send_records"]

import contextlib
import datetime as dt
import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from django.db import Error as DjangoDBError
from django.db import transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone

from django_pgviews_c import _core
from django_pgviews_c import view as pg
from django_pgviews_c.dberrors import diag, execute_script
from django_pgviews_c.exceptions import PGViewsError
from django_pgviews_c.history import (
    _INSERT_SQL,
    DEFAULT_COUNT_LIMIT,
    DEFAULT_KEEP,
    TABLE,
    _error,
    _execute,
    _hint,
    capture_with_oids,
    logger,
    setting,
)  # fmt: skip

#: Records waiting in a run before they are written, without waiting for its end.
FLUSH_RECORDS = 50
#: Seconds the oldest waiting record of a run waits, at most, before they are written (checked
#: when a refresh ends).
FLUSH_SECONDS = 5.0

_RUN_CALL = _core.query_sql("history_record_run_call")

#: Sources read before a run by its caller, by database alias, then by model: the view's own oid
#: (None: it does not exist) and its sources snapshot (None: they could not be read).
Captured = Mapping[str, Mapping[type[pg.View], tuple[str | None, dict[str, Any] | None]]]
_AFTER_SQL = _core.query_sql("history_after")


@dataclass
class Done:
    """One ended refresh of a run, to record."""

    model: type[pg.View]
    started_at: dt.datetime
    seconds: float
    concurrent: bool
    plain_reason: str
    error: dict[str, Any] | None
    sources: dict[str, Any] | None


class RunRecorder:
    """Records a refresh_views() run; use it as a context manager, whose exit writes what is
    still waiting. Serial runs wrap each refresh in ``recording(k)`` (the connection of each view
    comes from ``connection_for``); the C loop's runs pass ``on_event``, and their records are
    written on ``connection`` (Django's)."""

    def __init__(
        self,
        connection: BaseDatabaseWrapper | None,
        models: Sequence[type[pg.View]],
        concurrent: Sequence[bool],
        *,
        asked_concurrent: bool = False,
        connection_for: Callable[[type[pg.View]], BaseDatabaseWrapper] | None = None,
        captured: Captured | None = None,
    ) -> None:
        self.models = list(models)
        self.given = captured or {}
        self.concurrent = list(concurrent)
        self.asked = asked_concurrent
        if connection_for is None:
            if connection is None:
                raise TypeError("RunRecorder: give connection or connection_for")
            fixed = connection

            def connection_for(model: type[pg.View]) -> BaseDatabaseWrapper:
                return fixed

        self.connection_for = connection_for
        self.enabled = bool(setting("PGVIEWS_HISTORY", True))
        self.sources: dict[int, dict[str, Any] | None] = {}
        self.oids: dict[int, str] = {}  # k -> the view's own oid
        self.read: set[str] = set()  # oids of the relations the run's views read
        self.captured: set[str] = set()
        self.started: dict[int, dt.datetime] = {}
        self.after: dict[str, list[Any]] = {}  # oid -> [relfilenode, counter] after its refresh
        self.waiting: dict[str, tuple[BaseDatabaseWrapper, list[Done]]] = {}  # by alias
        self.oldest = 0.0  # time.monotonic() of the oldest waiting record
        if self.enabled and connection is not None:
            self._capture(connection)

    def __enter__(self) -> RunRecorder:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.flush()

    def _capture(self, connection: BaseDatabaseWrapper) -> None:
        """The sources of the run's views on ``connection``'s database: those its caller read
        before the run (``captured``: the staleness check's, which ran before any of these
        refreshes took its snapshot), the others read now, in one query."""
        ks = [k for k, m in enumerate(self.models) if self.connection_for(m).alias == connection.alias]
        given = self.given.get(connection.alias, {})
        read = [k for k in ks if self.models[k] not in given]
        found = dict(zip(read, capture_with_oids(connection, [self.models[k] for k in read]), strict=True))
        for k in ks:
            oid, snap = found[k] if k in found else given[self.models[k]]
            self.sources[k] = snap
            if oid is not None:
                self.oids[k] = oid
            if snap is not None:
                self.read.update(snap.get("rels", {}))
        self.captured.add(connection.alias)

    def _mode(self, k: int) -> tuple[bool, str]:
        concurrent, reason = self.concurrent[k], ""
        snap = self.sources.get(k)
        if concurrent and snap is not None and not snap.get("populated", True):
            concurrent, reason = False, "not populated"
        elif self.asked and not concurrent:
            reason = "no concurrent_index" if self.models[k]._concurrent_index is None else "not populated"
        return concurrent, reason

    def _finish(self, connection: BaseDatabaseWrapper, k: int, started_at: dt.datetime, seconds: float,
                error: dict[str, Any] | None) -> None:  # fmt: skip
        model = self.models[k]
        sources = self.sources.get(k)
        if sources is not None and self.after:
            rels = sources.get("rels", {})
            for oid, values in self.after.items():
                if oid in rels:
                    rels[oid] = [values[0], values[1], *rels[oid][2:]]
        concurrent, reason = self._mode(k)
        self._add(connection, Done(model, started_at, seconds, concurrent, reason, error, sources))
        if error is None and self.oids.get(k) in self.read:
            self._read_after(connection, model)

    def _add(self, connection: BaseDatabaseWrapper, done: Done) -> None:
        if not self.waiting:
            self.oldest = time.monotonic()
        self.waiting.setdefault(connection.alias, (connection, []))[1].append(done)
        count = sum(len(records) for _, records in self.waiting.values())
        if count >= FLUSH_RECORDS or time.monotonic() - self.oldest >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> int:
        """Write the records waiting, one round trip per database. Returns how many were written."""
        waiting, self.waiting = self.waiting, {}
        return sum(write_records(connection, records) for connection, records in waiting.values())

    @contextlib.contextmanager
    def recording(self, k: int) -> Iterator[None]:
        """Record the refresh of view ``k`` run in the ``with`` block (serial runs)."""
        if not self.enabled:
            yield
            return
        connection = self.connection_for(self.models[k])
        if connection.alias not in self.captured:
            self._capture(connection)
        started_at = timezone.now()
        t0 = time.perf_counter()
        try:
            yield
        except (DjangoDBError, PGViewsError) as exc:
            self._finish(connection, k, started_at, time.perf_counter() - t0, _error(exc))
            raise
        self._finish(connection, k, started_at, time.perf_counter() - t0, None)

    def on_event(self, k: int, state: str, seconds: float, error: dict[str, Any] | None) -> None:
        """The C loop's on_event: keep each view's record as it ends (parallel runs). Once every
        refresh of the run has started, the loop has nothing left to start: the records waiting
        are written then, while the last refreshes run, rather than after them."""
        if not self.enabled:
            return
        if state == "running":
            self.started[k] = timezone.now()
            return
        if state not in ("ok", "failed"):
            return
        connection = self.connection_for(self.models[k])
        started_at = self.started.get(k) or timezone.now()
        self._finish(connection, k, started_at, seconds, error if state == "failed" else None)
        if len(self.started) == len(self.models):
            self.flush()

    def _read_after(self, connection: BaseDatabaseWrapper, model: type[pg.View]) -> None:
        name = _core.qualified_name(*_core.split_table(model._meta.db_table))
        try:
            if connection.in_atomic_block:
                with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
                    cursor.execute(_AFTER_SQL, [name])
                    row = cursor.fetchone()
            else:
                with connection.cursor() as cursor:
                    cursor.execute(_AFTER_SQL, [name])
                    row = cursor.fetchone()
        except DjangoDBError:
            return
        if row and row[0] is not None:
            self.after[str(row[0])] = [row[1], row[2]]


def write_records(connection: BaseDatabaseWrapper, records: Sequence[Done]) -> int:
    """Write ``records`` on ``connection`` in one round trip, inside its transaction if one is
    open (in a savepoint). Returns how many were written: all or none; a failure is logged,
    never raised. Nothing is sent in a transaction already aborted (it rolls back with the
    refreshes, which leave no record then)."""
    if not records or (connection.in_atomic_block and connection.needs_rollback):
        return 0
    try:
        send_records(connection, records)
    except DjangoDBError as exc:
        labels = ", ".join(r.model._meta.label for r in records)
        logger.warning(
            "the refreshes of %s were not recorded in their history (%s): %s%s",
            labels, TABLE, diag(exc)["message"], _hint(exc, connection),
        )  # fmt: skip
        return 0
    return len(records)


def send_records(connection: BaseDatabaseWrapper, records: Sequence[Done]) -> None:
    """Write ``records`` on ``connection`` in one round trip (history.record's way too), inside
    its transaction if one is open (in a savepoint), else in a transaction of their own that does
    not wait for the WAL flush. Raises the database's error; where the function is missing,
    nothing was written and the same records go as text, on that connection from then on."""
    from django_pgviews_c.historyfn import forget_functions, missing_function, uses_functions

    functions = uses_functions(connection, "run")
    sql, params = _statements(records, functions)
    try:
        if connection.in_atomic_block or not connection.get_autocommit():
            with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
                execute_script(cursor, sql, params)
        else:
            # A crash that loses the records also resets the statistics, which makes every view
            # stale anyway.
            _execute(connection, "SET LOCAL synchronous_commit = off;\n" + sql, params)
    except DjangoDBError as exc:
        if not (functions and missing_function(exc, "run")):
            raise
        forget_functions(connection, "run")
        send_records(connection, records)


def _statements(records: Sequence[Done], functions: bool) -> tuple[str, list[Any]]:
    """The text and parameters that write ``records``: the function's call, or (``functions``
    False) the statements it runs, sent as text."""
    from django_pgviews_c.historyfn import PRUNE_SLACK

    keep = max(1, int(setting("PGVIEWS_HISTORY_KEEP", DEFAULT_KEEP)))
    limit = int(setting("PGVIEWS_HISTORY_COUNT_ROWS_UP_TO", DEFAULT_COUNT_LIMIT))
    rows = [_values(r) for r in records]
    if functions:
        columns = [list(column) for column in zip(*rows, strict=True)]
        return _RUN_CALL, [*columns[:4], columns[10], *columns[4:10], limit, keep, PRUNE_SLACK]
    parts: list[str] = []
    params: list[Any] = []
    ok = [row for row in rows if row[6]]
    if ok:
        parts.append(_core.query_sql("history_insert_many", tables=[row[1] for row in ok]))
        for row in ok:  # history_row's order: the count's two after the duration
            params += [*row[:4], limit, row[10], *row[4:10]]
        params.append(keep - 1)
    for row in rows:
        if not row[6]:
            parts.append(_INSERT_SQL)
            params += [*row[:10], row[0], row[0], keep - 1]
    return ";\n".join(parts), params


def _values(r: Done) -> tuple[Any, ...]:
    """view, db_table, started_at, duration, concurrent, plain_reason, ok, sqlstate, message,
    sources (JSON text), then the view's quoted qualified name."""
    error = r.error or {}
    return (
        r.model._meta.label, r.model._meta.db_table, r.started_at, float(r.seconds), r.concurrent,
        r.plain_reason[:255], r.error is None, error.get("sqlstate") or "", error.get("message") or "",
        json.dumps(r.sources) if r.sources is not None else None,
        _core.qualified_name(*_core.split_table(r.model._meta.db_table)),
    )  # fmt: skip
