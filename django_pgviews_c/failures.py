"""What a failed statement of a sync means. Some failures are questions for the re-plan loop
(sync.py): a lock that was not free, a column change that needs a rebuild, a view created
before one it reads, a changed chain that names an old object; the others become the error the
user sees, naming the view and, for its SQL, the position in it."""

from __future__ import annotations

import re
from typing import Any

from django_pgviews_c.dberrors import diag, error_context
from django_pgviews_c.exceptions import DatabaseError, QueryCanceledError, ViewDefinitionError
from django_pgviews_c.syncresult import Action

__all__ = [
    "Incompatible",
    "LockTimeout",
    "Misordered",
    "ChainConflict",
    "canceled_error",
    "action_error",
    "restricted_path_hint",
    "duplicate_key_hint",
    "missing_view_hint",
    "unmigrated_table_hint",
]

# SQLSTATEs of CREATE OR REPLACE VIEW refusing a column change (drop, rename, retype).
INCOMPATIBLE = {"42P16", "42804"}
LOCK_NOT_AVAILABLE = "55P03"
UNDEFINED_TABLE = "42P01"
CANCELED = "57014"
# Names not found: a function, a relation, a type or other object.
NOT_FOUND = {"42883", "42P01", "42704"}
# Since PostgreSQL 17, CREATE and REFRESH MATERIALIZED VIEW run with a restricted search_path.
RESTRICTED_SEARCH_PATH = 170000


class Incompatible(Exception):
    """CREATE OR REPLACE refused a column change: the view must be re-created (with --force)."""

    def __init__(self, decl: int, error: DatabaseError) -> None:
        self.decl = decl
        self.error = error


class LockTimeout(Exception):
    """A statement waited past lock_timeout: the swap phase retries, a build's wait is said and
    tried again. ``actions``: the statements sent together, one of which waited."""

    def __init__(self, actions: list[Action] | None = None) -> None:
        super().__init__()
        self.actions = actions or []


class Misordered(Exception):
    """Creating a view failed because a view the same sync creates later does not exist yet:
    it reads that view without declaring it (check W005)."""

    def __init__(self, decl: int, before: int) -> None:
        self.decl = decl
        self.before = before


class ChainConflict(Exception):
    """A view of a changed chain names an old object by schema: build that chain in place."""


def canceled_error(batch: list[Action], exc: BaseException) -> QueryCanceledError:
    """statement_timeout, or a cancel, during ``batch``."""
    info = diag(exc)
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


def restricted_path_hint(exc: BaseException, server_version: int, hint: str | None) -> str | None:
    """The hint for a name not found inside a function a materialized view's query calls, on a
    server that runs that query with search_path = pg_catalog, pg_temp (the server's CONTEXT,
    which names the function, and its own hint are kept); ``hint`` unchanged otherwise."""
    frames = error_context(exc).strip().splitlines()
    where = " ".join(frames[0].split()) if frames else ""  # the innermost function
    if server_version < RESTRICTED_SEARCH_PATH or not where or diag(exc)["sqlstate"] not in NOT_FOUND:
        return hint
    if "django_pgviews_c_" in where:
        return hint  # the app's own function (Model.refresh's one call): not inside the view's
    text = (
        f"the name was looked up inside a function the materialized view calls ({where}): "
        f"PostgreSQL 17+ runs CREATE and REFRESH MATERIALIZED VIEW with search_path = pg_catalog, "
        f"pg_temp, so a name the function's body does not qualify with its schema is not found. "
        f"Pin the function's search_path (ALTER FUNCTION name(argument types) SET search_path = "
        f"public, or the schemas its body uses) or qualify every name in its body, then run the "
        f"command again (check django_pgviews_c.W004 lists such functions)."
    )
    return f"{text} The server's hint: {hint}" if hint else text


UNIQUE_VIOLATION = "23505"


def duplicate_key_hint(model: Any, sqlstate: str | None, hint: str | None) -> str | None:
    """The hint for a unique violation of a materialized view with a ``concurrent_index``: the
    values of its columns repeat in the view's rows (the server's DETAIL names the key), so the
    unique index REFRESH ... CONCURRENTLY needs cannot hold them; ``hint`` unchanged otherwise."""
    columns = getattr(model, "_concurrent_index", None)
    if sqlstate != UNIQUE_VIOLATION or not columns:
        return hint
    text = (
        f"concurrent_index = {columns!r} of {model._meta.label} names columns whose values repeat "
        f"in the view's rows (see DETAIL); the unique index it makes, which REFRESH ... "
        f"CONCURRENTLY needs, requires them to be unique in every row. Name the columns that are "
        f"(the view's key), or make them so in its SQL."
    )
    return f"{text} The server's hint: {hint}" if hint else text


def missing_view_hint(model: Any, info: dict[str, Any], alias: str) -> str | None:
    """The hint for a refresh of a materialized view that is not in the database (42P01 naming
    the view's own relation): the views are created by ``migrate`` (or ``sync_pgviews``), which
    has not run on ``alias`` since the view was declared; ``info["hint"]`` unchanged otherwise."""
    hint = info.get("hint")
    name = model._meta.db_table.rpartition(".")[2]
    if info.get("sqlstate") != UNDEFINED_TABLE or f'"{name}"' not in (info.get("message") or ""):
        return hint
    from django_pgviews_c.history import migrate_command

    text = (
        f"{model._meta.label} is not in database {alias!r}: {migrate_command(alias)} creates the "
        f"views (after the tables they read), as does sync_pgviews once the tables are there."
    )
    return f"{text} The server's hint: {hint}" if hint else text


def unmigrated_table_hint(info: dict[str, Any], alias: str) -> str | None:
    """The hint for a view whose SQL reads a model's table that is not in the database yet
    (42P01 naming the db_table of a model of the project): the model's migrations create it,
    and ``migrate`` applies them before it syncs the views. ``info["hint"]`` otherwise."""
    hint = info.get("hint")
    if info.get("sqlstate") != UNDEFINED_TABLE or hint:
        return hint
    from django.apps import apps

    from django_pgviews_c.history import migrate_command
    from django_pgviews_c.view import View

    names = set(re.findall(r'"([^"]+)"', info.get("message") or ""))
    for model in apps.get_models(include_auto_created=True):
        table = model._meta.db_table.rpartition(".")[2]
        if table in names and not issubclass(model, View):
            return (
                f"{table} is the table of {model._meta.label}, which its migrations create: "
                f"{migrate_command(alias)} applies them, then syncs the views."
            )
    return hint


def action_error(
    action: Action,
    exc: BaseException,
    planned: int,
    view_sql: str | None,
    server_version: int = 0,
    model: Any = None,
    alias: str | None = None,
) -> DatabaseError:
    """The error of a failed action, naming it. ``planned``: how many actions the sync runs;
    ``view_sql``: the declaration's SQL, whose positions a ViewDefinitionError points into;
    ``server_version`` (``pg_version``) tells whether a populating statement ran with the
    restricted search_path; ``model``: the view the action is for (its concurrent_index);
    ``alias``: the database synced (what to migrate when a model's table is missing)."""
    info = diag(exc)
    if alias is not None:
        info["hint"] = unmigrated_table_hint(info, alias)
    if model is not None:
        info["hint"] = duplicate_key_hint(model, info["sqlstate"], info["hint"])
    if action.populates:
        info["hint"] = restricted_path_hint(exc, server_version, info["hint"])
    what = f"{action.op} {action.target}"
    if info["sqlstate"] == "53200":  # out of shared memory: the lock table is full
        info["hint"] = (
            f"a sync runs in one transaction, and every view it creates holds a lock until "
            f"commit; this one plans {planned} actions. Raise max_locks_per_transaction "
            f"(server setting, needs a restart) to at least {planned // 50 + 64}."
        )
        info["position"] = None
        return DatabaseError(info.pop("message"), view=what, **info)
    if action.decl >= 0 and action.sql_offset >= 0 and action.op in ("create", "replace", "build"):
        position = info["position"]
        if position is not None and position > action.sql_offset:
            info["position"] = position - action.sql_offset
        else:
            info["position"] = None
        return ViewDefinitionError(info.pop("message"), sql=view_sql, view=what, **info)
    info["position"] = None
    return DatabaseError(info.pop("message"), view=what, **info)
