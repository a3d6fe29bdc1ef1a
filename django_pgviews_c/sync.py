"""Sync: bring one database's views in line with their declarations.

Python gathers the declarations and runs statements; the C core plans. A sync reads the catalog
once; when the plan is empty that single query is all it costs. Otherwise it takes an advisory
lock, reads the catalog again under the lock (so two deploys never plan the same work twice),
and runs the plan in one transaction: built-beside copies first, then the short phase that
takes the locks readers wait on, with a lock_timeout so it never queues in front of them.

This file is the entry point (sync_pgviews, the signals) and the re-plan loop (Syncer). Its
parts: adopt.py (unstamped objects equal to their declaration), columns.py (fields against view
columns), order.py (undeclared reads learned while creating), executor.py (running the
statements), failures.py (what a failed one means), report.py (what a sync says),
rehearsal.py (--plan), syncresult.py (Action, SyncResult).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypedDict, cast

from django.db import DEFAULT_DB_ALIAS, transaction
from django.db import Error as DjangoDBError
from django.db.backends.base.base import BaseDatabaseWrapper

from django_pgviews_c import _core
from django_pgviews_c.adopt import probe
from django_pgviews_c.columns import ColumnProblem, column_problems, report_column_problems, to_report
from django_pgviews_c.dberrors import connection_is_lost, ensure_connected, lost_connection_error
from django_pgviews_c.dberrors import sqlstate as _sqlstate
from django_pgviews_c.declarations import Declarations, read_catalog, setting, view_models
from django_pgviews_c.exact import TRIGGER, exact_models, exact_work, plan_exact, sync_exact
from django_pgviews_c.exceptions import ForceRequiredError, PGViewsError
from django_pgviews_c.executor import Executor
from django_pgviews_c.failures import LOCK_NOT_AVAILABLE, ChainConflict, Incompatible, Misordered
from django_pgviews_c.locks import take_advisory_lock
from django_pgviews_c.order import LearnedOrder
from django_pgviews_c.rehearsal import existing_sizes, merge_plans, unpinned_calls
from django_pgviews_c.report import Progress
from django_pgviews_c.signals import all_views_synced, view_synced
from django_pgviews_c.syncresult import Action, SyncResult
from django_pgviews_c.view import View

logger = logging.getLogger("django_pgviews_c.sync_pgviews")
exists_logger = logging.getLogger("django_pgviews_c.sync_pgviews.exists")

#: Key of the transaction-level advisory lock that serialises syncs of one database.
ADVISORY_LOCK_KEY = 0x70677669657773  # "pgviews"

STATUS_MESSAGES = {
    "CREATED": "created",
    "UPDATED": "updated",
    "EXISTS": "already exists, skipping",
    "FORCED": "forced overwrite of existing schema",
    "FORCE_REQUIRED": "exists with incompatible schema, --force required to update",
}


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
        self.result = SyncResult(using=connection.alias)
        self.progress = Progress(verbosity, progress, self.result)
        #: Build changed chains in a build schema (off after a chain named an old object by schema).
        self.chain = True
        self.order = LearnedOrder(self.decls)
        self.executor = Executor(connection, self.decls, self.order, self.progress)

    # -- planning -------------------------------------------------------------------------------

    def plan(self, cursor: Any, recreate: Iterable[int] = (), restore: bool | None = None) -> dict[str, Any]:
        options = self.options.copy()
        options.setdefault("create_schemas", bool(setting("PGVIEWS_CREATE_SCHEMAS", False)))
        if restore is not None:
            options["restore_dependants"] = restore
        self._triggers: list[int] = []
        rows = read_catalog(cursor, self.decls.catalog_params(options["restore_dependants"]), self._triggers)
        self.result.catalog_queries += 1
        plan = _core.plan(self.decls.tuples, rows, recreate=list(recreate), chain=self.chain, **options)
        if plan["probes"]:
            # Objects without our stamp: adopted as they are when they equal their declaration.
            adopt = probe(
                self.connection, cursor, plan["probes"], self._say_probe if self.progress.progress else None
            )
            plan = _core.plan(
                self.decls.tuples, rows, recreate=list(recreate), chain=self.chain, adopt=adopt, **options
            )
        self.result.states = dict(zip(self.decls.labels, plan["states"], strict=True))
        self.result.orphans = [(_core.qualified_name(s, n), kind) for s, n, kind in plan["orphans"]]
        alias = self.connection.alias
        views = [f"{m._meta.db_table} on database {alias!r}" for m in self.decls.models]
        self.result.column_problems = column_problems(self.decls.labels, views, plan["columns"])
        # The callers take the plan apart (pop "actions") and merge plans: a plain dict to them.
        return cast("dict[str, Any]", plan)

    def _say_probe(self, decl: int, text: str, level: int) -> None:
        model = self.decls.models[decl]
        self.progress.say(f"  {model._meta.label} ({model._meta.db_table}): {text}", level)

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
                if not actions and not dry_run:
                    # Nothing to change; a field whose column the view lacks is said all the same.
                    report_column_problems(
                        to_report(self.result.column_problems, ()), self._say, said=self._said(1)
                    )
                if actions and rehearse:
                    self._fill(plan, actions)  # what is shown if the rehearsal fails
                    self.result.sizes = existing_sizes(cursor, self.decls.labels, self.result.names)
                    plan, actions = merge_plans(plan, actions, *self._rehearse(cursor))
                elif actions and not dry_run:
                    # The plan read outside the lock is only a question (is there work?): let it
                    # go before planning again under the lock, so a big sync holds one plan.
                    del plan, actions
                    plan, actions = self._apply(cursor)
                    self._fill(plan, actions)
                    self.progress.report()
                elif rehearse and self._wants_exact():
                    # No view changes: the triggers the sync would create or drop, read only.
                    self.result.exact = plan_exact(cursor, self.decls.models)
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
        """Plan under the lock and run the plan; when running it teaches something (a view read
        before it is created, a chain to build in place, a column change), roll back to the
        start and plan again with what was learned."""
        recreate: set[int] = set()
        self.order.forget()
        with transaction.atomic(using=self.connection.alias):
            self._take_sync_lock(cursor)
            cursor.execute("SAVEPOINT pgvc_sync")
            while True:
                plan = self.plan(cursor, recreate)
                actions = self.order.reorder([Action.from_tuple(a) for a in plan.pop("actions")])
                try:
                    self.executor.execute(cursor, actions)
                    self._check_columns(cursor, plan, actions)
                    if self._wants_exact():
                        self._sync_exact(cursor)
                    # The views populated, in the refresh history (synchistory.py).
                    self.executor.recorder.finish(plan["statuses"])
                    return plan, actions
                except Misordered as mis:
                    # The whole plan again from the start, that view after the one it reads.
                    cursor.execute("ROLLBACK TO SAVEPOINT pgvc_sync")
                    self.order.learn(mis.decl, mis.before)
                    self._say(
                        f"  {self.decls.labels[mis.decl]} reads {self.decls.labels[mis.before]} "
                        f"without declaring it: creating it after that one",
                        1,
                    )
                except ChainConflict:
                    cursor.execute("ROLLBACK TO SAVEPOINT pgvc_sync")
                    self.chain = False
                except Incompatible as inc:
                    if not self.options["force"]:
                        raise self._force_required(cursor, inc, recreate) from None
                    cursor.execute("ROLLBACK TO SAVEPOINT pgvc_sync")
                    recreate.add(inc.decl)

    def _wants_exact(self) -> bool:
        """Whether the exact mode's triggers need a look: some view is exact, or the catalog
        query saw a trigger of ours (one may have to go)."""
        return bool(self._triggers) or bool(exact_models(self.decls.models))

    def _sync_exact(self, cursor: Any) -> None:
        """The exact mode's triggers (exact.py), in the sync's transaction. A rehearsal (--plan)
        only reads what would change: creating a trigger would lock the table against writers."""
        if self.progress.rehearsing:
            self.result.exact = plan_exact(cursor, self.decls.models)
            return
        changes = sync_exact(cursor, self.decls.models)
        self.result.exact = changes
        for table in changes.created:
            self._say(f"  exact staleness: trigger {TRIGGER} created on {table}", 1)
        for table in changes.dropped:
            self._say(f"  exact staleness: trigger {TRIGGER} dropped from {table}", 1)

    def _check_columns(self, cursor: Any, plan: dict[str, Any], actions: list[Action]) -> None:
        """After creating or adopting views, compare each model field's column with the view's
        columns (one more catalog read, in the same transaction): a missing column or another
        type family is a warning, and with PGVIEWS_STRICT_COLUMNS = True an error that rolls the
        whole sync back."""
        touched = {a.decl for a in actions if a.decl >= 0}
        touched |= {i for i, state in enumerate(plan["states"]) if state == "unstamped"}
        self.plan(cursor)
        labels = {self.decls.labels[i] for i in touched}
        report_column_problems(to_report(self.result.column_problems, labels), self._say, said=self._said(1))

    def _force_required(self, cursor: Any, inc: Incompatible, recreate: set[int]) -> ForceRequiredError:
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
        self.progress.rehearsing = True
        try:
            with transaction.atomic(using=alias):
                try:
                    ran = self._apply(cursor)
                    self.result.unpinned = unpinned_calls(self.connection, cursor, self.decls.models, ran[1])
                    return ran
                finally:
                    transaction.set_rollback(True, using=alias)
        finally:
            self.options["no_data"] = saved
            self.progress.rehearsing = False

    def _take_sync_lock(self, cursor: Any) -> None:
        """The advisory lock that serialises syncs of one database; a wait of more than a second
        for another sync is said at verbosity 1, naming it."""
        take_advisory_lock(
            cursor,
            ADVISORY_LOCK_KEY,
            alias=self.connection.alias,
            say=lambda text: self._say(text, 1),
            is_lock_timeout=lambda exc: _sqlstate(exc) == LOCK_NOT_AVAILABLE,
        )

    def _say(self, text: str, level: int) -> None:
        self.progress.say(text, level)

    def _said(self, level: int) -> bool:
        """Whether a line said at ``level`` reaches the command's output."""
        return self.progress.progress is not None and self.progress.verbosity >= level


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
            send_view_synced(conn_models, result, using, update=update, force=force)
    if send_signals and not (dry_run or rehearse):
        all_views_synced.send(sender=None, using=using)
    return results


def send_view_synced(
    models: list[type[View]],
    result: SyncResult,
    using: str,
    *,
    update: bool,
    force: bool,
    changed_only: bool = False,
) -> None:
    """``view_synced`` for each of ``models`` (``changed_only``: those ``result`` changed, as a
    refresh_pgviews --pending swap says), with the status the sync gave it, and its log line."""
    changed = set(result.changed)
    for model in models:
        label = model._meta.label
        if changed_only and label not in changed:
            continue
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
        use_logger.info("pgview %s %s", label, _status_message(result, label, status))


def _status_message(result: SyncResult, label: str, status: str) -> str:
    """The log line's text: redux's, except for a view kept that the sync still worked on
    (adopted after a switch from redux, re-indexed, re-stamped), which was not skipped."""
    if status == "EXISTS" and label in result.reasons:
        return f"already exists, kept as it is ({result.reasons[label]})"
    return STATUS_MESSAGES.get(status, status)


__all__ = ["sync_pgviews", "SyncResult", "Syncer", "view_models", "PGViewsError", "Action", "ColumnProblem"]
