"""Views set aside around ``migrate``.

A migration that alters, renames or drops a column of a table a view reads fails with "cannot
alter type of a column used by a view or rule". Before the migrations run (pre_migrate), the
managed views that read the tables those migrations touch (found through pg_depend, with their
dependants) are dropped; the post_migrate sync re-creates and re-populates them. If migrate
fails, the migrate command syncs again so the views are back."""

from __future__ import annotations

import logging
from typing import Any

from django.db import connections, transaction
from django.db.migrations import operations as ops

from django_pgviews_c import _core

logger = logging.getLogger("django_pgviews_c.sync_pgviews")

#: using -> labels set aside by the running migrate
set_aside: dict[str, list[str]] = {}

_TOUCHING = (ops.AlterField, ops.RemoveField, ops.RenameField)
_WHOLE = (ops.DeleteModel, ops.AlterModelTable, ops.RenameModel)

_DEPENDANTS_SQL = """
WITH RECURSIVE dep(oid, depth) AS (
  SELECT w.ev_class, 1
  FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_rewrite w ON w.oid = d.objid
  WHERE d.classid = 'pg_catalog.pg_rewrite'::regclass
    AND d.refclassid = 'pg_catalog.pg_class'::regclass AND w.ev_class <> d.refobjid
    AND d.refobjid IN (SELECT pg_catalog.to_regclass(t) FROM unnest(%s::text[]) AS t)
  UNION
  SELECT w.ev_class, dep.depth + 1
  FROM dep JOIN pg_catalog.pg_depend d ON d.refobjid = dep.oid
    AND d.classid = 'pg_catalog.pg_rewrite'::regclass
  JOIN pg_catalog.pg_rewrite w ON w.oid = d.objid
  WHERE w.ev_class <> d.refobjid AND dep.depth < 1000
)
SELECT n.nspname::text, c.relname::text, c.relkind::text, max(dep.depth) AS depth
FROM dep JOIN pg_catalog.pg_class c ON c.oid = dep.oid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
GROUP BY 1, 2, 3 ORDER BY depth DESC, 1, 2
"""


def tables_touched(plan: list[tuple[Any, bool]], state_apps: Any) -> list[str]:
    """Quoted names of the tables whose columns the planned migrations change."""
    tables = set()
    for migration, _backwards in plan:
        for op in migration.operations:
            if isinstance(op, _TOUCHING):
                model_name = op.model_name
            elif isinstance(op, _WHOLE):
                model_name = getattr(op, "old_name", None) or op.name
            else:
                continue
            try:
                db_table = state_apps.get_model(migration.app_label, model_name)._meta.db_table
            except (LookupError, AttributeError):
                db_table = f"{migration.app_label}_{model_name.lower()}"
            schema, name = _core.split_table(db_table)
            tables.add(_core.qualified_name(schema, name))
    return sorted(tables)


def set_views_aside(using: str, plan: list[tuple[Any, bool]], state_apps: Any) -> list[str]:
    """Drop the managed views that read what ``plan`` changes; return their labels."""
    from django_pgviews_c.exceptions import DependantObjectError
    from django_pgviews_c.sync import view_models
    from django_pgviews_c.view import MaterializedView

    tables = tables_touched(plan, state_apps)
    if not tables:
        return []
    connection = connections[using]
    with connection.cursor() as cursor:
        cursor.execute(_DEPENDANTS_SQL, [tables])
        found = cursor.fetchall()
        if not found:
            return []
        cursor.execute("SELECT pg_catalog.current_schema()::text")
        current = cursor.fetchone()[0]
    managed = {}
    for model in view_models():
        if model.get_view_connection(using=using, restricted_mode=True) is None:
            continue
        schema, name = _core.split_table(model._meta.db_table)
        managed[(schema or current, name)] = model
    foreign = [f"{s}.{n}" for s, n, _k, _d in found if (s, n) not in managed]
    if foreign:
        raise DependantObjectError(
            "the migrations change tables that views django-pgviews-c does not manage read: "
            + ", ".join(foreign)
            + ". Drop them first (or add them as view models); nothing was changed.",
            foreign,
        )
    labels = []
    with transaction.atomic(using=using), connection.cursor() as cursor:
        for schema, name, kind, _depth in found:
            model = managed[(schema, name)]
            word = "MATERIALIZED VIEW" if kind == "m" or issubclass(model, MaterializedView) else "VIEW"
            cursor.execute(f"DROP {word} IF EXISTS {_core.qualified_name(schema, name)}")
            labels.append(model._meta.label)
    logger.info("set aside for the migrations: %s", ", ".join(labels))
    set_aside[using] = labels
    return labels
