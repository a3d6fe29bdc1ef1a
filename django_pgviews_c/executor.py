"""Running a sync's planned statements, in the transaction sync.py opened. Phase 0 (everything
built beside the old objects) goes in batches of up to _MAX_BATCH statements a round trip, each
under a savepoint; a failed batch is replayed one statement at a time to name the one at fault.
Phase 1 (renames, drops: the locks readers wait on) runs under a short lock_timeout with
retries, so it never queues in front of readers for long."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from django.db import Error as DjangoDBError
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone

from django_pgviews_c import _core
from django_pgviews_c.dberrors import connection_is_lost, lost_connection_error
from django_pgviews_c.dberrors import sqlstate as _sqlstate
from django_pgviews_c.declarations import Declarations, setting
from django_pgviews_c.exceptions import LockNotAvailableError
from django_pgviews_c.failures import (
    CANCELED,
    INCOMPATIBLE,
    LOCK_NOT_AVAILABLE,
    UNDEFINED_TABLE,
    ChainConflict,
    Incompatible,
    LockTimeout,
    Misordered,
    action_error,
    canceled_error,
)
from django_pgviews_c.locks import (
    AUTOVACUUM_MARGIN_MS,
    QUIET_SECONDS,
    describe_holders,
    holders,
    session_timeouts,
)
from django_pgviews_c.order import LearnedOrder
from django_pgviews_c.report import Progress
from django_pgviews_c.synchistory import SyncRecorder
from django_pgviews_c.syncresult import Action

__all__ = ["Executor"]

_MAX_BATCH = 400

# Actions that compute a materialized view's data.
_DATA_OPS = {"create", "build", "refresh"}

# Phase-1 actions that lock their declaration's relation.
_LOCKING_OPS = {"drop", "swap", "refresh", "drop_index"}


class Executor:
    """Runs the actions of one plan at a time on ``connection``; a failure raises the error
    naming the view, or one of failures.py's questions for the re-plan loop."""

    def __init__(
        self, connection: BaseDatabaseWrapper, decls: Declarations, order: LearnedOrder, progress: Progress
    ) -> None:
        self.connection = connection
        self.decls = decls
        self.order = order
        self.progress = progress
        #: The plan being run: what a failure is judged against.
        self.actions: list[Action] = []
        #: The populations of the plan, for the refresh history (the sync writes them at its end).
        self.recorder = SyncRecorder(connection, decls)
        #: What a swap that cannot take its locks in time says of the state it leaves.
        self.lock_failure_outcome = "The sync was rolled back; nothing was changed."

    def execute(self, cursor: Any, actions: list[Action]) -> None:
        self.actions = actions
        self.progress.work_begins()
        self.recorder.begin(cursor, actions)
        phase0 = [a for a in actions if a.phase == 0]
        phase1 = [a for a in actions if a.phase != 0]
        self._run_actions(cursor, phase0)
        if phase1:
            self._swap(cursor, phase1)

    # -- phase 1: the locks readers wait on ------------------------------------------------------

    def _swap(self, cursor: Any, phase1: list[Action]) -> None:
        """Phase 1, the statements that take the locks readers wait on, with a short lock_timeout
        and retries, so it never queues in front of readers for long. Every attempt, the last
        included, is bounded (PGVIEWS_SWAP_LOCK_TIMEOUT_MS), and never longer than the session's
        own lock_timeout; when the last runs out, the whole sync rolls back naming the holder."""
        retries, short_ms, final_ms, autovacuum_ms, session_ms = self._swap_timeouts(cursor)
        relations = sorted(
            {
                _core.qualified_name(*self.decls.split[a.decl])
                for a in phase1
                if a.op in _LOCKING_OPS and a.decl >= 0
            }
        )
        started = time.monotonic()
        said_at = None
        wait_ms = short_ms
        cursor.execute("SAVEPOINT pgvc_phase1")
        for attempt in range(retries + 1):
            last = attempt == retries
            _set_lock_timeout(cursor, final_ms if last else wait_ms)
            try:
                self._run_actions(cursor, phase1)
                break
            except LockTimeout as exc:
                cursor.execute("ROLLBACK TO SAVEPOINT pgvc_phase1")
                found = holders(cursor, relations)
                waited = time.monotonic() - started
                if last:
                    raise LockNotAvailableError(
                        f"could not take the locks to swap in the new views ({', '.join(relations)}): "
                        f"{attempt + 1} attempts over {waited:.1f}s, the last "
                        f"waiting {final_ms} ms (PGVIEWS_SWAP_LOCK_TIMEOUT_MS or the session's "
                        f"lock_timeout), met {describe_holders(found)}. {self.lock_failure_outcome}",
                        sqlstate=LOCK_NOT_AVAILABLE,
                    ) from exc.__cause__
                wait_ms = autovacuum_ms if any(h.is_autovacuum for h in found) else short_ms
                loud = waited >= QUIET_SECONDS and (said_at is None or waited - said_at >= 5)
                if loud:
                    said_at = waited
                self.progress.say(
                    f"  waiting {waited:.1f}s for locks to swap in the new views, held by "
                    f"{describe_holders(found)}; retrying ({attempt + 1}/{retries})",
                    1 if loud else 2,
                )
                time.sleep(min(0.05 * (attempt + 1), 1.0))
        # What follows in the transaction waits as the session's own setting says.
        _set_lock_timeout(cursor, session_ms)

    def _swap_timeouts(self, cursor: Any) -> tuple[int, int, int, int, int]:
        """(retries, ms of each attempt, ms of the last, ms of an attempt that meets autovacuum,
        the session's own lock_timeout): the settings, within the session's lock_timeout."""
        retries = int(setting("PGVIEWS_SWAP_RETRIES", 20))
        short_ms = int(setting("PGVIEWS_LOCK_TIMEOUT_MS", 200))
        final_ms = int(setting("PGVIEWS_SWAP_LOCK_TIMEOUT_MS", 5000))
        session = session_timeouts(cursor)
        if session["lock_timeout"] > 0:
            short_ms = min(short_ms, session["lock_timeout"])
            final_ms = min(final_ms, session["lock_timeout"])
        # Autovacuum gives way only to a waiter that waits past deadlock_timeout.
        autovacuum_ms = min(session["deadlock_timeout"] + AUTOVACUUM_MARGIN_MS, final_ms)
        return retries, short_ms, final_ms, autovacuum_ms, session["lock_timeout"]

    # -- batches ---------------------------------------------------------------------------------

    def _heavy(self, action: Action) -> bool:
        """Whether the action computes a materialized view's data (the slow work)."""
        return action.decl >= 0 and action.op in _DATA_OPS and self.decls.tuples[action.decl][3] == "m"

    def _batches(self, actions: list[Action]) -> Iterable[list[Action]]:
        """Up to _MAX_BATCH statements a round trip; an action that computes a materialized
        view's data on its own, to time it and count its rows. At -v 2 everything one by one."""
        batch: list[Action] = []
        for action in actions:
            if self.progress.verbosity >= 2 or self._heavy(action):
                if batch:
                    yield batch
                    batch = []
                yield [action]
                continue
            batch.append(action)
            if len(batch) >= _MAX_BATCH:
                yield batch
                batch = []
        if batch:
            yield batch

    def _run_actions(self, cursor: Any, actions: list[Action]) -> None:
        for batch in self._batches(actions):
            started_at = timezone.now() if self.recorder.active else None
            started = time.perf_counter()
            rows = self._run_batch(cursor, batch)
            seconds = time.perf_counter() - started
            if self.progress.verbosity >= 2 and batch:
                action = batch[0]
                self.progress.say(f"  {action.op:<13} {action.target}  {seconds:.3f}s", 2)
            if len(batch) == 1 and self._heavy(batch[0]):
                self.progress.finished(self.decls.labels[batch[0].decl], batch[0].op, seconds, rows)
                if started_at is not None:
                    self.recorder.populated(batch[0], started_at, seconds)

    def _run_batch(self, cursor: Any, batch: list[Action]) -> int:
        """One round trip under a savepoint. Returns the rows of a lone heavy action, else -1."""
        # The savepoint goes first, on its own: a syntax error anywhere in a multi-statement
        # string rejects the whole string before any of it runs.
        cursor.execute("SAVEPOINT pgvc_batch")
        rows = -1
        try:
            if len(batch) == 1 and self._heavy(batch[0]):
                cursor.execute(batch[0].sql)  # one statement: its rowcount is its rows
                rows = cursor.rowcount
                cursor.execute("RELEASE SAVEPOINT pgvc_batch")
            else:
                self._script(cursor, "".join(a.sql + "\n;\n" for a in batch) + "RELEASE SAVEPOINT pgvc_batch")
        except DjangoDBError as exc:
            if connection_is_lost(self.connection, exc):
                # Said now: once the transaction unwinds, the driver may no longer tell.
                raise lost_connection_error(self.connection, "syncing views") from exc
            cursor.execute("ROLLBACK TO SAVEPOINT pgvc_batch")
            if _sqlstate(exc) == LOCK_NOT_AVAILABLE:
                raise LockTimeout() from exc
            if _sqlstate(exc) == CANCELED:
                # statement_timeout, or a cancel: running it again would only wait again.
                raise canceled_error(batch, exc) from exc
            if len(batch) == 1 and self._heavy(batch[0]):
                # Sent alone: its error is already its own, and a rebuild is not run twice.
                self._fail(batch[0], exc)
            # Replayed one by one, either a statement fails and is named, or all pass (the
            # batch hit something transient) and the sync goes on.
            self._find_failure(cursor, batch)
        return rows

    def _script(self, cursor: Any, sql: str) -> None:
        """Run a string of several statements in one round trip."""
        cursor.execute(sql)

    # -- failures --------------------------------------------------------------------------------

    def _find_failure(self, cursor: Any, batch: list[Action]) -> None:
        """Run a failed batch one statement at a time to name the view at fault."""
        for action in batch:
            cursor.execute("SAVEPOINT pgvc_one")
            try:
                cursor.execute(action.sql)
            except DjangoDBError as exc:
                if connection_is_lost(self.connection, exc):
                    # Said now: once the transaction unwinds, the driver may no longer tell.
                    raise lost_connection_error(self.connection, "syncing views") from exc
                cursor.execute("ROLLBACK TO SAVEPOINT pgvc_one")
                if _sqlstate(exc) == CANCELED:
                    raise canceled_error([action], exc) from exc
                self._fail(action, exc)
            cursor.execute("RELEASE SAVEPOINT pgvc_one")

    def _fail(self, action: Action, exc: BaseException) -> None:
        """Raise what a failed action means: a lock timeout to retry, a chain to build in place,
        a view to create later, a column change that needs --force, or the error naming the
        view."""
        if _sqlstate(exc) == LOCK_NOT_AVAILABLE:
            raise LockTimeout() from exc
        if action.op == "chain_check":
            raise ChainConflict() from exc
        if _sqlstate(exc) == UNDEFINED_TABLE:
            before = self.order.misordered(self.connection, action, exc, self.actions)
            if before is not None:
                raise Misordered(action.decl, before) from exc
        view_sql = self.decls.sql[action.decl] if action.decl >= 0 else None
        error = action_error(action, exc, len(self.actions), view_sql)
        # "compat_check": the same test for a view built anew in a chain (plan.c).
        if action.op in ("replace", "compat_check") and error.sqlstate in INCOMPATIBLE:
            raise Incompatible(action.decl, error) from exc
        raise error from exc


def _set_lock_timeout(cursor: Any, ms: int) -> None:
    cursor.execute("SELECT pg_catalog.set_config('lock_timeout', %s, true)", [f"{ms}ms"])
