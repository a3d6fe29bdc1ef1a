"""Lock waits of a sync: who holds what it waits for, the session's own timeouts, and the
advisory lock that serialises syncs. Every wait is bounded and explained: a wait of more than a
second is said at the default verbosity, naming the holder (pid, application_name, state, the
start of its query); a wait that runs out ends with an error naming it."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django_pgviews_c import _core
from django_pgviews_c.exceptions import LockNotAvailableError

__all__ = [
    "Holder",
    "holders",
    "describe_holders",
    "blocking_holders",
    "session_timeouts",
    "autovacuum_wait_ms",
    "take_advisory_lock",
    "QUIET_SECONDS",
    "AUTOVACUUM_MARGIN_MS",
]

#: A wait shorter than this is not worth a word.
QUIET_SECONDS = 1.0

#: How much longer than deadlock_timeout a try waits when an autovacuum worker holds the lock.
AUTOVACUUM_MARGIN_MS = 200

_HOLDERS_SQL = _core.query_sql("lock_holders")

_TIMEOUTS_SQL = _core.query_sql("session_timeouts")

_ACCESS_EXCLUSIVE_SQL = _core.query_sql("access_exclusive_relations")


@dataclass(frozen=True)
class Holder:
    """A session holding a lock a sync waits for."""

    pid: int
    application_name: str
    state: str
    backend_type: str
    query_start: Any
    query: str
    mode: str
    relation: str | None

    @property
    def is_autovacuum(self) -> bool:
        return self.backend_type == "autovacuum worker"

    def describe(self) -> str:
        parts = [
            f"application_name {self.application_name!r}" if self.application_name else self.backend_type
        ]
        if self.state:
            parts.append(self.state)
        if self.query_start is not None:
            parts.append(f"query started {self.query_start:%Y-%m-%d %H:%M:%S}")
        if self.query:
            parts.append(f"query {self.query!r}")
        what = f"{self.mode} on {self.relation}" if self.relation else self.mode
        return f"pid {self.pid} ({', '.join(p for p in parts if p)}) holding {what}"


def holders(cursor: Any, relations: Sequence[str] = (), advisory_key: int | None = None) -> list[Holder]:
    """Sessions holding a granted lock on one of ``relations`` (quoted, qualified names) or on
    the advisory lock ``advisory_key``."""
    cursor.execute(_HOLDERS_SQL, [list(relations), advisory_key, advisory_key, advisory_key])
    return [Holder(*row) for row in cursor.fetchall()]


def describe_holders(found: Sequence[Holder]) -> str:
    if not found:
        return "a session that has since let go"
    seen: dict[int, Holder] = {}
    for h in found:
        seen.setdefault(h.pid, h)
    return "; ".join(h.describe() for h in seen.values())


def blocking_holders(cursor: Any, relations: Sequence[str] = ()) -> list[Holder]:
    """The sessions that can hold up a statement building a view: those holding a lock on one of
    ``relations`` (what it replaces or locks by name), and those holding ACCESS EXCLUSIVE on any
    relation of this database (the only mode that blocks ACCESS SHARE, which reading a table
    takes: which tables a view not yet built reads, the catalog cannot say)."""
    cursor.execute(_ACCESS_EXCLUSIVE_SQL)
    found = sorted({row[0] for row in cursor.fetchall()} | set(relations))
    return holders(cursor, found) if found else []


def session_timeouts(cursor: Any) -> dict[str, int]:
    """The session's lock_timeout, deadlock_timeout and statement_timeout, in milliseconds
    (0: none). Whatever set them (postgresql.conf, the role, OPTIONS, SET) is what counts."""
    cursor.execute(_TIMEOUTS_SQL)
    return {name: int(value) for name, value in cursor.fetchall()}


def autovacuum_wait_ms(found: Sequence[Holder], cursor: Any) -> int | None:
    """When an autovacuum worker is among ``found``, the lock_timeout that lets the next try get
    past it: PostgreSQL cancels a (non-wraparound) autovacuum worker for a waiter only when that
    waiter's deadlock check runs, after deadlock_timeout, so a shorter try never does. Else None."""
    if not any(h.is_autovacuum for h in found):
        return None
    return session_timeouts(cursor)["deadlock_timeout"] + AUTOVACUUM_MARGIN_MS


def take_advisory_lock(
    cursor: Any, key: int, *, alias: str, say: Callable[[str], None], is_lock_timeout: Callable[[Any], bool]
) -> None:
    """Take the transaction-level advisory lock ``key``. When another session holds it for more
    than a second, say who; then wait as long as the session's own lock_timeout and
    statement_timeout allow. When that runs out, raise LockNotAvailableError naming the holder."""
    cursor.execute("SELECT pg_catalog.pg_try_advisory_xact_lock(%s)", [key])
    if cursor.fetchone()[0]:
        return
    deadline = time.monotonic() + QUIET_SECONDS
    while time.monotonic() < deadline:
        time.sleep(0.05)
        cursor.execute("SELECT pg_catalog.pg_try_advisory_xact_lock(%s)", [key])
        if cursor.fetchone()[0]:
            return
    found = holders(cursor, advisory_key=key)
    say(f"  waiting for another sync of database {alias!r} to finish: {describe_holders(found)}")
    started = time.monotonic()
    cursor.execute("SAVEPOINT pgvc_advisory")
    try:
        cursor.execute("SELECT pg_catalog.pg_advisory_xact_lock(%s)", [key])
    except Exception as exc:
        if not is_lock_timeout(exc):
            raise
        cursor.execute("ROLLBACK TO SAVEPOINT pgvc_advisory")
        raise LockNotAvailableError(
            f"another sync of database {alias!r} held the sync lock for longer than this session's "
            f"lock_timeout allows: {describe_holders(holders(cursor, advisory_key=key))}. "
            f"Nothing was changed.",
            sqlstate="55P03",
        ) from exc
    cursor.execute("RELEASE SAVEPOINT pgvc_advisory")
    say(f"  got the sync lock after {time.monotonic() - started + QUIET_SECONDS:.1f}s")
