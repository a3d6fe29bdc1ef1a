"""How a refresh waits for its locks: guarded tries with a short lock_timeout, so readers never
queue behind a plain REFRESH for long and a concurrent one is never left waiting without a word;
the wait said after a second, naming the holder; the last try's error naming who is in the way.
Used by the serial path (guarded_refresh) and the C loop's events (_LoopWaits)."""

from __future__ import annotations

__all__ = ["guarded_refresh"]

import logging
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import Any

from django.db import Error as DjangoDBError
from django.db import transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from django_pgviews_c import _core, locks
from django_pgviews_c import view as pg
from django_pgviews_c.dberrors import diag, sqlstate
from django_pgviews_c.declarations import setting
from django_pgviews_c.exceptions import DatabaseError

logger = logging.getLogger("django_pgviews_c.refresh")


# ---- lock waits ---------------------------------------------------------------------------------


def _lock_settings() -> tuple[int, int, int]:
    """(retries, lock_timeout of each try in ms, lock_timeout of the last try in ms)."""
    return (
        int(setting("PGVIEWS_REFRESH_RETRIES", 10)),
        int(setting("PGVIEWS_LOCK_TIMEOUT_MS", 200)),
        int(setting("PGVIEWS_REFRESH_LOCK_TIMEOUT_MS", 10000)),
    )


def _guard_sql(ms: int) -> str:
    """Set lock_timeout to ``ms`` (the session's own when shorter) for this transaction only,
    remembering the session's value for _RESTORE_SQL."""
    return _core.query_sql("lock_guard", ms=int(ms))


_RESTORE_SQL = _core.query_sql("lock_restore")


#: The columns of _core.lock_holders_sql(), the keys of the C loop's holder dicts.
_HOLDER_KEYS = (
    "pid",
    "application_name",
    "state",
    "query",
    "backend_type",
    "mode",
    "relation",
    "granted",
    "behind",
)


def _and(words: list[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def _session_text(pid: Any, app: Any, state: Any, query: Any, backend_type: Any) -> str:
    text = f"pid {pid}"
    if app or backend_type:
        text += f" ({app or backend_type})"
    if state:
        text += f", {state}"
    if query:
        text += f": {' '.join(str(query).split())}"
    return text


def _queued_text(mode: str, relation: str, behind: Any) -> str:
    """A request that waits: ``waiting for AccessExclusiveLock on t behind pid 4242``."""
    pids = [p.strip() for p in str(behind or "").split(",") if p.strip()]
    if not pids:
        return f"waiting for {mode} on {relation}"
    return f"waiting for {mode} on {relation} behind pid{'s' if len(pids) > 1 else ''} {_and(pids)}"


def _describe_holders(holders: Sequence[Any] | None) -> str:
    """The sessions holding a lock a refresh waited for, as its last try met them: rows of
    _core.lock_holders_sql() (Model.refresh) or the C loop's dicts of the same columns; a lock on
    the view itself, or ACCESS EXCLUSIVE on a table it reads (a data load truncating it), granted
    or only queued (an ALTER TABLE waiting behind a reader: the refresh queues behind it), with
    the sessions that request waits behind. A holder is named by its application_name, else by
    its backend_type (``autovacuum worker``), as the sync's lock waits name it
    (locks.Holder.describe), with the locks and what they are on. A session is named once, with
    every mode it holds on each relation: one that refreshed the view concurrently in a
    transaction still open holds three."""
    if not holders:
        return "no session holds such a lock any more"
    sessions: dict[Any, tuple[str, dict[str, list[str]], list[str]]] = {}
    for h in holders:
        pid, app, state, query, backend_type, mode, relation, granted, behind = (
            tuple(h.get(k) for k in _HOLDER_KEYS) if isinstance(h, dict) else h
        )
        if pid not in sessions:
            sessions[pid] = (_session_text(pid, app, state, query, backend_type), {}, [])
        if mode and relation and not granted:
            sessions[pid][2].append(_queued_text(mode, relation, behind))
        elif mode and relation:
            modes = sessions[pid][1].setdefault(relation, [])
            if mode not in modes:
                modes.append(mode)
    parts = []
    for text, held, queued in sessions.values():
        words = [text]
        if held:
            words.append("holding " + "; ".join(f"{_and(modes)} on {rel}" for rel, modes in held.items()))
        parts.append(", ".join(words + queued))
    return "held by " + "; ".join(parts)


def _lock_error(conn: BaseDatabaseWrapper, label: str, db_table: str, exc: BaseException) -> DatabaseError:
    retries, _, last_ms = _lock_settings()
    try:
        with conn.cursor() as cursor:
            cursor.execute(_core.lock_holders_sql(), [_core.qualified_name(*_core.split_table(db_table))])
            holders = cursor.fetchall()
            held = _describe_holders(holders) if holders else _held_elsewhere(cursor)
    except DjangoDBError:
        held = _describe_holders(None)
    info = diag(exc)
    return DatabaseError(
        f"could not refresh: another session holds a lock it needs ({held}); "
        f"gave up after {retries + 1} tries, the last waiting {last_ms} ms. It was not refreshed.",
        sqlstate="55P03",
        detail=info.get("detail"),
        hint=info.get("hint"),
        view=label,
    )


def _held_elsewhere(cursor: Any) -> str:
    """When nobody holds a lock on the view itself, what held up its REFRESH is a lock on a table
    it reads: the sessions holding ACCESS EXCLUSIVE on a relation of the database (the only mode
    that blocks reading), named as the sync's lock waits name them."""
    found = locks.blocking_holders(cursor)
    return f"held by {locks.describe_holders(found)}" if found else _describe_holders(None)


def guarded_refresh(
    conn: BaseDatabaseWrapper,
    db_table: str,
    label: str,
    say: Callable[[str], None] | None = None,
    concurrently: bool = False,
) -> None:
    """REFRESH of one view on Django's connection. A plain one needs ACCESS EXCLUSIVE, and a
    waiting request queues every later reader behind it; a concurrent one queues no reader, but
    waits as long as a data load holds a table it reads. So each try waits at most PGVIEWS_LOCK_TIMEOUT_MS
    (200, or the session's lock_timeout when shorter), then steps out and retries after a short
    back-off, PGVIEWS_REFRESH_RETRIES (10) times; the last try waits at most
    PGVIEWS_REFRESH_LOCK_TIMEOUT_MS (10000). Then DatabaseError names the sessions holding a lock.
    When the holder is an autovacuum worker, the next try waits past deadlock_timeout, where the
    server cancels the worker. statement_timeout is left as the user set it. With ``say`` (a
    command's progress; else the ``django_pgviews_c.refresh`` logger at INFO, as
    ``Model.refresh()`` says it), a wait of more than QUIET_SECONDS is said, then every 5 s,
    naming the holder."""
    if say is None:
        say = _log_wait
    retries, short_ms, last_ms = _lock_settings()
    refresh = pg.refresh_statement(db_table, concurrently)
    wait_ms = short_ms
    started, said_at = time.monotonic(), -5.0
    for attempt in range(retries + 1):
        final = attempt == retries
        sql = _guard_sql(last_ms if final else wait_ms) + refresh + _RESTORE_SQL
        try:
            if conn.in_atomic_block:
                with transaction.atomic(using=conn.alias), conn.cursor() as cursor:
                    cursor.execute(sql)
            elif not pg._execute_fast(conn, sql):
                with conn.cursor() as cursor:
                    cursor.execute(sql)
            return
        except DjangoDBError as exc:
            if sqlstate(exc) != "55P03":
                raise
            if final:
                raise _lock_error(conn, label, db_table, exc) from exc
            wait_ms = _next_wait(conn, db_table, label, short_ms, last_ms)
            waited = time.monotonic() - started
            if waited >= locks.QUIET_SECONDS and waited - said_at >= 5:
                said_at = waited
                say(
                    f"  {label}: waiting {waited:.1f}s for a lock to refresh it, "
                    f"{_waited_for(conn, db_table)}; retrying ({attempt + 1}/{retries})"
                )
        time.sleep(min(0.05 * (attempt + 1), 0.5))


def _log_wait(text: str) -> None:
    logger.info("%s", text.strip())


def _waited_for(conn: BaseDatabaseWrapper, db_table: str) -> str:
    """Who holds up a REFRESH of ``db_table``: the holders of a lock on it, else of ACCESS
    EXCLUSIVE on a table it reads."""
    try:
        savepoint = transaction.atomic(using=conn.alias) if conn.in_atomic_block else nullcontext()
        with savepoint, conn.cursor() as cursor:
            cursor.execute(_core.lock_holders_sql(), [_core.qualified_name(*_core.split_table(db_table))])
            holders = cursor.fetchall()
            return _describe_holders(holders) if holders else _held_elsewhere(cursor)
    except DjangoDBError:  # the holders are advice
        return _describe_holders(None)


def _next_wait(conn: BaseDatabaseWrapper, db_table: str, label: str, short_ms: int, last_ms: int) -> int:
    """The lock_timeout of the next try: the short one, unless an autovacuum worker holds a lock
    on the view; then past deadlock_timeout (never past the last try's), where PostgreSQL cancels
    the worker for a waiter."""
    name = _core.qualified_name(*_core.split_table(db_table))
    try:
        savepoint = transaction.atomic(using=conn.alias) if conn.in_atomic_block else nullcontext()
        with savepoint, conn.cursor() as cursor:
            found = locks.holders(cursor, [name])
            autovacuum_ms = locks.autovacuum_wait_ms(found, cursor)
    except DjangoDBError:  # the holders are advice: without them, the short try
        return short_ms
    if autovacuum_ms is None:
        return short_ms
    logger.info(
        "%s: an autovacuum worker holds a lock on it (%s); the next try waits %d ms, past "
        "deadlock_timeout, where the server cancels the worker",
        label,
        locks.describe_holders(found),
        min(autovacuum_ms, last_ms),
    )
    return min(autovacuum_ms, last_ms)


class _LoopWaits:
    """The C loop's retries of a busy lock, said as the serial path says them (guarded_refresh):
    after QUIET_SECONDS, then every 5 s, naming the holder, through ``waits``."""

    def __init__(
        self, connection: BaseDatabaseWrapper, models: Sequence[Any], waits: Callable[[str], None] | None
    ) -> None:
        self.connection, self.models, self.waits = connection, models, waits
        self.retries = _lock_settings()[0]
        self.tries: dict[int, int] = {}
        self.said_at: dict[int, float] = {}

    def __call__(self, k: int, waited: float) -> None:
        self.tries[k] = self.tries.get(k, 0) + 1
        if self.waits is None or waited < locks.QUIET_SECONDS or waited - self.said_at.get(k, -5.0) < 5:
            return
        self.said_at[k] = waited
        model = self.models[k]
        self.waits(
            f"  {model._meta.label}: waiting {waited:.1f}s for a lock to refresh it, "
            f"{_waited_for(self.connection, model._meta.db_table)}; retrying ({self.tries[k]}/{self.retries})"
        )
