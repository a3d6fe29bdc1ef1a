"""Sync: bring one database's views in line with their declarations.

Python gathers the declarations and runs statements; the C core plans. A sync reads the catalog
once; when the plan is empty that single query is all it costs. Otherwise it takes an advisory
lock, reads the catalog again under the lock (so two deploys never plan the same work twice),
and runs the plan in one transaction: built-beside copies first, then the short phase that
takes the locks readers wait on, with a lock_timeout so it never queues in front of them.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict, cast

from django.db import DEFAULT_DB_ALIAS, transaction
from django.db import Error as DjangoDBError
from django.db.backends.base.base import BaseDatabaseWrapper

from django_pgviews_c import _core
from django_pgviews_c.dberrors import connection_is_lost, ensure_connected, lost_connection_error
from django_pgviews_c.dberrors import diag as _diag
from django_pgviews_c.dberrors import sqlstate as _sqlstate
from django_pgviews_c.declarations import Declarations, read_catalog, setting, view_models
from django_pgviews_c.exact import TRIGGER, ExactChanges, exact_models, exact_work, sync_exact
from django_pgviews_c.exceptions import (
    DatabaseError,
    ForceRequiredError,
    LockNotAvailableError,
    PGViewsError,
    PlanError,
    QueryCanceledError,
    ViewDefinitionError,
)
from django_pgviews_c.locks import (
    QUIET_SECONDS,
    describe_holders,
    holders,
    session_timeouts,
    take_advisory_lock,
)
from django_pgviews_c.signals import all_views_synced, view_synced
from django_pgviews_c.view import View

logger = logging.getLogger("django_pgviews_c.sync_pgviews")
exists_logger = logging.getLogger("django_pgviews_c.sync_pgviews.exists")

#: Key of the transaction-level advisory lock that serialises syncs of one database.
ADVISORY_LOCK_KEY = 0x70677669657773  # "pgviews"

# SQLSTATEs of CREATE OR REPLACE VIEW refusing a column change (drop, rename, retype).
_INCOMPATIBLE = {"42P16", "42804"}
_LOCK_NOT_AVAILABLE = "55P03"
_UNDEFINED_TABLE = "42P01"
# The relation in the server's "relation ... does not exist", as the statement named it
# (identifiers already folded by the parser, schema-qualified when the statement was).
# Read from the first quoted name, so a translated message (lc_messages) is read too.
_MISSING_RELATION = re.compile(r'"(?:([^".]+)\.)?([^"]+)"')
_CANCELED = "57014"

_MAX_BATCH = 400

# The existing objects a plan rebuilds: kind, estimated rows, total size with indexes.
_SIZES_SQL = _core.query_sql("sync_sizes")

# Actions that compute a materialized view's data, and how a progress line names them.
_DATA_OPS = {"create", "build", "refresh"}
_VERBS = {"create": "built", "build": "built", "refresh": "re-populated"}
# Lines of the -v 1 report before it says "... and N more".
_REPORT_LINES = 50

# Phase-1 actions that lock their declaration's relation.
_LOCKING_OPS = {"drop", "swap", "refresh", "drop_index"}

STATUS_MESSAGES = {
    "CREATED": "created",
    "UPDATED": "updated",
    "EXISTS": "already exists, skipping",
    "FORCED": "forced overwrite of existing schema",
    "FORCE_REQUIRED": "exists with incompatible schema, --force required to update",
}


@dataclass
class Action:
    """One planned statement. The core returns each as a named record (``_core.PlanAction``,
    whose fields are the one definition of this contract); this mirror adds type hints and is
    filled by name, never by position."""

    op: str
    decl: int
    sql: str
    lock: str
    target: str
    phase: int
    sql_offset: int

    @classmethod
    def from_tuple(cls, t: Any) -> Action:
        return cls(**{name: getattr(t, name) for name in cls.__dataclass_fields__})


class _PlanOptions(TypedDict, total=False):
    """The keyword arguments of _core.plan() a sync sets."""

    force: bool
    update: bool
    check_sql_changed: bool
    restore_dependants: bool
    no_data: bool
    prune: bool
    create_schemas: bool
    defer: list[int]
    swap_pending: list[int]


@dataclass
class ColumnProblem:
    """A model field whose column the view does not have (column_type None), or has with a type
    of another family than the field's."""

    label: str
    field: str
    column: str
    field_type: str | None
    column_type: str | None
    view_columns: tuple[str, ...]

    @property
    def detail(self) -> str:
        if self.column_type is None:
            return (
                f"field {self.field!r} reads column {self.column!r}, which the view does not have "
                f"(its columns: {', '.join(self.view_columns) or 'none'})"
            )
        return (
            f"field {self.field!r} ({self.field_type}) reads column {self.column!r} "
            f"of type {self.column_type}"
        )

    @property
    def message(self) -> str:
        return f"{self.label}: {self.detail}"


@dataclass
class SyncResult:
    """What one sync of one database did."""

    using: str
    statuses: dict[str, str] = field(default_factory=dict)  # label -> status
    reasons: dict[str, str] = field(default_factory=dict)  # label -> why it was touched
    states: dict[str, str] = field(default_factory=dict)  # label -> state code (pgviews_status)
    # (schema.name, relkind) of the objects with our stamp that no declaration claims
    orphans: list[tuple[str, str]] = field(default_factory=list)
    # Fields whose column the view lacks or has with another type: ColumnProblem each
    column_problems: list[ColumnProblem] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    seconds: float = 0.0
    catalog_queries: int = 0
    touched: set[str] = field(default_factory=set)  # labels an action was (or would be) run for
    names: dict[str, str] = field(default_factory=dict)  # label -> quoted qualified name
    #: label -> (seconds, rows; -1 when not known) of computing each materialized view's data
    timings: dict[str, tuple[float, int]] = field(default_factory=dict)
    #: --plan: what a rehearsal of the plan (run, then rolled back) raised; None when it passed
    error: PGViewsError | None = None
    #: --plan: label -> (quoted qualified name, relkind, estimated rows, bytes) of the objects
    #: that exist and that the plan rebuilds or re-populates
    sizes: dict[str, tuple[str, str, int, int]] = field(default_factory=dict)
    #: the exact mode's triggers this sync created and dropped (exact.py)
    exact: ExactChanges = field(default_factory=ExactChanges)

    @property
    def changed(self) -> list[str]:
        """Views this sync touched: created, updated, re-created, re-populated or re-indexed."""
        return [
            label
            for label, status in self.statuses.items()
            if status not in ("EXISTS", "FORCE_REQUIRED") or label in self.touched
        ]


class _Incompatible(Exception):
    def __init__(self, decl: int, error: DatabaseError) -> None:
        self.decl = decl
        self.error = error


class _LockTimeout(Exception):
    pass


class _Misordered(Exception):
    """Creating a view failed because a view the same sync creates later does not exist yet:
    it reads that view without declaring it (check W005)."""

    def __init__(self, decl: int, before: int) -> None:
        self.decl = decl
        self.before = before


class _ChainConflict(Exception):
    """A view of a changed chain names an old object by schema: build that chain in place."""


class Syncer:
    """One sync of the views that live on one connection."""

    def __init__(
        self,
        connection: BaseDatabaseWrapper,
        models: Sequence[type[View]],
        known: set[str],
        *,
        force: bool = False,
        update: bool = True,
        check_sql_changed: bool = True,
        restore_dependants: bool = False,
        no_data: bool = False,
        prune: bool = False,
        verbosity: int = 1,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.connection = connection
        self.decls = Declarations(models, connection, known)
        self.options: _PlanOptions = {
            "force": force,
            "update": update,
            "check_sql_changed": check_sql_changed,
            "restore_dependants": restore_dependants,
            # Every materialized view built WITH NO DATA and nothing populated: a dry run that
            # executes the plan in a transaction it rolls back costs no data work.
            "no_data": no_data,
            # Drop objects that carry our stamp but that no declaration claims (dependants first).
            "prune": prune,
            # Rebuilds that wait beside the old object for refresh_pgviews --pending (pending.py).
            "defer": self.decls.defer,
        }
        self.verbosity = verbosity
        self.progress = progress
        self.result = SyncResult(using=connection.alias)

    # -- planning -------------------------------------------------------------------------------

    def plan(self, cursor: Any, recreate: Iterable[int] = (), restore: bool | None = None) -> dict[str, Any]:
        options = self.options.copy()
        options.setdefault("create_schemas", bool(setting("PGVIEWS_CREATE_SCHEMAS", False)))
        if restore is not None:
            options["restore_dependants"] = restore
        self._triggers: list[int] = []
        rows = read_catalog(cursor, self.decls.catalog_params(options["restore_dependants"]), self._triggers)
        self.result.catalog_queries += 1
        plan = _core.plan(self.decls.tuples, rows, recreate=list(recreate), chain=self._chain, **options)
        if plan["probes"]:
            # Objects without our stamp: adopted as they are when they equal their declaration.
            adopt = self._probe(cursor, plan["probes"])
            plan = _core.plan(
                self.decls.tuples, rows, recreate=list(recreate), chain=self._chain, adopt=adopt, **options
            )
        self.result.states = dict(zip(self.decls.labels, plan["states"], strict=True))
        self.result.orphans = [(_core.qualified_name(s, n), kind) for s, n, kind in plan["orphans"]]
        self.result.column_problems = [
            ColumnProblem(self.decls.labels[p[0]], *p[1:]) for p in plan["columns"]
        ]
        # The callers take the plan apart (pop "actions") and merge plans: a plain dict to them.
        return cast("dict[str, Any]", plan)

    def _probe(self, cursor: Any, probes: list[tuple[int, tuple[str, ...], str]]) -> dict[int, bool]:
        """Adoption: compare each unstamped object with its declaration as PostgreSQL renders
        them. Each probe creates the declaration beside the object under a temporary name
        (materialized views WITH NO DATA, so no data work) and compares definitions and
        indexes; everything is rolled back. Returns {declaration: indexes equal} for those whose
        definition is equal. A probe that fails (bad SQL) only means "not equal": the sync then
        rebuilds, and reports the error where it happens."""
        alias = self.connection.alias
        adopt: dict[int, bool] = {}
        with transaction.atomic(using=alias):
            for decl, statements, check in probes:
                try:
                    with transaction.atomic(using=alias):
                        for sql in statements:
                            cursor.execute(sql)
                        cursor.execute(check)
                        same_definition, same_indexes = cursor.fetchone()
                except DjangoDBError as exc:
                    if connection_is_lost(self.connection, exc):
                        raise lost_connection_error(self.connection, "syncing views") from exc
                    continue
                if same_definition:
                    adopt[decl] = bool(same_indexes)
            transaction.set_rollback(True, using=alias)
        return adopt

    #: Build changed chains in a build schema (off after a chain named an old object by schema).
    _chain = True

    #: (declaration, declaration it must follow) learned while creating: undeclared reads.
    _after: list[tuple[int, int]] = []

    # -- running --------------------------------------------------------------------------------

    def run(self, dry_run: bool = False, rehearse: bool = False) -> SyncResult:
        """Sync. ``dry_run``: plan only. ``rehearse`` (``sync_pgviews --plan``): plan, then run
        the plan as the sync would, every materialized view built WITH NO DATA, in a transaction
        that is always rolled back; what it raises is kept in ``result.error``."""
        if rehearse:
            try:
                return self._run(dry_run=True, rehearse=True)
            except PGViewsError as exc:
                self.result.error = exc
                return self.result
        return self._run(dry_run=dry_run)

    def _run(self, dry_run: bool = False, rehearse: bool = False) -> SyncResult:
        started = time.perf_counter()
        # A cycle or a missing dependency is the declarations' own fault: report it before
        # anything reaches the server (the planner would find it only after the catalog read).
        _core.Graph(self.decls.labels, [list(t[5]) for t in self.decls.tuples]).order()
        # Never connected is not lost: a database that cannot be reached says why, first.
        ensure_connected(self.connection)
        try:
            with self.connection.cursor() as cursor:
                plan = self.plan(cursor)
                actions = [Action.from_tuple(a) for a in plan.pop("actions")]
                if actions and rehearse:
                    self._fill(plan, actions)  # what is shown if the rehearsal fails
                    self.result.sizes = self._sizes(cursor)
                    plan, actions = self._merge(plan, actions, *self._rehearse(cursor))
                elif actions and not dry_run:
                    # The plan read outside the lock is only a question (is there work?): let it
                    # go before planning again under the lock, so a big sync holds one plan.
                    del plan, actions
                    plan, actions = self._apply(cursor)
                    self._fill(plan, actions)
                    self._report()
                elif not dry_run and self._wants_exact() and exact_work(cursor, self.decls.models):
                    with transaction.atomic(using=self.connection.alias):
                        self._take_sync_lock(cursor)
                        self._sync_exact(cursor)
        except DjangoDBError as exc:
            if connection_is_lost(self.connection, exc):
                raise lost_connection_error(self.connection, "syncing views") from exc
            raise
        self.result.seconds = time.perf_counter() - started
        self._fill(plan, actions)
        return self.result

    def _apply(self, cursor: Any) -> tuple[dict[str, Any], list[Action]]:
        recreate: set[int] = set()
        self._after = []
        with transaction.atomic(using=self.connection.alias):
            self._take_sync_lock(cursor)
            cursor.execute("SAVEPOINT pgvc_sync")
            while True:
                plan = self.plan(cursor, recreate)
                actions = self._reorder([Action.from_tuple(a) for a in plan.pop("actions")])
                try:
                    self._execute(cursor, actions)
                    self._check_columns(cursor, plan, actions)
                    if self._wants_exact():
                        self._sync_exact(cursor)
                    return plan, actions
                except _Misordered as mis:
                    # The whole plan again from the start, that view after the one it reads.
                    cursor.execute("ROLLBACK TO SAVEPOINT pgvc_sync")
                    self._after.append((mis.decl, mis.before))
                    self._say(
                        f"  {self.decls.labels[mis.decl]} reads {self.decls.labels[mis.before]} "
                        f"without declaring it: creating it after that one",
                        1,
                    )
                except _ChainConflict:
                    cursor.execute("ROLLBACK TO SAVEPOINT pgvc_sync")
                    self._chain = False
                except _Incompatible as inc:
                    if not self.options["force"]:
                        raise self._force_required(cursor, inc, recreate) from None
                    cursor.execute("ROLLBACK TO SAVEPOINT pgvc_sync")
                    recreate.add(inc.decl)

    def _wants_exact(self) -> bool:
        """Whether the exact mode's triggers need a look: some view is exact, or the catalog
        query saw a trigger of ours (one may have to go)."""
        return bool(self._triggers) or bool(exact_models(self.decls.models))

    def _sync_exact(self, cursor: Any) -> None:
        """The exact mode's triggers (exact.py), in the sync's transaction."""
        changes = sync_exact(cursor, self.decls.models)
        self.result.exact = changes
        for table in changes.created:
            self._say(f"  exact staleness: trigger {TRIGGER} created on {table}", 1)
        for table in changes.dropped:
            self._say(f"  exact staleness: trigger {TRIGGER} dropped from {table}", 1)

    def _dependants(self, decl: int) -> set[int]:
        """The declaration and every one that depends on it, declared or learned (_after)."""
        index = {label: i for i, label in enumerate(self.decls.labels)}
        readers: dict[int, set[int]] = {}
        for i, t in enumerate(self.decls.tuples):
            for dep in t[5]:
                if dep in index:
                    readers.setdefault(index[dep], set()).add(i)
        for later, before in self._after:
            readers.setdefault(before, set()).add(later)
        found = {decl}
        todo = [decl]
        while todo:
            for reader in readers.get(todo.pop(), ()):
                if reader not in found:
                    found.add(reader)
                    todo.append(reader)
        return found

    def _reorder(self, actions: list[Action]) -> list[Action]:
        """Apply the orders learned from undeclared reads: the actions of a view (its create,
        indexes...) and of everything depending on it that come before the last action of the
        view it reads move just after that one, in their order, in that one's phase."""
        for decl, before in self._after:
            moved = self._dependants(decl)
            last = max((k for k, a in enumerate(actions) if a.decl == before), default=-1)
            if last < 0:
                continue
            phase = actions[last].phase
            head = actions[: last + 1]
            moving = [a for a in head if a.decl in moved]
            if not moving:
                continue
            for a in moving:
                a.phase = max(a.phase, phase)
            actions = [a for a in head if a.decl not in moved] + moving + actions[last + 1 :]
        return actions

    def _misordered(self, action: Action, exc: BaseException) -> int | None:
        """When creating a view failed because a relation it reads does not exist, and that
        relation is a view this plan creates (after it): that view's declaration. None when the
        relation is not one of ours, or when ordering after it would make a cycle."""
        if action.decl < 0 or action.op not in ("create", "build"):
            return None
        found = _MISSING_RELATION.search(_diag(exc)["message"] or "")
        if found is None:
            return None
        schema, name = found.groups()
        creates = {a.decl for a in self._actions if a.op in ("create", "build") and a.decl >= 0}
        candidates = [
            i for i, (_, n) in enumerate(self.decls.split) if n == name and i in creates and i != action.decl
        ]
        if not candidates:
            return None
        # A db_table without a schema lives in the first schema of the search path; a name the
        # statement did not qualify means the first schema of the path that has it.
        with self.connection.cursor() as cursor:
            cursor.execute(_core.query_sql("current_schemas"))
            path = list(cursor.fetchone()[0])
        where = {i: self.decls.split[i][0] or (path[0] if path else None) for i in candidates}
        if schema is not None:
            candidates = [i for i in candidates if where[i] == schema]
        else:
            ranked = sorted((path.index(s), i) for i, s in where.items() if s in path)
            candidates = [ranked[0][1]] if ranked else []
        if len(candidates) != 1:
            return None
        before = candidates[0]
        if before in self._dependants(action.decl) or (action.decl, before) in self._after:
            return None  # a cycle, or already ordered so and still missing
        return before

    def _check_columns(self, cursor: Any, plan: dict[str, Any], actions: list[Action]) -> None:
        """After creating or adopting views, compare each model field's column with the view's
        columns (one more catalog read, in the same transaction): a missing column or another
        type family is a warning, and with PGVIEWS_STRICT_COLUMNS = True an error that rolls the
        whole sync back."""
        touched = {a.decl for a in actions if a.decl >= 0}
        touched |= {i for i, state in enumerate(plan["states"]) if state == "unstamped"}
        self.plan(cursor)
        labels = {self.decls.labels[i] for i in touched}
        problems = [p for p in self.result.column_problems if p.label in labels]
        if not problems:
            return
        if setting("PGVIEWS_STRICT_COLUMNS", False):
            raise PlanError(
                "\n".join(p.message for p in problems)
                + "\nPGVIEWS_STRICT_COLUMNS is on: nothing was changed. Fix the view's SQL or the model."
            )
        for problem in problems:
            logger.warning("%s", problem.message)
            self._say(f"warning: {problem.message}", 1)

    def _force_required(self, cursor: Any, inc: _Incompatible, recreate: set[int]) -> ForceRequiredError:
        label = self.decls.labels[inc.decl]
        cursor.execute("ROLLBACK TO SAVEPOINT pgvc_sync")
        actions = [
            Action.from_tuple(a) for a in self.plan(cursor, recreate | {inc.decl}, restore=True)["actions"]
        ]
        drops = [a.target for a in actions if a.op == "drop"]
        # Dropped and restored objects no declaration claims: --force alone would refuse them.
        restored = {a.target for a in actions if a.op == "restore"}
        unmanaged = [a.target for a in actions if a.op == "drop" and a.decl < 0 and a.target in restored]
        way_out = "Run sync_pgviews --force to do so."
        if unmanaged and not self.options["restore_dependants"]:
            way_out = (
                f"Objects django-pgviews-c does not manage depend on it: {', '.join(unmanaged)}; "
                f"--force alone refuses to drop them. Run sync_pgviews --force --restore-dependants "
                f"(or set PGVIEWS_RESTORE_DEPENDANTS = True, which migrate follows too) to save them "
                f"and re-create them, with their grants, owner and comment, in the same transaction."
            )
        server = "".join(
            f"\n{word}: {text}"
            for word, text in (("DETAIL", inc.error.detail), ("HINT", inc.error.hint))
            if text
        )
        return ForceRequiredError(
            f"{label} cannot be updated in place: {inc.error.message}. Re-creating it drops "
            f"{', '.join(drops) or 'only itself'}; they are re-created in the same transaction. "
            f"{way_out} Nothing was changed.{server}",
            {"view": label, "drops": drops, "unmanaged": unmanaged},
        )

    def _fill(self, plan: dict[str, Any], actions: list[Action]) -> None:
        self.result.actions = actions
        self.result.touched = {self.decls.labels[a.decl] for a in self.result.actions if a.decl >= 0}
        for i, label in enumerate(self.decls.labels):
            self.result.names[label] = _core.qualified_name(*self.decls.split[i])
            self.result.statuses[label] = plan["statuses"][i]
            if plan["reasons"][i]:
                self.result.reasons[label] = plan["reasons"][i]

    def _rehearse(self, cursor: Any) -> tuple[dict[str, Any], list[Action]]:
        """Run the plan as the sync would (under its lock, with its retries and its errors:
        SQL errors with their position, ForceRequiredError, refused dependants), every
        materialized view created WITH NO DATA and nothing populated, so it costs no data work,
        in a transaction that is always rolled back."""
        alias = self.connection.alias
        saved = self.options.get("no_data", False)
        self.options["no_data"] = True
        self.no_data_rehearsal = True
        try:
            with transaction.atomic(using=alias):
                try:
                    return self._apply(cursor)
                finally:
                    transaction.set_rollback(True, using=alias)
        finally:
            self.options["no_data"] = saved
            self.no_data_rehearsal = False

    def _merge(
        self,
        first: dict[str, Any],
        first_actions: list[Action],
        ran: dict[str, Any],
        ran_actions: list[Action],
    ) -> tuple[dict[str, Any], list[Action]]:
        """What --plan shows: the plan the rehearsal ran (its re-plans included: a view that
        turned out to need re-creating shows as such), plus the views only the first plan
        touched (re-populating, which a rehearsal WITH NO DATA leaves out)."""
        touched = {a.decl for a in ran_actions if a.decl >= 0}
        extra = {a.decl for a in first_actions if a.decl >= 0} - touched
        plan = {"statuses": list(ran["statuses"]), "reasons": list(ran["reasons"])}
        for i in extra:
            plan["statuses"][i] = first["statuses"][i]
            plan["reasons"][i] = first["reasons"][i]
        return plan, ran_actions + [a for a in first_actions if a.decl in extra]

    def _sizes(self, cursor: Any) -> dict[str, tuple[str, str, int, int]]:
        labels = list(self.decls.labels)
        names = [self.result.names[label] for label in labels]
        if not names:
            return {}
        cursor.execute(_SIZES_SQL, [names])
        found = {row[0]: row[1:] for row in cursor.fetchall()}
        return {
            label: (name, *found[name]) for label, name in zip(labels, names, strict=True) if name in found
        }

    def _take_sync_lock(self, cursor: Any) -> None:
        """The advisory lock that serialises syncs of one database; a wait of more than a second
        for another sync is said at verbosity 1, naming it."""
        take_advisory_lock(
            cursor,
            ADVISORY_LOCK_KEY,
            alias=self.connection.alias,
            say=lambda text: self._say(text, 1),
            is_lock_timeout=lambda exc: _sqlstate(exc) == _LOCK_NOT_AVAILABLE,
        )

    _planned = 0
    _actions: list[Action] = []

    def _execute(self, cursor: Any, actions: list[Action]) -> None:
        self._planned = len(actions)
        self._actions = actions
        if self._work_started is None:
            self._work_started = time.monotonic()
        phase0 = [a for a in actions if a.phase == 0]
        phase1 = [a for a in actions if a.phase != 0]
        self._run_actions(cursor, phase0)
        if phase1:
            self._swap(cursor, phase1)

    def _swap(self, cursor: Any, phase1: list[Action]) -> None:
        """Phase 1, the statements that take the locks readers wait on, with a short lock_timeout
        and retries, so it never queues in front of readers for long. Every attempt, the last
        included, is bounded (PGVIEWS_SWAP_LOCK_TIMEOUT_MS), and never longer than the session's
        own lock_timeout; when the last runs out, the whole sync rolls back naming the holder."""
        retries = int(setting("PGVIEWS_SWAP_RETRIES", 20))
        short_ms = int(setting("PGVIEWS_LOCK_TIMEOUT_MS", 200))
        final_ms = int(setting("PGVIEWS_SWAP_LOCK_TIMEOUT_MS", 5000))
        session = session_timeouts(cursor)
        if session["lock_timeout"] > 0:
            short_ms = min(short_ms, session["lock_timeout"])
            final_ms = min(final_ms, session["lock_timeout"])
        # Autovacuum gives way only to a waiter that waits past deadlock_timeout.
        autovacuum_ms = min(session["deadlock_timeout"] + 200, final_ms)
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
            cursor.execute(
                "SELECT pg_catalog.set_config('lock_timeout', %s, true)",
                [f"{final_ms if last else wait_ms}ms"],
            )
            try:
                self._run_actions(cursor, phase1)
                break
            except _LockTimeout as exc:
                cursor.execute("ROLLBACK TO SAVEPOINT pgvc_phase1")
                found = holders(cursor, relations)
                if last:
                    raise LockNotAvailableError(
                        f"could not take the locks to swap in the new views ({', '.join(relations)}): "
                        f"{attempt + 1} attempts over {time.monotonic() - started:.1f}s, the last "
                        f"waiting {final_ms} ms (PGVIEWS_SWAP_LOCK_TIMEOUT_MS or the session's "
                        f"lock_timeout), met {describe_holders(found)}. The sync was rolled back; "
                        f"nothing was changed.",
                        sqlstate=_LOCK_NOT_AVAILABLE,
                    ) from exc.__cause__
                wait_ms = autovacuum_ms if any(h.is_autovacuum for h in found) else short_ms
                waited = time.monotonic() - started
                loud = waited >= QUIET_SECONDS and (said_at is None or waited - said_at >= 5)
                if loud:
                    said_at = waited
                self._say(
                    f"  waiting {waited:.1f}s for locks to swap in the new views, held by "
                    f"{describe_holders(found)}; retrying ({attempt + 1}/{retries})",
                    1 if loud else 2,
                )
                time.sleep(min(0.05 * (attempt + 1), 1.0))
        # What follows in the transaction waits as the session's own setting says.
        cursor.execute(
            "SELECT pg_catalog.set_config('lock_timeout', %s, true)", [f"{session['lock_timeout']}ms"]
        )

    def _heavy(self, action: Action) -> bool:
        """Whether the action computes a materialized view's data (the slow work)."""
        return action.decl >= 0 and action.op in _DATA_OPS and self.decls.tuples[action.decl][3] == "m"

    def _batches(self, actions: list[Action]) -> Iterable[list[Action]]:
        """Up to _MAX_BATCH statements a round trip; an action that computes a materialized
        view's data on its own, to time it and count its rows. At -v 2 everything one by one."""
        batch: list[Action] = []
        for action in actions:
            if self.verbosity >= 2 or self._heavy(action):
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
            started = time.perf_counter()
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
                    self._script(
                        cursor, "".join(a.sql + "\n;\n" for a in batch) + "RELEASE SAVEPOINT pgvc_batch"
                    )
            except DjangoDBError as exc:
                if connection_is_lost(self.connection, exc):
                    # Said now: once the transaction unwinds, the driver may no longer tell.
                    raise lost_connection_error(self.connection, "syncing views") from exc
                cursor.execute("ROLLBACK TO SAVEPOINT pgvc_batch")
                if _sqlstate(exc) == _LOCK_NOT_AVAILABLE:
                    raise _LockTimeout() from exc
                if _sqlstate(exc) == _CANCELED:
                    # statement_timeout, or a cancel: running it again would only wait again.
                    raise self._canceled(batch, exc) from exc
                if len(batch) == 1 and self._heavy(batch[0]):
                    # Sent alone: its error is already its own, and a rebuild is not run twice.
                    self._fail(batch[0], exc)
                # Replayed one by one, either a statement fails and is named, or all pass (the
                # batch hit something transient) and the sync goes on.
                self._find_failure(cursor, batch)
            seconds = time.perf_counter() - started
            if self.verbosity >= 2 and batch:
                action = batch[0]
                self._say(f"  {action.op:<13} {action.target}  {seconds:.3f}s", 2)
            if len(batch) == 1 and self._heavy(batch[0]):
                self._finished(batch[0], seconds, rows)

    def _script(self, cursor: Any, sql: str) -> None:
        """Run a string of several statements in one round trip."""
        cursor.execute(sql)

    def _finished(self, action: Action, seconds: float, rows: int) -> None:
        """A materialized view's data computed: remembered for the report, and said at -v 1
        as it happens once the work has gone on for more than a few seconds."""
        label = self.decls.labels[action.decl]
        before = self.result.timings.get(label, (0.0, -1))
        self.result.timings[label] = (before[0] + seconds, rows if rows >= 0 else before[1])
        if self.no_data_rehearsal:
            return
        started = self._work_started if self._work_started is not None else time.monotonic() - seconds
        after = float(setting("PGVIEWS_PROGRESS_AFTER_SECONDS", 3))
        if time.monotonic() - started >= after:
            counted = f", {rows} rows" if rows >= 0 else ""
            self._say(f"  {_VERBS.get(action.op, action.op)} {label}  {seconds:.1f}s{counted}", 1)

    #: Set while --plan rehearses: nothing it builds is worth a progress line.
    no_data_rehearsal = False
    _work_started: float | None = None

    def _report(self) -> None:
        """At -v 1, after the sync: what was re-created and re-populated, with times (views
        created for the first time are counted by the command's summary)."""
        if self.verbosity < 1 or not self.progress:
            return
        lines = []
        for label in self.result.changed:
            status = self.result.statuses[label]
            if status == "CREATED":
                continue
            line = f"  {status:<8} {label}"
            reason = self.result.reasons.get(label)
            if reason:
                line += f"  ({reason})"
            timing = self.result.timings.get(label)
            if timing:
                line += f"  {timing[0]:.2f}s" + (f", {timing[1]} rows" if timing[1] >= 0 else "")
            lines.append(line)
        for line in lines[:_REPORT_LINES]:
            self._say(line, 1)
        if len(lines) > _REPORT_LINES:
            self._say(f"  ... and {len(lines) - _REPORT_LINES} more (-v 2 lists every view)", 1)

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
                if _sqlstate(exc) == _CANCELED:
                    raise self._canceled([action], exc) from exc
                self._fail(action, exc)
            cursor.execute("RELEASE SAVEPOINT pgvc_one")

    def _fail(self, action: Action, exc: BaseException) -> None:
        """Raise what a failed action means: a lock timeout to retry, a chain to build in place,
        a column change that needs --force, or the error naming the view."""
        if _sqlstate(exc) == _LOCK_NOT_AVAILABLE:
            raise _LockTimeout() from exc
        if action.op == "chain_check":
            raise _ChainConflict() from exc
        if _sqlstate(exc) == _UNDEFINED_TABLE:
            before = self._misordered(action, exc)
            if before is not None:
                raise _Misordered(action.decl, before) from exc
        error = self._error(action, exc)
        # "compat_check": the same test for a view built anew in a chain (plan.c).
        if action.op in ("replace", "compat_check") and error.sqlstate in _INCOMPATIBLE:
            raise _Incompatible(action.decl, error) from exc
        raise error from exc

    def _canceled(self, batch: list[Action], exc: BaseException) -> QueryCanceledError:
        info = _diag(exc)
        what = f"{batch[0].op} {batch[0].target}"
        if len(batch) > 1:
            what = f"one of {len(batch)} statements sent together (from {what})"
        return QueryCanceledError(
            info["message"],
            sqlstate=info["sqlstate"],
            detail=info["detail"],
            hint=info["hint"]
            or "this session's statement_timeout ran out, or another session cancelled the statement; "
            "the sync was rolled back, nothing was changed",
            view=what,
        )

    def _error(self, action: Action, exc: BaseException) -> DatabaseError:
        info = _diag(exc)
        decl = action.decl
        what = f"{action.op} {action.target}"
        if info["sqlstate"] == "53200":  # out of shared memory: the lock table is full
            info["hint"] = (
                f"a sync runs in one transaction, and every view it creates holds a lock until "
                f"commit; this one plans {self._planned} actions. Raise max_locks_per_transaction "
                f"(server setting, needs a restart) to at least {self._planned // 50 + 64}."
            )
            info["position"] = None
            return DatabaseError(info.pop("message"), view=what, **info)
        if decl >= 0 and action.sql_offset >= 0 and action.op in ("create", "replace", "build"):
            position = info["position"]
            if position is not None and position > action.sql_offset:
                info["position"] = position - action.sql_offset
            else:
                info["position"] = None
            return ViewDefinitionError(info.pop("message"), sql=self.decls.sql[decl], view=what, **info)
        info["position"] = None
        return DatabaseError(info.pop("message"), view=what, **info)

    def _say(self, text: str, level: int) -> None:
        if self.progress and self.verbosity >= level:
            self.progress(text)


def sync_pgviews(
    using: str = DEFAULT_DB_ALIAS,
    *,
    force: bool = False,
    update: bool = True,
    check_sql_changed: bool | None = None,
    restore_dependants: bool | None = None,
    prune: bool = False,
    dry_run: bool = False,
    rehearse: bool = False,
    verbosity: int = 1,
    progress: Callable[[str], None] | None = None,
    send_signals: bool = True,
) -> list[SyncResult]:
    """Sync every view that belongs to database ``using`` (routers decide, through each view's
    ``get_view_connection(using, restricted_mode=True)``). One result per connection.

    ``dry_run``: plan only, change nothing. ``rehearse``: plan, then run the plan in a
    transaction that is always rolled back (materialized views WITH NO DATA); each result's
    ``error`` is what the real sync would raise.

    Raises a ``PGViewsError`` when the sync cannot be done; the database is then as it was."""
    if check_sql_changed is None:
        check_sql_changed = setting("MATERIALIZED_VIEWS_CHECK_SQL_CHANGED", True)
    if restore_dependants is None:
        restore_dependants = setting("PGVIEWS_RESTORE_DEPENDANTS", False)
    models = view_models()
    known = {m._meta.label for m in models}
    by_connection: dict[str, tuple[BaseDatabaseWrapper, list[type[View]]]] = {}
    for model in models:
        conn = model.get_view_connection(using=using, restricted_mode=True)
        if conn is None:
            logger.info("Skipping pgview %s (migrations not allowed on %s)", model._meta.label, using)
            continue
        by_connection.setdefault(conn.alias, (conn, []))[1].append(model)
    results = []
    for conn, conn_models in by_connection.values():
        syncer = Syncer(
            conn,
            conn_models,
            known,
            force=force,
            update=update,
            check_sql_changed=check_sql_changed,
            restore_dependants=restore_dependants,
            prune=prune,
            verbosity=verbosity,
            progress=progress,
        )
        result = syncer.run(dry_run=dry_run, rehearse=rehearse)
        results.append(result)
        if send_signals and not (dry_run or rehearse):
            _send_signals(conn_models, result, using, update=update, force=force)
    if send_signals and not (dry_run or rehearse):
        all_views_synced.send(sender=None, using=using)
    return results


def _send_signals(
    models: list[type[View]], result: SyncResult, using: str, *, update: bool, force: bool
) -> None:
    for model in models:
        label = model._meta.label
        status = result.statuses[label]
        view_synced.send(
            sender=model,
            update=update,
            force=force,
            status=status,
            has_changed=status not in ("EXISTS", "FORCE_REQUIRED"),
            using=using,
        )
        use_logger = exists_logger if status == "EXISTS" else logger
        use_logger.info("pgview %s %s", label, STATUS_MESSAGES.get(status, status))


__all__ = ["sync_pgviews", "SyncResult", "Syncer", "view_models", "PGViewsError"]
