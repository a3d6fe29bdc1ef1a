"""Which privilege a refused refresh lacks.

PostgreSQL refuses REFRESH MATERIALIZED VIEW (SQLSTATE 42501) for one of two reasons: the role
refreshing may not refresh that view (it must own it, be a member of its owner, or, since
PostgreSQL 17, hold the MAINTAIN privilege on it), or the view's query, which always runs as the
view's owner, reads a relation the owner may not SELECT. The server says only "permission
denied for ..."; ``refresh_denied`` asks the catalog which case it is and names the privilege.
"""

from __future__ import annotations

__all__ = ["INSUFFICIENT_PRIVILEGE", "refresh_denied"]

from typing import TYPE_CHECKING, cast

from django.db.backends.base.base import BaseDatabaseWrapper

from django_pgviews_c import _core

if TYPE_CHECKING:
    from django.db.backends.postgresql.base import DatabaseWrapper as PostgreSQLWrapper

INSUFFICIENT_PRIVILEGE = "42501"

# One row: the role refreshing, the view's owner, whether the role acts as the owner,
# (PostgreSQL 17+) whether it holds MAINTAIN on the view, and the relations the view's query reads
# (its rewrite rule's dependencies) on which the owner holds no SELECT.
_CHECK_SQL = _core.query_sql("owner_privileges")
_CHECK_SQL_PG17 = _core.query_sql("owner_privileges_pg17")


def _can_query(connection: BaseDatabaseWrapper) -> bool:
    """The failed statement left the connection usable (or it is not open yet): no open
    transaction it aborted."""
    return not connection.in_atomic_block


def refresh_denied(connection: BaseDatabaseWrapper, db_table: str, message: str) -> str:
    """The text to report for a refresh of ``db_table`` that the server refused with
    ``message`` (SQLSTATE 42501): which role lacks which privilege on what, and how to grant it.
    Asks the catalog on ``connection`` when it can (outside a transaction); otherwise it names
    both possible causes."""
    qualified = _core.qualified_name(*_core.split_table(db_table))
    maintain_known = cast("PostgreSQLWrapper", connection).pg_version >= 170000
    row = None
    if _can_query(connection):
        sql = _CHECK_SQL_PG17 if maintain_known else _CHECK_SQL
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql, [qualified])
                row = cursor.fetchone()
        except Exception:  # the explanation must never hide the refusal itself
            row = None
    if row is None:
        may_refresh = "its owner (or a member of the owner's role)" + (
            ", or a role granted MAINTAIN on it" if maintain_known else ""
        )
        return (
            f"{message}: only {may_refresh} may refresh {qualified}, and the view's owner needs "
            f"SELECT on every relation its query reads"
        )
    role, owner, acts_as_owner, maintain, unreadable = row
    if unreadable:
        return (
            f"{message}: the query of {qualified} runs as its owner {owner!r}, which lacks the "
            f"SELECT privilege on {unreadable}"
        )
    if not acts_as_owner and not maintain:
        if maintain_known:
            return (
                f"{message}: role {role!r} lacks the MAINTAIN privilege on {qualified} (owned by "
                f"{owner!r}); grant it with GRANT MAINTAIN ON {qualified} TO {_core.quote_ident(role)}"
            )
        return (
            f"{message}: role {role!r} is neither the owner of {qualified} ({owner!r}) nor a member "
            f"of its role; before PostgreSQL 17 (whose MAINTAIN privilege allows it) only the owner "
            f"may refresh a materialized view"
        )
    return (
        f"{message}: refreshing {qualified} needs its owner's role ({owner!r})"
        + (" or the MAINTAIN privilege on it" if maintain_known else "")
        + f"; role {role!r} has it here, so the refusing session ran as another role"
    )
