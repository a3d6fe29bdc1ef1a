"""Dependency queries over the declared views, answered by the C graph."""

from __future__ import annotations

__all__ = ["get_views_dependencies", "get_views_dependants", "reorder_by_dependencies", "view_graph"]

from collections.abc import Iterable

from django_pgviews_c import _core
from django_pgviews_c import view as pg


def view_graph(models: Iterable[type[pg.View]] | None = None) -> tuple[_core.Graph, list[type[pg.View]]]:
    """The graph of the project's views (or of ``models``): nodes are views, edges declared
    dependencies. Raises MissingDependencyError for a dependency on an unknown view."""
    from django_pgviews_c.sync import view_models

    nodes = list(models) if models is not None else view_models()
    return _core.Graph([m._meta.label for m in nodes], [pg.declared_dependencies(m) for m in nodes]), nodes


def get_views_dependants(mat_views: Iterable[type[pg.View]]) -> list[type[pg.View]]:
    """Every view that depends on the given ones, directly or not, in dependency order."""
    graph, nodes = view_graph()
    index = {m: i for i, m in enumerate(nodes)}
    return [nodes[i] for i in graph.dependants([index[m] for m in mat_views if m in index])]


def get_views_dependencies(mat_views: Iterable[type[pg.View]]) -> list[type[pg.View]]:
    """Every view the given ones depend on, directly or not, in dependency order."""
    graph, nodes = view_graph()
    index = {m: i for i, m in enumerate(nodes)}
    return [nodes[i] for i in graph.dependencies([index[m] for m in mat_views if m in index])]


def reorder_by_dependencies(to_refresh: Iterable[type[pg.View]]) -> list[type[pg.View]]:
    """The given views, each after every view it depends on (through any view, listed or not).
    Any depth works; a cycle raises CycleError naming it."""
    wanted = set(to_refresh)
    graph, nodes = view_graph()
    extra = [m for m in wanted if m not in set(nodes)]
    if extra:
        graph, nodes = view_graph(nodes + extra)
    return [nodes[i] for i in graph.order() if nodes[i] in wanted]
