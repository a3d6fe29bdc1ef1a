"""Adoption: objects without our stamp that already equal their declaration are kept as they
are. The planner asks for a probe of each such object; this runs the probes and tells it which
are equal."""

from __future__ import annotations

from typing import Any

from django.db import Error as DjangoDBError
from django.db import transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from django_pgviews_c.dberrors import connection_is_lost, lost_connection_error

__all__ = ["probe"]


def probe(
    connection: BaseDatabaseWrapper, cursor: Any, probes: list[tuple[int, tuple[str, ...], str]]
) -> dict[int, bool]:
    """Compare each unstamped object with its declaration as PostgreSQL renders them. Each probe
    creates the declaration beside the object under a temporary name (materialized views WITH NO
    DATA, so no data work) and compares definitions and indexes; everything is rolled back.
    Returns {declaration: indexes equal} for those whose definition is equal. A probe that fails
    (bad SQL) only means "not equal": the sync then rebuilds, and reports the error where it
    happens."""
    alias = connection.alias
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
                if connection_is_lost(connection, exc):
                    raise lost_connection_error(connection, "syncing views") from exc
                continue
            if same_definition:
                adopt[decl] = bool(same_indexes)
        transaction.set_rollback(True, using=alias)
    return adopt
