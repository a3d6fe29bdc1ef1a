"""Running a sync's planned statements, in the transaction sync.py opened. Phase 0 (everything
built beside the old objects) goes in batches of up to _MAX_BATCH statements a round trip, each
under a savepoint; a failed batch is replayed one statement at a time to name the one at fault.
A build that waits for a lock (a session holding ACCESS EXCLUSIVE on a table it reads) waits in
tries of a second and says so, naming the view and the holder, as long as the session's own
lock_timeout allows. Phase 1 (renames, drops: the locks readers wait on) runs under a short
lock_timeout with retries, so it never queues in front of readers for long."""

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
    Holder,
    blocking_holders,
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

# Actions that build a view from what it reads: a lock on a table it reads holds them up. How a
# lock wait names what it holds up.
_BUILD_OPS = {"create": "build", "build": "build", "replace": "build", "refresh": "populate"}

#: The lock_timeout of each try of a phase-0 statement whose wait is said.
WAIT_SLICE_MS = 1000


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
        #: Set once a statement waited for a lock: from then on statements go one at a time,
        #: so that a wait names the view it holds up.
        self.one_by_one = False

    def execute(self, cursor: Any, actions: list[Action]) -> None:
        self.actions = actions
        self.progress.work_begins()
        self.recorder.begin(cursor, actions)
        phase0 = [a for a in actions if a.phase == 0]
        phase1 = [a for a in actions if a.phase != 0]
        if phase0:
            self._build(cursor, phase0)
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
        clock = _Wait(session_ms, sliced=True)
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
                self.one_by_one = True  # the next attempt names the statement that waits
                building = self._building(exc.actions) is not None
                found = self._blockers(cursor, relations, exc.actions)
                waited = clock.waited()
                if last:
                    what = (
                        self._what(exc.actions)
                        if building
                        else f"swap in the new views ({', '.join(relations)})"
                    )
                    raise LockNotAvailableError(
                        f"could not take the locks to {what}: {attempt + 1} attempts over {waited:.1f}s, the "
                        f"last waiting {final_ms} ms (PGVIEWS_SWAP_LOCK_TIMEOUT_MS or the session's "
                        f"lock_timeout), met {describe_holders(found)}. {self.lock_failure_outcome}",
                        sqlstate=LOCK_NOT_AVAILABLE,
                    ) from exc.__cause__
                wait_ms = autovacuum_ms if any(h.is_autovacuum for h in found) else short_ms
                line = (
                    self._waiting_for(exc.actions, waited)
                    if building
                    else f"  waiting {waited:.1f}s for locks to swap in the new views"
                )
                self.progress.say(
                    f"{line}, held by {describe_holders(found)}; retrying ({attempt + 1}/{retries})",
                    clock.level(waited),
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

    # -- phase 0: builds, their lock waits said ---------------------------------------------------

    def _build(self, cursor: Any, phase0: list[Action]) -> None:
        """Phase 0. Its statements wait for locks as the session's lock_timeout allows (a build
        waits for nobody's readers, and nobody's readers wait for it). When there is someone to
        tell, they wait in tries of WAIT_SLICE_MS (the session's lock_timeout when shorter), and
        between tries the wait is said: at -v 1 after QUIET_SECONDS, then every 5 s."""
        session_ms = session_timeouts(cursor)["lock_timeout"]
        wait = _Wait(session_ms, sliced=self.progress.verbosity >= 1 and self.progress.progress is not None)
        if wait.sliced:
            _set_lock_timeout(cursor, min(WAIT_SLICE_MS, session_ms) if session_ms > 0 else WAIT_SLICE_MS)
        self._run_actions(cursor, phase0, wait)
        if wait.sliced:
            _set_lock_timeout(cursor, session_ms)

    def _run_waiting(self, cursor: Any, batch: list[Action], wait: _Wait) -> int:
        """``_run_batch``, tried again while it waits for a lock and the session's lock_timeout
        has not run out; a batch of several statements that waited goes one at a time, so that
        the wait names the view it holds up."""
        clock = _Wait(wait.session_ms, wait.sliced)
        while True:
            try:
                return self._run_batch(cursor, batch)
            except LockTimeout as exc:
                # Back to where the batch began (a replay may have run part of it).
                cursor.execute("ROLLBACK TO SAVEPOINT pgvc_batch; RELEASE SAVEPOINT pgvc_batch")
                waited = clock.waited()
                if not wait.sliced or (wait.session_ms > 0 and waited * 1000 >= wait.session_ms):
                    raise self._build_lock_error(cursor, exc.actions, waited) from exc.__cause__
                if len(batch) > 1:
                    self.one_by_one = True
                    for one in batch:
                        self._run_waiting(cursor, [one], wait)
                    return -1
                found = describe_holders(self._blockers(cursor, (), exc.actions))
                self.progress.say(
                    f"{self._waiting_for(exc.actions, waited)}, held by {found}", clock.level(waited)
                )

    def _waiting_for(self, actions: list[Action], waited: float) -> str:
        """The start of a line saying that ``actions`` wait for a lock."""
        building = self._building(actions)
        if building is not None:
            return f"  {building[0]}: waiting {waited:.1f}s for a lock to {building[1]} it"
        return f"  waiting {waited:.1f}s for a lock to {self._what(actions)}"

    def _what(self, actions: list[Action]) -> str:
        """What ``actions`` do, for a lock error: "build shop.Names (shop_names)"."""
        building = self._building(actions)
        if building is not None:
            return f"{building[1]} {building[0]}"
        return f"run {actions[0].op} {actions[0].target}" if actions else "run the sync's statements"

    def _build_lock_error(self, cursor: Any, actions: list[Action], waited: float) -> LockNotAvailableError:
        """The sync's end when a phase-0 statement waited as long as the session's lock_timeout
        allows: naming the view and the holder."""
        found = describe_holders(self._blockers(cursor, (), actions))
        return LockNotAvailableError(
            f"could not take the locks to {self._what(actions)}: waited {waited:.1f}s, as long as "
            f"this session's lock_timeout allows, for {found}. {self.lock_failure_outcome}",
            sqlstate=LOCK_NOT_AVAILABLE,
        )

    def _building(self, actions: list[Action]) -> tuple[str, str] | None:
        """(the view, the verb) a lock wait of ``actions`` holds up, when that is one view's
        build: "shop.Names (shop_names)", "build"."""
        if len(actions) != 1 or actions[0].decl < 0 or actions[0].op not in _BUILD_OPS:
            return None
        model = self.decls.models[actions[0].decl]
        return f"{model._meta.label} ({model._meta.db_table})", _BUILD_OPS[actions[0].op]

    def _blockers(self, cursor: Any, relations: Iterable[str], actions: list[Action]) -> list[Holder]:
        """Who holds up ``actions``: the holders of ``relations``, and, when they build a view,
        of its own name (a REFRESH, a CREATE OR REPLACE) and of ACCESS EXCLUSIVE on what it may
        read."""
        if self._building(actions) is None:
            return holders(cursor, sorted(relations))
        own = _core.qualified_name(*self.decls.split[actions[0].decl])
        return blocking_holders(cursor, sorted({*relations, own}))

    # -- batches ---------------------------------------------------------------------------------

    def _heavy(self, action: Action) -> bool:
        """Whether the action computes a materialized view's data (the slow work)."""
        return action.decl >= 0 and action.op in _DATA_OPS and self.decls.tuples[action.decl][3] == "m"

    def _batches(self, actions: list[Action]) -> Iterable[list[Action]]:
        """Up to _MAX_BATCH statements a round trip; an action that computes a materialized
        view's data on its own, to time it and count its rows. At -v 2 everything one by one."""
        batch: list[Action] = []
        for action in actions:
            if self.progress.verbosity >= 2 or self.one_by_one or self._heavy(action):
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

    def _run_actions(self, cursor: Any, actions: list[Action], wait: _Wait | None = None) -> None:
        """Run ``actions`` in batches; with ``wait``, a batch that waits for a lock is tried
        again as it says (phase 0)."""
        for batch in self._batches(actions):
            started_at = timezone.now() if self.recorder.active else None
            started = time.perf_counter()
            rows = self._run_batch(cursor, batch) if wait is None else self._run_waiting(cursor, batch, wait)
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
                raise LockTimeout(batch) from exc
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
            raise LockTimeout([action]) from exc
        if action.op == "chain_check":
            raise ChainConflict() from exc
        if _sqlstate(exc) == UNDEFINED_TABLE:
            before = self.order.misordered(self.connection, action, exc, self.actions)
            if before is not None:
                raise Misordered(action.decl, before) from exc
        view_sql = self.decls.sql[action.decl] if action.decl >= 0 else None
        version = int(getattr(self.connection, "pg_version", 0) or 0)
        model = self.decls.models[action.decl] if action.decl >= 0 else None
        error = action_error(action, exc, len(self.actions), view_sql, version, model, self.connection.alias)
        # "compat_check": the same test for a view built anew in a chain (plan.c).
        if action.op in ("replace", "compat_check") and error.sqlstate in INCOMPATIBLE:
            raise Incompatible(action.decl, error) from exc
        raise error from exc


class _Wait:
    """One statement's lock wait in phase 0: the session's lock_timeout (ms, 0: none), whether it
    is said (tried in slices), how long it has gone on, when it was last said."""

    def __init__(self, session_ms: int, sliced: bool) -> None:
        self.session_ms = session_ms
        self.sliced = sliced
        self.started = time.monotonic()
        self.said_at: float | None = None

    def waited(self) -> float:
        return time.monotonic() - self.started

    def level(self, waited: float) -> int:
        """1 when the wait is to be said at the default verbosity (after QUIET_SECONDS, then
        every 5 s), else 2."""
        if waited >= QUIET_SECONDS and (self.said_at is None or waited - self.said_at >= 5):
            self.said_at = waited
            return 1
        return 2


def _set_lock_timeout(cursor: Any, ms: int) -> None:
    cursor.execute("SELECT pg_catalog.set_config('lock_timeout', %s, true)", [f"{ms}ms"])
