"""Adoption: objects without our stamp that already equal their declaration are kept as they
are. The planner asks for a probe of each such object; this runs the probes and tells it which
are equal."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any

from django.db import Error as DjangoDBError
from django.db import transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from django_pgviews_c.dberrors import connection_is_lost, diag, lost_connection_error
from django_pgviews_c.failures import LOCK_NOT_AVAILABLE
from django_pgviews_c.locks import QUIET_SECONDS, blocking_holders, describe_holders, session_timeouts

__all__ = ["probe"]


def probe(
    connection: BaseDatabaseWrapper,
    cursor: Any,
    probes: list[tuple[int, tuple[str, ...], str]],
    say: Callable[[int, str, int], None] | None = None,
) -> dict[int, bool]:
    """Compare each unstamped object with its declaration as PostgreSQL renders them. Each probe
    creates the declaration beside the object under a temporary name (materialized views WITH NO
    DATA, so no data work) and compares definitions and indexes; everything is rolled back.
    Returns {declaration: indexes equal} for those whose definition is equal. A probe that fails
    (bad SQL) only means "not equal": the sync then rebuilds, and reports the error where it
    happens. Building the declaration takes ACCESS SHARE on what it reads: behind a session
    holding ACCESS EXCLUSIVE there (an ALTER, a LOCK), the wait is said through
    ``say(declaration, text, verbosity)`` naming the holder (at -v 1 after a second, then every
    5 s, as a swap's lock waits), and goes on as the session's own lock_timeout allows."""
    alias = connection.alias
    adopt: dict[int, bool] = {}
    with transaction.atomic(using=alias):
        # The session's own lock_timeout in ms (0: none), as the lock guard of a refresh reads it.
        session = session_timeouts(cursor)["lock_timeout"]
        for decl, statements, check in probes:
            found = _probe_one(connection, cursor, statements, check, session, say and partial(say, decl))
            if found is not None and found[0]:
                adopt[decl] = bool(found[1])
        transaction.set_rollback(True, using=alias)
    return adopt


def _probe_one(
    connection: BaseDatabaseWrapper,
    cursor: Any,
    statements: tuple[str, ...],
    check: str,
    session: int,
    say: Callable[[str, int], None] | None,
) -> tuple[Any, Any] | None:
    """(same definition, same indexes), or None when the declaration did not build."""
    started = time.monotonic()
    said_at: float | None = None
    while True:
        # Tries of a second when someone can be told of the wait (the session's own lock_timeout
        # when shorter), else one wait as the session's lock_timeout says.
        try:
            with transaction.atomic(using=connection.alias):
                if say is not None:
                    ms = min(WAIT_SLICE_MS, session) if session > 0 else WAIT_SLICE_MS
                    cursor.execute("SELECT pg_catalog.set_config('lock_timeout', %s, true)", [f"{ms}ms"])
                for sql in statements:
                    cursor.execute(sql)
                cursor.execute(check)
                row = cursor.fetchone()
            return (row[0], row[1])
        except DjangoDBError as exc:
            if connection_is_lost(connection, exc):
                raise lost_connection_error(connection, "syncing views") from exc
            waited = time.monotonic() - started
            if say is None or diag(exc)["sqlstate"] != LOCK_NOT_AVAILABLE:
                return None
            if session > 0 and waited * 1000 >= session:
                return None
            loud = waited >= QUIET_SECONDS and (said_at is None or waited - said_at >= 5)
            if loud:
                said_at = waited
            held = describe_holders(blocking_holders(cursor))
            say(
                f"waiting {waited:.1f}s for a lock to compare it with its declaration, held by {held}",
                1 if loud else 2,
            )


#: The lock_timeout of each try of a probe whose wait is said.
WAIT_SLICE_MS = 1000
