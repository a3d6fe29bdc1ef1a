"""Declared SQL that no longer builds, said when ``migrate`` makes it so.

A migration that renames a column or a table a view reads (RenameField, an AlterField that sets
or changes db_column, RenameModel, AlterModelTable) leaves the view working: its rule names the
column by number, so PostgreSQL follows the rename, and the sync after ``migrate`` rightly finds
nothing to rebuild. But the view's declared ``sql`` still names the old column, and can no longer
build: a fresh database (the test database), the next change to that view, or a deferred rebuild
then fail, far from the cause. So when the migrations just applied hold an operation that can
rename what a view reads, the declaration of every view the sync kept as it was is built beside
it (under a derived name, as a plain view whatever its kind: the server resolves its names as
for the real one, and a plain view needs no storage) in a transaction that is rolled back,
and each that fails is a warning naming the view, the server's error with its SQLSTATE and its
position in the SQL, and what it means. Nothing is changed, and ``migrate`` succeeds: the
migrations are applied already.

Which operations: RenameField, AlterField, RenameModel, AlterModelTable, and RunSQL (it can
rename anything; it is checked whenever it runs), also inside SeparateDatabaseAndState. Not
RemoveField or DeleteModel: the views that read what they drop are set aside and re-created from
their declarations (aside.py), so a declaration that no longer builds already fails the
migrate. Not RunPython: it changes data, not the schema, in all but rare cases, and checking
after every data migration would cost every deploy that runs one. A migrate without those
operations sends no query for this."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db import Error as DjangoDBError
from django.db import connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.migrations import operations as ops

from django_pgviews_c import _core
from django_pgviews_c.dberrors import connection_is_lost, diag, lost_connection_error
from django_pgviews_c.exceptions import ViewDefinitionError
from django_pgviews_c.wording import warn

logger = logging.getLogger("django_pgviews_c.sync_pgviews")

__all__ = ["Unbuildable", "kept_models", "renaming_migrations", "unbuildable", "warn_after_migrate"]

#: Operations after which the declarations are checked (see the module's docstring).
RENAMING = (ops.RenameField, ops.AlterField, ops.RenameModel, ops.AlterModelTable, ops.RunSQL)

#: Statements sent in one round trip.
_BATCH = 400

#: Plan actions that build a view from its declaration: those views need no check.
_BUILDS = {"create", "replace", "build"}


@dataclass(frozen=True)
class Unbuildable:
    """A view whose declared SQL the server refuses now."""

    label: str
    db_table: str
    error: ViewDefinitionError
    #: Position of the view in the checked declarations.
    index: int = -1
    #: Not judged: its check was not granted a lock in time (``error`` names it), or a check
    #: before it was not.
    unchecked: bool = False


def _can_rename(op: Any) -> bool:
    if isinstance(op, ops.SeparateDatabaseAndState):
        return any(_can_rename(inner) for inner in op.database_operations)
    return isinstance(op, RENAMING)


def renaming_migrations(plan: Iterable[tuple[Any, bool]] | None) -> list[str]:
    """The migrations of ``plan`` (post_migrate's: (migration, backwards) pairs) holding an
    operation that can rename what a view reads, as ``app_label.name``."""
    return [
        f"{migration.app_label}.{migration.name}"
        for migration, _backwards in plan or ()
        if any(_can_rename(op) for op in migration.operations)
    ]


def unbuildable(connection: BaseDatabaseWrapper, models: list[Any], known: set[str]) -> list[Unbuildable]:
    """Build each view of ``models`` (on ``connection``) from its declaration, beside its object,
    in a transaction (or savepoint) that is rolled back; return those the server refuses. The
    statements go up to _BATCH in one round trip; a refused batch is replayed one statement at a
    time, each under a savepoint, to name every view at fault.

    A check waits for its locks (ACCESS SHARE on what the view reads) no longer than a refresh's
    short try (PGVIEWS_LOCK_TIMEOUT_MS, 200): behind a plain REFRESH or an ALTER it stops, and
    that view and those not yet checked are returned as ``unchecked`` (their error names the
    lock), never as refused."""
    from django_pgviews_c.declarations import Declarations
    from django_pgviews_c.refreshlocks import _guard_sql, _lock_settings

    if not models:
        return []
    decls = Declarations(models, connection, known)
    checks = []
    for i, (schema, name) in enumerate(decls.split):
        statement, offset = _core.build_check_statement(schema, name, decls.sql[i])
        checks.append((i, statement, offset))
    found: list[Unbuildable] = []
    alias = connection.alias
    try:
        with transaction.atomic(using=alias), connection.cursor() as cursor:
            cursor.execute(_guard_sql(_lock_settings()[1]))
            for start in range(0, len(checks), _BATCH):
                batch = checks[start : start + _BATCH]
                try:
                    with transaction.atomic(using=alias):
                        cursor.execute(";\n".join(statement for _, statement, _ in batch))
                    continue
                except DjangoDBError as exc:
                    if connection_is_lost(connection, exc):
                        raise
                if _replay(connection, cursor, decls, batch, found):
                    locked = found[-1]
                    found += [
                        _unchecked(decls, i, locked.error) for i, _, _ in checks[start:] if i > locked.index
                    ]
                    break
            transaction.set_rollback(True, using=alias)
    except DjangoDBError as exc:
        if connection_is_lost(connection, exc):
            raise lost_connection_error(connection, "checking the views' declarations") from exc
        raise
    return found


def _replay(connection: BaseDatabaseWrapper, cursor: Any, decls: Any, batch: list[tuple[int, str, int]],
            found: list[Unbuildable]) -> bool:  # fmt: skip
    """Each statement of a refused batch under a savepoint of its own, the refused ones added to
    ``found``. True when one met a lock it was not granted in time (the last of ``found``): the
    caller stops there."""
    for i, statement, offset in batch:
        try:
            with transaction.atomic(using=connection.alias):
                cursor.execute(statement)
        except DjangoDBError as exc:
            if connection_is_lost(connection, exc):
                raise
            found.append(_unbuildable(decls, i, offset, exc))
            if found[-1].unchecked:
                return True
    return False


def _unchecked(decls: Any, i: int, error: ViewDefinitionError) -> Unbuildable:
    model = decls.models[i]
    return Unbuildable(model._meta.label, model._meta.db_table, error, index=i, unchecked=True)


def _unbuildable(decls: Any, i: int, offset: int, exc: BaseException) -> Unbuildable:
    """The server's error for declaration ``i``, formatted as the sync's build errors are."""
    model = decls.models[i]
    info = diag(exc)
    position = info["position"]
    info["position"] = position - offset if position is not None and position > offset else None
    view = f"{model._meta.label} ({model._meta.db_table})"
    locked = info["sqlstate"] == "55P03"  # lock_not_available: not judged, not refused
    if locked:
        info["position"] = None
    error = ViewDefinitionError(info.pop("message"), sql=decls.sql[i], view=view, **info)
    return Unbuildable(model._meta.label, model._meta.db_table, error, index=i, unchecked=locked)


def kept_models(result: Any, models: list[Any]) -> list[Any]:
    """The views of ``models`` that the sync (or the dry run) ``result`` keeps as they are: in it,
    with no action building them from their declaration (those need no check)."""
    labels = list(result.statuses)  # in the order of the sync's declarations
    built = {labels[a.decl] for a in result.actions if a.decl >= 0 and a.op in _BUILDS}
    return [m for m in models if m._meta.label in result.statuses and m._meta.label not in built]


def warn_after_migrate(
    using: str, plan: Any, results: Iterable[Any] | None, *, verbosity: int = 1, stdout: Any = None
) -> list[Unbuildable]:
    """post_migrate, after the sync: when ``plan`` holds an operation that can rename what a view
    reads, check the declarations of the views the sync (``results``) kept as they were, and warn
    about each that no longer builds. Sends nothing when no such operation ran."""
    migrations = renaming_migrations(plan)
    if not migrations or not results:
        return []
    from django_pgviews_c.declarations import view_models

    models = view_models()
    known = {m._meta.label for m in models}
    found: list[Unbuildable] = []
    for result in results:
        found += unbuildable(connections[result.using], kept_models(result, models), known)
    for text in (_warning([f for f in found if not f.unchecked], migrations),
                 _unchecked_warning([f for f in found if f.unchecked])):  # fmt: skip
        if text:
            said = stdout is not None and verbosity >= 1
            if said:
                stdout.write(text)
            warn(logger, text, said=said)
    return found


def _unchecked_warning(unchecked: list[Unbuildable]) -> str:
    if not unchecked:
        return ""
    error = unchecked[0].error
    return (
        f"  Warning: the declared SQL of {len(unchecked)} view(s) could not be checked: "
        f"{error.view}: {error.message} (SQLSTATE {error.sqlstate}); another session holds a lock "
        f"on what they read. Not checked: {', '.join(f.label for f in unchecked)}. Nothing was "
        f"changed; run pgviews_status once the lock is released to check them."
    )


def _warning(found: list[Unbuildable], migrations: list[str]) -> str:
    if not found:
        return ""
    several = len(found) > 1
    lines = [
        f"  Warning: the declared SQL of {len(found)} view{'s' if several else ''} no longer "
        f"builds after the migrations that rename or alter what views read "
        f"({', '.join(migrations)}):"
    ]
    for item in found:
        lines += ["    " + line for line in str(item.error).splitlines()]
    lines.append(
        f"  {'These views' if several else 'The view'} in the database still "
        f"work{'' if several else 's'} (PostgreSQL followed the rename) and nothing was changed, "
        f"but the declared sql must be updated to the new names: until then a fresh database "
        f"(the test database too), the next change to {'these views' if several else 'it'} or a "
        f"deferred rebuild fails to build {'them' if several else 'it'}."
    )
    return "\n".join(lines)
