"""The refreshes a sync performs, recorded: every statement of a plan that computes a declared
materialized view's data (a creation or rebuild WITH DATA, a chain's new version, a dependant
re-created, a REFRESH of an unpopulated or adopted view; ``Action.populates``) leaves one record
in the view's history, as a refresh does (history.py): mode plain, a reason saying what the sync
did, the duration the executor timed, the rows and the sources.

The records go in the sync's transaction, after its last statement (a view built beside or in
a chain has its own name only then), all in one statement (``history_insert_many``: one round
trip however many views, each one's rows counted in it, each view's history pruned as a single
record's insert does) in a savepoint (a failure to record is a warning, never a failed sync); a
sync rolled back leaves none. The sources of a view are known only once
it exists, so they are read after the statements, from the statistics as they were before the
first one: the transaction holds them from then on (``history_hold_stats``), so a write
committed while the views were built makes them stale, never fresh by mistake. The exact mode's
counters are read by MVCC, not from that snapshot, so a view built by a sync is judged by the
statistics until its next refresh.

A sync with nothing to populate sends nothing more; with the history off (PGVIEWS_HISTORY), its
table missing (the app's migration 0001 not run on that database) or while the test databases
are built (testing.setting_up) nothing is recorded, and the one query that looked costs a round
trip only when something was populated. ``history_ready`` / ``recording_if_ready`` serve the
refreshes the package runs on its own outside a sync (aside.py: set-aside views re-populated)."""

from __future__ import annotations

__all__ = ["SyncRecorder", "history_ready", "recording_if_ready"]

import contextlib
import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.db import Error as DjangoDBError
from django.db import transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from django_pgviews_c import _core
from django_pgviews_c import view as pg
from django_pgviews_c.dberrors import diag, execute_script
from django_pgviews_c.declarations import Declarations, setting
from django_pgviews_c.syncresult import Action

_HOLD_SQL = _core.query_sql("history_hold_stats")
_RELEASE_SQL = _core.query_sql("history_release_stats")
_PRESENT_SQL = _core.query_sql("history_present")

#: The reason each populating op gives (plain_reason); a "create" of a view that existed before
#: (re-created, or a dependant re-created with it) says "rebuilt".
_REASONS = {"create": "built by sync", "build": "rebuilt by sync", "refresh": "populated by sync"}


@dataclass
class _Populated:
    op: str
    started_at: dt.datetime
    seconds: float


class SyncRecorder:
    """Records the populations of one plan run by the executor, on ``connection``."""

    def __init__(self, connection: BaseDatabaseWrapper, decls: Declarations) -> None:
        self.connection = connection
        self.decls = decls
        #: decl -> its population in the plan being run (a retried phase 1 keeps the last)
        self.done: dict[int, _Populated] = {}
        #: whether the plan being run is recorded (history on, table there, something populated)
        self.active = False

    def begin(self, cursor: Any, actions: list[Action]) -> None:
        """Before the plan's first statement: hold the statistics when anything will be
        populated and the history can take it."""
        self.done = {}
        self.active = False
        if not any(a.populates and a.decl >= 0 for a in actions):
            return
        from django_pgviews_c.testing import setting_up

        if not setting("PGVIEWS_HISTORY", True) or setting_up():
            return
        try:
            with transaction.atomic(using=self.connection.alias):
                results = execute_script(cursor, _HOLD_SQL)
                while results.description is None and results.nextset():  # psycopg 3: the DO first
                    pass
                row = results.fetchone()
        except DjangoDBError as exc:
            from django_pgviews_c.history import logger

            logger.warning("the sync's refreshes will not be recorded: %s", diag(exc)["message"])
            return
        self.active = bool(row and row[0])

    def populated(self, action: Action, started_at: dt.datetime, seconds: float) -> None:
        """The executor ran ``action``, which computed its view's data, in ``seconds``."""
        if self.active and action.populates and action.decl >= 0:
            self.done[action.decl] = _Populated(action.op, started_at, seconds)

    def finish(self, statuses: list[str]) -> int:
        """After the plan's last statement, in its transaction: capture the sources of what was
        populated and write their records, in one statement. ``statuses`` are the plan's, by
        declaration. Returns how many were written."""
        if not self.active:
            return 0
        self.active = False
        from django_pgviews_c import history
        from django_pgviews_c.freshness import ViewState, closure

        decls = sorted(self.done)
        models = [self.decls.models[i] for i in decls]
        states: list[ViewState | None]
        try:
            # In a savepoint: a failure must leave the sync's transaction usable.
            with transaction.atomic(using=self.connection.alias):
                states = list(closure(self.connection, models, fresh_stats=False))
        except DjangoDBError as exc:
            history.logger.warning(
                "could not read the sources of %s for the refresh history: %s",
                ", ".join(m._meta.label for m in models), diag(exc)["message"],
            )  # fmt: skip
            states = [None] * len(models)
        self._release()
        rows = []
        for i, model, state in zip(decls, models, states, strict=True):
            done = self.done[i]
            reason = _REASONS.get(done.op, "built by sync")
            if done.op == "create" and statuses[i] != "CREATED":
                reason = "rebuilt by sync"
            sources = _statistics_only(state.snapshot()) if state is not None and state.oid else None
            rows.append((model, done, reason, sources))
        self.done = {}
        return self._write(rows)

    def _write(self, rows: list[tuple[type[pg.View], _Populated, str, dict[str, Any] | None]]) -> int:
        """The records in one statement (rows counted, each view's history pruned as
        history.record does), in a savepoint. Returns how many were written: all or none."""
        from django_pgviews_c import history

        keep = max(1, int(setting("PGVIEWS_HISTORY_KEEP", history.DEFAULT_KEEP)))
        limit = int(setting("PGVIEWS_HISTORY_COUNT_ROWS_UP_TO", history.DEFAULT_COUNT_LIMIT))
        tables = [model._meta.db_table for model, _, _, _ in rows]
        params: list[Any] = []
        for model, done, reason, sources in rows:
            label, db_table = model._meta.label, model._meta.db_table
            params += [
                label, db_table, done.started_at, done.seconds, limit,
                _core.qualified_name(*_core.split_table(db_table)), False, reason[:255], True, "", "",
                json.dumps(sources) if sources is not None else None,
            ]  # fmt: skip
        params.append(keep - 1)
        try:
            with transaction.atomic(using=self.connection.alias), self.connection.cursor() as cursor:
                cursor.execute(_core.query_sql("history_insert_many", tables=tables), params)
        except DjangoDBError as exc:
            history.logger.warning(
                "the refreshes of %s were not recorded in their history (%s): %s%s",
                ", ".join(model._meta.label for model, _, _, _ in rows), history.TABLE,
                diag(exc)["message"], history._hint(exc, self.connection),
            )  # fmt: skip
            return 0
        return len(rows)

    def _release(self) -> None:
        """stats_fetch_consistency back to the session's value, for the rest of the transaction."""
        try:
            with transaction.atomic(using=self.connection.alias), self.connection.cursor() as cursor:
                cursor.execute(_RELEASE_SQL)
        except DjangoDBError:
            pass  # the setting ends with the transaction anyway


def _statistics_only(snapshot: dict[str, Any]) -> dict[str, Any]:
    """The sources without the exact mode's counters: those were read after the statements,
    when a write committed meanwhile already counts, so the statistics held from before judge."""
    for rel in snapshot.get("rels", {}).values():
        del rel[4:]
    return snapshot


def history_ready(connection: BaseDatabaseWrapper) -> bool:
    """Whether refreshes on ``connection`` are recorded: PGVIEWS_HISTORY on, not the build of
    test databases, and the history table there (one query; False when it fails)."""
    from django_pgviews_c.testing import setting_up

    if not setting("PGVIEWS_HISTORY", True) or setting_up():
        return False
    try:
        with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
            cursor.execute(_PRESENT_SQL)
            row = cursor.fetchone()
    except DjangoDBError:
        return False
    return bool(row and row[0])


@contextlib.contextmanager
def recording_if_ready(
    connection: BaseDatabaseWrapper, model: type[pg.View] | None, plain_reason: str
) -> Iterator[None]:
    """history.recording around a plain refresh the package runs on its own (not asked for:
    set-aside views re-populated); nothing when ``model`` is None (history_ready said no)."""
    if model is None:
        yield
        return
    from django_pgviews_c.history import recording

    with recording(connection, model, concurrent=False, plain_reason=plain_reason):
        yield
