"""Views set aside around ``migrate``, in one transaction with the migrations.

PostgreSQL refuses to drop a column, or change its type, while a view reads it ("cannot alter
type of a column used by a view or rule"); it follows renames by itself. So before the pending
migrations run (pre_migrate), the views that read a column those migrations drop or retype, or
a table they drop, are found through pg_depend (with every view reading those, recursively) and
dropped; after them (post_migrate) the sync re-creates the managed ones, materialized views that
were populated are populated again, and views this app does not manage are restored (with
``PGVIEWS_RESTORE_DEPENDANTS``). All of it runs inside one ``transaction.atomic`` that the
migrate command opens around Django's own: the drops, the migrations, their records and the
re-creation commit together or not at all. Readers of those views wait on the drop's lock
meanwhile, and a migrate that is killed leaves everything as before.

When a view must be set aside and one pending migration cannot run in a transaction, migrate
refuses before anything runs, naming the migration and the views.

Every statement comes from the C core (csrc/aside.c); this module only decides."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

from django.db import Error as DjangoDBError
from django.db import connections, router, transaction
from django.db.backends.utils import truncate_name
from django.db.migrations import operations as ops

from django_pgviews_c import _core
from django_pgviews_c.dberrors import diag
from django_pgviews_c.exceptions import (
    DatabaseError,
    DependantObjectError,
    PlanError,
    ViewDefinitionError,
)
from django_pgviews_c.wording import plural

logger = logging.getLogger("django_pgviews_c.sync_pgviews")

__all__ = ["around_migrate", "set_views_aside", "sync_after_migrate", "touched_columns", "Touch"]

_ASIDE_SQL = _core.aside_sql()
_RELATIONS_SQL = _core.aside_relations_sql()


# -- what the migrations change -----------------------------------------------------------------


@dataclass(frozen=True)
class Touch:
    """A column (or, ``column=None``, a whole table) that a migration drops or retypes."""

    table: str  # quoted, qualified as the migration names it (unqualified: the search_path)
    column: str | None
    migration: str  # "app_label.name"


# (table, column or None) -> where it is in the database now, through the plan's renames.
_Renames = dict[tuple[str, str | None], tuple[str, str | None]]


def _model_table(state: Any, app_label: str, model_name: str, using: str, connection: Any) -> str | None:
    """db_table of a model of a migration state, or None when migrate never touches its table
    (unmanaged, proxy, or a router keeps it off this database)."""
    model = state.models.get((app_label, model_name.lower()))
    if model is None:
        return None
    options = model.options
    if options.get("proxy") or not options.get("managed", True):
        return None
    if not router.allow_migrate(using, app_label, model_name=model.name_lower):
        return None
    return options.get("db_table") or truncate_name(
        f"{app_label}_{model.name_lower}", connection.ops.max_name_length()
    )


def _quoted(db_table: str) -> str:
    return _core.qualified_name(*_core.split_table(db_table))


def _column(fld: Any, name: str) -> str | None:
    if fld.many_to_many:
        return None
    bound = fld.clone()
    bound.set_attributes_from_name(name)
    column: str | None = bound.column
    return column


def _m2m_table(fld: Any, name: str, db_table: str, connection: Any) -> str | None:
    """The through table a many-to-many field creates (None when the through model is the
    user's own: removing the field leaves it)."""
    if getattr(fld.remote_field, "through", None) is not None:
        return None
    return fld.db_table or truncate_name(f"{db_table}_{name}", connection.ops.max_name_length())


def _related_key(fld: Any, app_label: str) -> tuple[str, tuple[Any, ...]] | None:
    remote = getattr(fld.remote_field, "model", None)
    if remote is None:
        return None
    label = remote if isinstance(remote, str) else remote._meta.label
    if "." not in label:
        label = f"{app_label}.{label}"
    return label.lower(), tuple(getattr(fld, "to_fields", ()) or ())


def _type_changes(old: Any, new: Any, app_label: str, connection: Any) -> bool:
    """Does changing ``old`` into ``new`` alter the column's type (what PostgreSQL refuses while a
    view reads it)? A rename alone does not. When in doubt, yes."""
    if old.many_to_many or new.many_to_many:
        return bool(old.many_to_many != new.many_to_many)
    if old.primary_key != new.primary_key:
        return True  # a view may depend on the primary key (GROUP BY it)
    if getattr(old, "db_collation", None) != getattr(new, "db_collation", None):
        return True
    if bool(old.is_relation) != bool(new.is_relation):
        return True
    if old.is_relation:  # its type is its target's: the same target, the same type
        return _related_key(old, app_label) != _related_key(new, app_label)
    try:
        return bool(old.db_type(connection) != new.db_type(connection))
    except Exception:  # a field that cannot say its type unbound: be safe
        return True


def _referring_columns(
    state: Any, app_label: str, model_name: str, using: str, connection: Any
) -> list[tuple[str, str]]:
    """(table, column) of the foreign keys pointing at a model: Django retypes them with its key."""
    target = f"{app_label}.{model_name}".lower()
    found = []
    for (app, name), model in state.models.items():
        for fname, fld in model.fields.items():
            if not fld.is_relation or fld.many_to_many:
                continue
            key = _related_key(fld, app)
            if key and key[0] == target:
                table = _model_table(state, app, name, using, connection)
                column = _column(fld, fname)
                if table and column:
                    found.append((table, column))
    return found


def _forward_touches(
    op: Any, app_label: str, state: Any, using: str, connection: Any
) -> list[tuple[str, str | None]]:
    """What ``op`` (about to run forwards on ``state``) drops or retypes."""
    if isinstance(op, ops.RemoveField):
        table = _model_table(state, app_label, op.model_name, using, connection)
        if not table:
            return []
        old = state.models[app_label, op.model_name_lower].fields.get(op.name)
        if old is None:
            return [(table, None)]
        if old.many_to_many:
            through = _m2m_table(old, op.name, table, connection)
            return [(through, None)] if through else []
        return [(table, _column(old, op.name))]
    if isinstance(op, ops.AlterField):
        table = _model_table(state, app_label, op.model_name, using, connection)
        if not table:
            return []
        old = state.models[app_label, op.model_name_lower].fields.get(op.name)
        if old is None:
            return [(table, None)]
        return _alter_touches(old, op.field, op, app_label, table, state, using, connection)
    if isinstance(op, ops.DeleteModel):
        table = _model_table(state, app_label, op.name, using, connection)
        if not table:
            return []
        touched: list[tuple[str, str | None]] = [(table, None)]
        for fname, fld in state.models[app_label, op.name_lower].fields.items():
            if fld.many_to_many and (through := _m2m_table(fld, fname, table, connection)):
                touched.append((through, None))
        return touched
    return []


def _alter_touches(
    old: Any, new: Any, op: Any, app_label: str, table: str, state: Any, using: str, connection: Any
) -> list[tuple[str, str | None]]:
    if not _type_changes(old, new, app_label, connection):
        return []
    touched: list[tuple[str, str | None]] = [(table, _column(old, op.name))]
    if old.primary_key or new.primary_key or getattr(old, "unique", False):
        touched += _referring_columns(state, app_label, op.model_name, using, connection)
    return touched


def _backward_touches(
    op: Any, app_label: str, before: Any, using: str, connection: Any
) -> list[tuple[str, str | None]]:
    """What un-applying ``op`` drops or retypes; ``before`` is the state before ``op`` ran."""
    if isinstance(op, ops.AddField):
        table = _model_table(before, app_label, op.model_name, using, connection)
        if not table:
            return []
        if op.field.many_to_many:
            through = _m2m_table(op.field, op.name, table, connection)
            return [(through, None)] if through else []
        return [(table, _column(op.field, op.name))]
    if isinstance(op, ops.AlterField):
        table = _model_table(before, app_label, op.model_name, using, connection)
        old = before.models.get((app_label, op.model_name_lower))
        if not table or old is None or op.name not in old.fields:
            return [(table, None)] if table else []
        return _alter_touches(op.field, old.fields[op.name], op, app_label, table, before, using, connection)
    if isinstance(op, ops.CreateModel):
        options = op.options or {}
        if options.get("proxy") or not options.get("managed", True):
            return []
        if not router.allow_migrate(using, app_label, model_name=op.name_lower):
            return []
        table = options.get("db_table") or truncate_name(
            f"{app_label}_{op.name_lower}", connection.ops.max_name_length()
        )
        return [(table, None)]
    return []


_FORWARD_KINDS = (ops.RemoveField, ops.AlterField, ops.DeleteModel)
_BACKWARD_KINDS = (ops.AddField, ops.AlterField, ops.CreateModel)


def touched_columns(using: str, plan: list[tuple[Any, bool]]) -> list[Touch]:
    """The columns (and whole tables) the planned migrations drop or retype, as named before the
    plan runs where that can be known. Renames (RenameField, RenameModel, AlterModelTable, an
    AlterField that only changes db_column) touch nothing: PostgreSQL follows them."""
    wanted = _BACKWARD_KINDS if plan and plan[0][1] else _FORWARD_KINDS
    if not any(isinstance(op, wanted) for migration, _ in plan for op in migration.operations):
        return []
    from django.db.migrations.executor import MigrationExecutor

    connection = connections[using]
    executor = MigrationExecutor(connection)
    renamed: _Renames = {}
    touches: list[Touch] = []

    def add(migration: Any, found: list[tuple[str, str | None]]) -> None:
        for table, column in found:
            # Named as the database knows it now, before the renames earlier in the plan.
            if (table, column) in renamed:
                table, column = renamed[(table, column)]
            else:
                table = renamed.get((table, None), (table, None))[0]
            touches.append(Touch(_quoted(table), column, f"{migration.app_label}.{migration.name}"))

    if plan[0][1]:  # un-applying: each migration from the state before it, operations reversed
        for migration, _ in plan:
            state = executor.loader.project_state((migration.app_label, migration.name), at_end=False)
            for op in migration.operations:
                add(migration, _backward_touches(op, migration.app_label, state, using, connection))
                op.state_forwards(migration.app_label, state)
        return touches
    # What migrate() itself starts from; a private method of Django's, absent from django-stubs.
    state = executor._create_project_state(with_applied_migrations=True)  # type: ignore[attr-defined]
    for migration, _ in plan:
        for op in migration.operations:
            add(migration, _forward_touches(op, migration.app_label, state, using, connection))
            _follow_renames(op, migration.app_label, state, using, connection, renamed)
            op.state_forwards(migration.app_label, state)
    return touches


def _follow_renames(
    op: Any, app_label: str, state: Any, using: str, connection: Any, renamed: _Renames
) -> None:
    """Record the names a rename gives (new name -> name in the database now), so that a later
    operation of the same plan on the new name finds the object the database holds."""
    if isinstance(op, (ops.RenameModel, ops.AlterModelTable)):
        name = op.old_name if isinstance(op, ops.RenameModel) else op.name
        old = _model_table(state, app_label, name, using, connection)
        probe = state.clone()
        op.state_forwards(app_label, probe)
        new = _model_table(
            probe, app_label, op.new_name if isinstance(op, ops.RenameModel) else op.name, using, connection
        )
        if old and new and old != new:
            renamed[(new, None)] = renamed.get((old, None), (old, None))
    elif isinstance(op, (ops.RenameField, ops.AlterField)):
        model = state.models.get((app_label, op.model_name_lower))
        table = _model_table(state, app_label, op.model_name, using, connection)
        if model is None or not table:
            return
        old_name = op.old_name if isinstance(op, ops.RenameField) else op.name
        new_name = op.new_name if isinstance(op, ops.RenameField) else op.name
        old_field = model.fields.get(old_name)
        if old_field is None:
            return
        new_field = op.field if isinstance(op, ops.AlterField) else old_field
        old_col, new_col = _column(old_field, old_name), _column(new_field, new_name)
        if old_col and new_col and old_col != new_col:
            base_table = renamed.get((table, None), (table, None))[0]
            renamed[(table, new_col)] = renamed.get((table, old_col), (base_table, old_col))


# -- the run of one migrate command -------------------------------------------------------------


@dataclass
class Recorded:
    """A view set aside, as the catalog held it before."""

    oid: int
    schema: str
    name: str
    kind: str
    depth: int
    populated: bool
    refs: list[int]
    definition: str
    comment: str | None
    acl: list[str] | None
    owner: str
    tablespace: str | None
    indexes: list[str]
    label: str | None = None  # the model's label when the view is declared; None: not ours
    #: The waiting new version of a declared view's deferred rebuild (pending.py): dropped with
    #: the others, never restored (the sync decides again whether to defer).
    pending: bool = False

    @property
    def what(self) -> str:
        return self.label or f"{self.schema}.{self.name}"


@dataclass
class MigrateRun:
    """One run of this app's migrate command on one database."""

    using: str
    fake: bool = False
    stack: ExitStack = field(default_factory=ExitStack)
    recorded: list[Recorded] = field(default_factory=list)
    in_transaction: bool = False
    # "migrations", then "sync" while post_migrate syncs the views, "synced" once it returned.
    phase: str = "migrations"


_runs: dict[str, MigrateRun] = {}


@contextlib.contextmanager
def around_migrate(using: str, *, fake: bool = False) -> Iterator[MigrateRun]:
    """Wrap one migrate command: when views are set aside, the transaction they are dropped in
    ends here, committed when migrate succeeded, rolled back when it raised."""
    run = MigrateRun(using, fake=fake)
    _runs[using] = run
    try:
        with run.stack:
            yield run
    finally:
        _runs.pop(using, None)


def _managed_models(using: str, current_schema: str) -> dict[tuple[str, str], Any]:
    from django_pgviews_c.declarations import view_models

    managed = {}
    for model in view_models():
        if model.get_view_connection(using=using, restricted_mode=True) is None:
            continue
        schema, name = _core.split_table(model._meta.db_table)
        managed[(schema or current_schema, name)] = model
    return managed


def _read(cursor: Any, touches: list[Touch], using: str) -> list[Recorded]:
    cursor.execute(_ASIDE_SQL, {"tables": [t.table for t in touches], "columns": [t.column for t in touches]})
    rows = cursor.fetchall()
    if not rows:
        return []
    managed = _managed_models(using, rows[0][-1])  # the last column: the current schema
    waiting = {(s, _core.derived_name(n, "_pgvc_pending")): m for (s, n), m in managed.items()}
    found = []
    for row in rows:
        rec = Recorded(*row[:-1])
        model = managed.get((rec.schema, rec.name))
        rec.label = model._meta.label if model is not None else None
        model = waiting.get((rec.schema, rec.name))
        if rec.label is None and model is not None and " pending=1 " in (rec.comment or ""):
            rec.label, rec.pending = f"{model._meta.label} (its pending rebuild)", True
        found.append(rec)
    return found


def _non_atomic(plan: list[tuple[Any, bool]]) -> tuple[Any, str] | None:
    """The first migration that runs outside a transaction. An operation's own ``atomic=False``
    (RunPython) matters only there: in an atomic migration Django runs every operation inside
    the migration's transaction."""
    for migration, _ in plan:
        if not migration.atomic:
            return migration, "Migration.atomic = False"
    return None


def _way_out(migration: Any, plan: list[tuple[Any, bool]]) -> str:
    """How to get past a non-atomic migration of plan: run (or un-apply) it on its own."""
    before = [m for m, _ in plan[: [m for m, _ in plan].index(migration)]]
    backwards = plan[0][1]
    if before and backwards:  # un-apply down to it, leaving it applied
        return (
            f"Un-apply the migrations before it first (manage.py migrate {migration.app_label} "
            f"{migration.name}), then migrate again"
        )
    if before:
        return (
            f"Run the migrations before it first (manage.py migrate {before[-1].app_label} "
            f"{before[-1].name}), then migrate again"
        )
    if backwards:
        return "Un-apply it on its own first, then migrate again"
    return (
        f"Run it on its own first (manage.py migrate {migration.app_label} {migration.name}), "
        f"then migrate again"
    )


def _check(found: list[Recorded], touches: list[Touch], plan: list[tuple[Any, bool]], restore: bool) -> None:
    """Refuse, before anything runs, what cannot be done in one transaction."""
    views = ", ".join(r.what for r in found)
    by = sorted({t.migration for t in touches})
    non_atomic = _non_atomic(plan)
    if non_atomic:
        migration, why = non_atomic
        way_out = _way_out(migration, plan)
        own = f"{migration.app_label}.{migration.name}" in by
        raise PlanError(
            f"migration {migration.app_label}.{migration.name} cannot run in a transaction ({why}), "
            f"and the migrations to apply change what these views read: {views}. They are dropped "
            f"and re-created in one transaction with the migrations, so migrate refuses. Nothing "
            f"was changed. {way_out}"
            + (
                "; as that migration itself changes what the views read, make it atomic or "
                "move those operations into an atomic migration."
                if own
                else ": on its own it needs no view set aside."
            ),
            {"migration": f"{migration.app_label}.{migration.name}", "views": [r.what for r in found]},
        )
    foreign = [r for r in found if r.label is None]
    if foreign and not restore:
        raise DependantObjectError(
            f"the migrations to apply ({', '.join(by)}) change columns that views django-pgviews-c "
            f"does not manage read: {', '.join(r.what for r in foreign)}. Set "
            f"PGVIEWS_RESTORE_DEPENDANTS = True to have migrate save them, drop them and restore "
            f"them after the migrations in the same transaction (with their grants, owner and "
            f"comment), or drop them first. Nothing was changed.",
            [(r.schema, r.name, None, r.kind) for r in foreign],
        )
    if foreign:
        by_oid = {r.oid: r for r in found}
        for rec in foreign:
            if _reads_managed(rec, by_oid) and any(r.label and rec.oid in _closure(r, by_oid) for r in found):
                raise DependantObjectError(
                    f"{rec.what}, a view django-pgviews-c does not manage, reads views it manages "
                    f"and is read by others it manages, all of which the migrations make it set "
                    f"aside: it cannot be restored before the sync nor after it. Declare it as a "
                    f"view model, or drop it before migrating. Nothing was changed.",
                    [(rec.schema, rec.name, None, rec.kind)],
                )


def _closure(rec: Recorded, by_oid: dict[int, Recorded]) -> set[int]:
    """The set-aside views ``rec`` reads, directly or not."""
    seen: set[int] = set()
    todo = list(rec.refs)
    while todo:
        oid = todo.pop()
        if oid in seen or oid not in by_oid:
            continue
        seen.add(oid)
        todo += by_oid[oid].refs
    return seen


def _reads_managed(rec: Recorded, by_oid: dict[int, Recorded]) -> bool:
    return any(by_oid[o].label for o in _closure(rec, by_oid))


def _say(stdout: Any, verbosity: int, text: str, level: int = 1) -> None:
    if stdout is not None and verbosity >= level:
        stdout.write(text)


def set_views_aside(
    using: str, plan: list[tuple[Any, bool]], *, verbosity: int = 1, stdout: Any = None
) -> list[str]:
    """pre_migrate: drop the views that read what ``plan`` drops or retypes, inside the
    transaction the migrate command will end. Returns what was set aside."""
    from django.conf import settings

    run = _runs.get(using)
    if not plan or (run is not None and run.fake):
        return []
    touches = touched_columns(using, plan)
    if not touches:
        return []
    connection = connections[using]
    restore = getattr(settings, "PGVIEWS_RESTORE_DEPENDANTS", False)
    with connection.cursor() as cursor:
        found = _read(cursor, touches, using)
    if not found:
        return []
    _check(found, touches, plan, restore)
    if run is None:
        from django.core.management.base import CommandError

        raise CommandError(
            f"the migrations to apply change what these views read: "
            f"{', '.join(r.what for r in found)}; they must be set aside (dropped and re-created) in "
            f"one transaction with the migrations, which only django_pgviews_c's migrate command "
            f"does, and another app's migrate command is in use. List django_pgviews_c before that "
            f"app in INSTALLED_APPS, or subclass django_pgviews_c.management.commands.migrate."
            f"Command. Nothing was changed."
        )
    started = time.perf_counter()
    run.stack.enter_context(transaction.atomic(using=using))
    run.in_transaction = True
    from django_pgviews_c.sync import ADVISORY_LOCK_KEY

    with connection.cursor() as cursor:
        # Serialise with syncs of this database, then read again: what is dropped is exact.
        cursor.execute(_core.aside_lock_sql(), [ADVISORY_LOCK_KEY])
        found = _read(cursor, touches, using)
        _check(found, touches, plan, restore)
        for rec in found:
            statement = _core.aside_statement("drop", rec.schema, rec.name, rec.kind)
            _execute(cursor, statement, rec, "set aside")
    run.recorded = found
    labels = [r.what for r in found]
    logger.info("set aside for the migrations: %s", ", ".join(labels))
    _say(
        stdout,
        verbosity,
        f"  Set aside {plural(len(found), 'view')} that read what the migrations change "
        f"({time.perf_counter() - started:.2f}s): {', '.join(labels)}",
    )
    return labels


def _execute(cursor: Any, statement: str, rec: Recorded, doing: str, sql: str | None = None) -> None:
    """Run one statement for ``rec``; a refusal names the view (and, for its SQL, the line)."""
    try:
        cursor.execute(statement)
    except DjangoDBError as exc:
        info = diag(exc)
        message = info.pop("message")
        view = f"{doing} {rec.what}"
        if sql is not None and info["position"]:
            offset = statement.find(sql)
            info["position"] = (
                info["position"] - offset if offset >= 0 and info["position"] > offset else None
            )
            raise ViewDefinitionError(message, sql=sql, view=view, **info) from exc
        info["position"] = None
        raise DatabaseError(message, view=view, **info) from exc


def _restore(cursor: Any, rec: Recorded) -> None:
    """Re-create a view this app does not manage, as it was recorded."""
    statements = _core.restore_statements(
        rec.schema,
        rec.name,
        rec.kind,
        rec.definition,
        rec.populated,
        rec.tablespace,
        list(rec.indexes or []),
        rec.comment,
        list(rec.acl) if rec.acl is not None else None,
        rec.owner,
    )
    definition = rec.definition.rstrip("; \n")
    for i, statement in enumerate(statements):
        _execute(cursor, statement, rec, "restore", definition if i == 0 else None)


def sync_after_migrate(
    using: str,
    sync: Callable[[], Any],
    *,
    verbosity: int = 1,
    stdout: Any = None,
) -> Any:
    """post_migrate: run ``sync`` (the sync of the views); around it, put back what
    ``set_views_aside`` recorded, in the same transaction."""
    run = _runs.get(using)
    if run is None:
        return _sync_with_views_aside(using, [], sync, verbosity=verbosity, stdout=stdout)
    run.phase = "sync"
    result = _sync_with_views_aside(using, run.recorded, sync, verbosity=verbosity, stdout=stdout)
    run.phase = "synced"
    return result


def _sync_with_views_aside(
    using: str, found: list[Recorded], sync: Callable[[], Any], *, verbosity: int, stdout: Any
) -> Any:
    """``sync``, with the views ``found`` set aside put back around it."""
    if not found:
        return sync()
    by_oid = {r.oid: r for r in found}
    order = sorted(found, key=lambda r: r.depth)
    connection = connections[using]
    started = time.perf_counter()
    # Views of the user's that no managed view below them: before the sync, which may read them.
    early = [r for r in order if r.label is None and not _reads_managed(r, by_oid)]
    late = [r for r in order if r.label is None and r not in early]
    with connection.cursor() as cursor:
        for rec in early:
            _restore(cursor, rec)
    result = sync()
    managed = [r for r in order if r.label and not r.pending]
    _say(
        stdout,
        verbosity if managed else 0,
        f"  Re-created {plural(len(managed), 'view')} set aside for the migrations "
        f"({time.perf_counter() - started:.2f}s): {', '.join(r.what for r in managed)}",
    )
    with connection.cursor() as cursor:
        for rec in late:
            _restore(cursor, rec)
        if early or late:
            _say(
                stdout,
                verbosity,
                f"  Restored {plural(len(early) + len(late), 'view')} django-pgviews-c does not "
                f"manage: {', '.join(r.what for r in early + late)}",
            )
        now = {(s, n): (k, p, c) for s, n, k, p, c in _relations(cursor, managed)}
        for rec in managed:
            kind, _populated, comment = now.get((rec.schema, rec.name), (rec.kind, True, None))
            for statement in _core.grant_statements(rec.schema, rec.name, kind, rec.acl, rec.owner):
                _execute(cursor, statement, rec, "restore the grants of")
            comment_sql = _core.comment_statement(rec.schema, rec.name, kind, rec.comment, comment)
            if comment_sql:
                _execute(cursor, comment_sql, rec, "restore the comment of")
        _repopulate(connection, cursor, order, now, verbosity, stdout)
    return result


def _relations(cursor: Any, recs: list[Recorded]) -> list[tuple[Any, ...]]:
    if not recs:
        return []
    cursor.execute(_RELATIONS_SQL, {"names": [_core.qualified_name(r.schema, r.name) for r in recs]})
    return [tuple(row) for row in cursor.fetchall()]


def _repopulate(
    connection: Any,
    cursor: Any,
    order: list[Recorded],
    now: dict[tuple[str, str], tuple[Any, ...]],
    verbosity: int,
    stdout: Any,
) -> None:
    """Materialized views that were populated before the migrations are populated after them:
    ``with_data = False`` only means "create it empty when it does not exist". Each is a refresh,
    recorded in the view's history (in the migrate's transaction)."""
    from django_pgviews_c.declarations import view_models
    from django_pgviews_c.synchistory import history_ready, recording_if_ready

    candidates = [r for r in order if r.kind == "m" and r.populated and r.label and not r.pending]
    if not candidates:
        return
    empty = [r for r in candidates if (r.schema, r.name) in now and not now[(r.schema, r.name)][1]]
    started = time.perf_counter()
    ready = bool(empty) and history_ready(connection)
    models = {m._meta.label: m for m in view_models()} if ready else {}
    for rec in empty:
        one = time.perf_counter()
        model = models.get(rec.label or "")
        with recording_if_ready(connection, model, "re-populated after migrate"):
            _execute(cursor, _core.aside_statement("refresh", rec.schema, rec.name, "m"), rec, "re-populate")
        if verbosity >= 2 or time.perf_counter() - started > 3:
            _say(stdout, verbosity, f"    re-populated {rec.what} ({time.perf_counter() - one:.2f}s)")
    if empty:
        _say(
            stdout,
            verbosity,
            f"  Re-populated {plural(len(empty), 'materialized view')} that held data before "
            f"({time.perf_counter() - started:.2f}s): {', '.join(r.what for r in empty)}",
        )
