"""The exact staleness mode: triggers the sync keeps on the tables exact views read.

A materialized view declared with ``staleness = "exact"`` is judged by a counter per table that
moves inside the writers' transactions (freshness.judge). The sync keeps, on every table such a
view reads (the closure of freshness.c, partitions and inheritance children included), one
statement-level trigger named ``pgviews_c_exact``, calling one function,
``django_pgviews_c_exact_bump()``, that UPSERTs the table's row of ``django_pgviews_c_exact``
(migration 0003). The function is created beside that table, SECURITY DEFINER with a fixed
search_path, the first time a trigger is needed. A trigger goes, with its counter, when no exact
view reads its table any more. Nothing else of the table is touched: no data, no other trigger.

The sync runs this step inside its own transaction after its plan (so a failure leaves the
database as it was), and only when some view is exact or the catalog query saw one of our
triggers: a sync of a project without exact views stays one catalog query. The statements are
the core's (``_core.query_sql("exact_*")``)."""

from __future__ import annotations

__all__ = ["ExactChanges", "plan_exact", "sync_exact", "exact_work", "RemoveExactTriggers", "TRIGGER"]

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import migrations

from django_pgviews_c import _core
from django_pgviews_c import view as pg
from django_pgviews_c.exceptions import PlanError
from django_pgviews_c.history import migrate_command

TRIGGER = "pgviews_c_exact"
_STATE_SQL = _core.query_sql("exact_state")


@dataclass
class ExactChanges:
    """What one sync did to the exact mode's triggers (qualified table names)."""

    created: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    #: the oids of the tables in ``dropped`` (their counter rows go with the trigger)
    dropped_oids: list[int] = field(default_factory=list)


def exact_models(models: Sequence[type[pg.View]]) -> list[type[pg.View]]:
    from django_pgviews_c.freshness import is_exact

    return [m for m in models if is_exact(m)]


def _state(cursor: Any, models: Sequence[type[pg.View]]) -> tuple[Any, list[Any], list[Any]]:
    """(the counter table's row, tables to give a trigger, tables to take it from)."""
    from django_pgviews_c.freshness import qualified

    cursor.execute(_STATE_SQL, [[qualified(m) for m in exact_models(models)]])
    rows = cursor.fetchall()
    tables = [r for r in rows if r[2] != "*"]
    head = next(r for r in rows if r[2] == "*")
    return head, [r for r in tables if r[3] and not r[4]], [r for r in tables if r[4] and not r[3]]


def exact_work(cursor: Any, models: Sequence[type[pg.View]]) -> bool:
    """Whether the triggers differ from what the exact views among ``models`` need (one read)."""
    _, create, drop = _state(cursor, models)
    return bool(create or drop)


def plan_exact(cursor: Any, models: Sequence[type[pg.View]]) -> ExactChanges:
    """What sync_exact would do (one read, nothing changed): the tables whose trigger it would
    create and those it would drop it from. Raises what sync_exact raises when it could not
    (sync_pgviews --plan shows it without doing it)."""
    return _checked(cursor, models)[0]


def sync_exact(cursor: Any, models: Sequence[type[pg.View]]) -> ExactChanges:
    """Create the triggers the exact views among ``models`` need and drop those none needs, on
    ``cursor``'s connection, in the caller's transaction (the counters of the tables that lose
    theirs go too). Raises PlanError naming the table and the privilege when the current role
    may not do it (the caller's transaction then rolls back: nothing was changed)."""
    changes, counter_schema, has_function = _checked(cursor, models)
    if changes.created and not has_function:
        cursor.execute(_core.query_sql("exact_function", schema=counter_schema))
    for table in changes.created:
        cursor.execute(_core.query_sql("exact_trigger", table=table, schema=counter_schema))
    for table in changes.dropped:
        cursor.execute(_core.query_sql("exact_untrigger", table=table))
    if changes.dropped and counter_schema is not None:
        cursor.execute(_core.query_sql("exact_forget", schema=counter_schema), [changes.dropped_oids])
    return changes


def _checked(cursor: Any, models: Sequence[type[pg.View]]) -> tuple[ExactChanges, Any, bool]:
    """(what to create and drop, the counter table's schema, whether the function exists), after
    the checks that the current role may do it. ``cursor``: Django's, of the database synced."""
    head, create, drop = _state(cursor, models)
    counter_schema, has_function, role = head[1], head[3], head[7]
    changes = ExactChanges([r[1] for r in create], [r[1] for r in drop], [r[0] for r in drop])
    if create and counter_schema is None:
        raise PlanError(
            f"{', '.join(_labels(models))}: exact staleness needs the table django_pgviews_c_exact: "
            f"run {migrate_command(cursor.db.alias)}. Nothing was changed."
        )
    refused = [r for r in create if not r[6]]
    if refused:
        raise PlanError(
            f"exact staleness needs a trigger on {_names(refused)}, and role {role} may not create "
            f"one there: run GRANT TRIGGER ON {_names(refused)} TO {role} (as the owner: "
            f'{_owners(refused)}), or declare the views that read them without staleness = "exact". '
            f"Nothing was changed.",
            details=[r[1] for r in refused],
        )
    refused = [r for r in drop if not r[5]]
    if refused:
        raise PlanError(
            f"no exact view reads {_names(refused)} any more, but only its owner may drop its trigger "
            f"{TRIGGER}: run it as {_owners(refused)}, or GRANT {_owners(refused)} TO {role}. "
            f"Nothing was changed.",
            details=[r[1] for r in refused],
        )
    return changes, counter_schema, bool(has_function)


def remove_all(apps: Any, schema_editor: Any) -> None:
    """Migration 0003 backwards: every trigger of ours and the function go before the counter
    table does, else every write to a watched table would fail on the missing table."""
    with schema_editor.connection.cursor() as cursor:
        head, _, _ = _state(cursor, [])
        sync_exact(cursor, [])
        if head[1] is not None:
            cursor.execute(_core.query_sql("exact_drop_function", schema=head[1]))


def _labels(models: Sequence[type[pg.View]]) -> list[str]:
    return [m._meta.label for m in exact_models(models)]


def _names(rows: Sequence[Any]) -> str:
    return ", ".join(r[1] for r in rows)


def _owners(rows: Sequence[Any]) -> str:
    return ", ".join(sorted({r[7] for r in rows}))


class RemoveExactTriggers(migrations.RunPython):
    """Nothing forwards; backwards, ``remove_all`` on every database that holds the counter
    table (history.history_allowed, as CreateHistoryModel), whatever the routers say of this
    app."""

    def __init__(self) -> None:
        super().__init__(migrations.RunPython.noop, remove_all, elidable=False)

    def database_backwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        from django_pgviews_c.history import history_allowed

        if history_allowed(schema_editor.connection.alias):
            remove_all(from_state.apps, schema_editor)

    def deconstruct(self) -> tuple[str, list[Any], dict[str, Any]]:
        return "django_pgviews_c.exact.RemoveExactTriggers", [], {}
