"""A view's SQL from what ``get_sql()`` returns: text, a ``ViewSQL``, or a QuerySet.

A QuerySet is compiled at sync time by the target connection's own compiler, and its parameters
are bound by the driver exactly as a query would send them (``connection.ops.compose_sql``):
``str(qs.query)`` is only a debugging aid and gets quotes, dates, lists, JSON and decimals
wrong. The compiled text is what the planner fingerprints, so a changed filter value is a
changed definition.
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

from django.db.models import QuerySet
from django.db.models.sql.query import Query
from django.db.models.sql.where import WhereNode

from django_pgviews_c.exceptions import QuerySetViewError, SQLNotDefinedError

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper
    from django.db.backends.postgresql.operations import DatabaseOperations

    from django_pgviews_c.view import View

__all__ = ["call_sql", "queryset_dependencies", "view_query"]


def call_sql(model: type[View], sql: Any) -> Any:
    """Call a callable ``sql``: with no argument, or with the view class when it takes one
    (a plain function in a class body, ``sql = lambda cls: ...``)."""
    try:
        params = [
            p
            for p in inspect.signature(sql).parameters.values()
            if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):  # no signature to read (a builtin): call it plainly
        params = []
    return sql(model) if params else sql()


def view_query(model: type[View], connection: BaseDatabaseWrapper) -> str:
    """The SQL text of ``model``'s view on ``connection``, parameters bound."""
    # An override of get_sql() returns whatever its author wrote: checked here, whatever it is.
    result: Any = model.get_sql()
    if isinstance(result, QuerySet):
        return compile_queryset(model, result, connection)
    if isinstance(result, Query):
        raise QuerySetViewError(
            f"{model._meta.label}: get_sql() returned a Query; return the QuerySet itself "
            f"(Model.objects.filter(...)), not its .query."
        )
    if isinstance(result, str):
        return result
    query: str
    params: Any
    try:
        query, params = result
    except (TypeError, ValueError):
        raise SQLNotDefinedError(
            f"{model._meta.label}: get_sql() returned {type(result).__name__}; it must return a "
            f"ViewSQL(query, params), an SQL string or a QuerySet."
        ) from None
    if params is None:
        return query
    composed: str = _ops(connection).compose_sql(query, params)
    return composed


def _ops(connection: BaseDatabaseWrapper) -> DatabaseOperations:
    """The connection's operations, as PostgreSQL's backend has them (compose_sql: the
    driver binds the parameters). Every connection the package works on is PostgreSQL's."""
    return cast("DatabaseOperations", connection.ops)


def compile_queryset(model: type[View], queryset: QuerySet[Any], connection: BaseDatabaseWrapper) -> str:
    label = model._meta.label
    query = queryset.query
    if query.is_empty():
        raise QuerySetViewError(
            f"{label}: its QuerySet is empty (.none()), so it has no SQL to make a view of. "
            f"Filter it instead (.filter(pk__in=[]) makes a view with no rows)."
        )
    if query.low_mark:
        raise QuerySetViewError(
            f"{label}: its QuerySet is sliced with an offset ([{query.low_mark}:...]): a view "
            f"would skip those rows in whatever order the server returns them. Remove the slice "
            f"(a limit alone, [:n], with order_by(), is accepted)."
        )
    if query.select_for_update:
        raise QuerySetViewError(f"{label}: a view cannot SELECT ... FOR UPDATE; remove select_for_update().")
    # elide_empty=False: a filter that can match nothing (pk__in=[]) compiles to WHERE 0 = 1
    # instead of raising EmptyResultSet, as Django does for subqueries.
    compiler = query.get_compiler(connection=connection, elide_empty=False)
    sql, params = compiler.as_sql()
    # Always through the driver, even with no parameters: Django's SQL doubles literal percent
    # signs ('%%') on the assumption that the driver formats it.
    composed: str = _ops(connection).compose_sql(sql, tuple(params))
    return composed


def _queries(node: Any, seen: set[int]) -> Iterator[Query]:
    """Every Query in ``node``: itself, and those in its subqueries, annotations, filters and
    combined queries (union ...)."""
    if node is None or id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, QuerySet):
        node = node.query
    if isinstance(node, Query):
        yield node
        yield from _queries(node.where, seen)
        for child in node.annotations.values():
            yield from _queries(child, seen)
        for child in node.combined_queries:
            yield from _queries(child, seen)
        return
    if isinstance(node, WhereNode):
        for part in node.children:
            yield from _queries(part, seen)
        return
    inner = getattr(node, "query", None)
    if isinstance(inner, Query):
        yield from _queries(inner, seen)
    rhs = getattr(node, "rhs", None)
    if isinstance(rhs, (Query, QuerySet)):
        yield from _queries(rhs, seen)
    get_sources = getattr(node, "get_source_expressions", None)
    if get_sources is not None:
        for child in get_sources():
            yield from _queries(child, seen)


def queryset_dependencies(model: type[View]) -> list[str]:
    """The labels of the view models a QuerySet view reads (its own model, joins, subqueries),
    so they need not be declared. Empty for views with SQL text. A ``get_sql()`` that fails
    here fails again, with its own error, when the view is synced."""
    try:
        result = model.get_sql()
    except Exception:
        return []
    if not isinstance(result, QuerySet):
        return []
    tables: set[str] = set()
    for query in _queries(result, set()):
        if query.model is not None:
            tables.add(query.model._meta.db_table)
        tables.update(join.table_name for join in query.alias_map.values())
    view_tables = _view_tables(model._meta.apps)
    return sorted(
        {view_tables[t] for t in tables if t in view_tables and view_tables[t] != model._meta.label}
    )


# registry -> (its get_models() list, {db_table: label of the view model}). Django caches that
# list and builds a new one whenever a model is registered, so the same list means the same models.
_view_tables_cache: weakref.WeakKeyDictionary[Any, tuple[Any, dict[str, str]]] = weakref.WeakKeyDictionary()


def _view_tables(registry: Any) -> dict[str, str]:
    from django.core.exceptions import AppRegistryNotReady

    from django_pgviews_c.view import View

    try:
        models = registry.get_models()
    except AppRegistryNotReady:  # still loading: read what is there, keep nothing
        models = None
    cached = _view_tables_cache.get(registry)
    if models is not None and cached is not None and cached[0] is models:
        return cached[1]
    source = (
        models if models is not None else [m for a in registry.all_models.values() for m in list(a.values())]
    )
    tables = {
        other._meta.db_table: other._meta.label
        for other in source
        if issubclass(other, View) and not other._meta.abstract
    }
    if models is not None:
        _view_tables_cache[registry] = (models, tables)
    return tables
