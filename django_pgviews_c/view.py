"""PostgreSQL views and materialized views as Django models.

The public names are django-pgviews-redux's: ``View``, ``MaterializedView``, ``ReadOnlyView``,
``ReadOnlyMaterializedView`` and ``ViewSQL``. Declaring a view touches no database; ``migrate``
(post_migrate) or ``manage.py sync_pgviews`` creates it.
"""

from __future__ import annotations

__all__ = [
    "View",
    "ReadOnlyView",
    "MaterializedView",
    "ReadOnlyMaterializedView",
    "ViewSQL",
]

import collections
import copy
import logging
import re
import types
import weakref
from collections.abc import Callable
from typing import Any, NamedTuple, cast

from django.apps import apps
from django.core import exceptions
from django.db import DatabaseError as DjangoDatabaseError
from django.db import connections, models, router
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.fields.reverse_related import ForeignObjectRel

from django_pgviews_c import _core
from django_pgviews_c.db.fields import get_fields_by_name
from django_pgviews_c.dberrors import sqlstate
from django_pgviews_c.exceptions import ConcurrentIndexNotDefinedError, SQLNotDefinedError
from django_pgviews_c.managers import ReadOnlyViewManager
from django_pgviews_c.privileges import INSUFFICIENT_PRIVILEGE, refresh_denied
from django_pgviews_c.querysql import call_sql, queryset_dependencies
from django_pgviews_c.testing import materialized_as_views

FIELD_SPEC_REGEX = r"^([A-Za-z_][A-Za-z0-9_]*)\.([A-Za-z_][A-Za-z0-9_]*)\.(\*|(?:[A-Za-z_][A-Za-z0-9_]*))$"
FIELD_SPEC_RE = re.compile(FIELD_SPEC_REGEX)

logger = logging.getLogger("django_pgviews_c.view")


class ViewSQL(NamedTuple):
    """A view's query and its parameters (``None``, or a list for ``%s`` placeholders)."""

    query: str
    params: list[Any] | None


def _hasfield(model_cls: type[models.Model], field_name: str) -> bool:
    try:
        model_cls._meta.get_field(field_name)
    except exceptions.FieldDoesNotExist:
        return False
    return True


# Projections waiting for their source model: (app_label, model_name): {view_cls: [field, ...]}
_DEFERRED_PROJECTIONS: dict[tuple[str, str], dict[type, list[str]]] = collections.defaultdict(
    lambda: collections.defaultdict(list)
)


def realize_deferred_projections(sender: Any, *args: Any, **kwargs: Any) -> None:
    """Copy the fields a view projects from ``sender`` once that model is ready. Only the
    project's own model counts: migrations build historical copies of it in other registries."""
    if getattr(sender._meta, "apps", apps) is not apps:
        return
    pending = _DEFERRED_PROJECTIONS.pop((sender._meta.app_label, sender.__name__.lower()), {})
    for view_cls, field_names in pending.items():
        for name, field in get_fields_by_name(sender, *field_names).items():
            # A field the view declares itself wins over the projection.
            if hasattr(view_cls, name) or _hasfield(view_cls, name):
                continue
            if isinstance(field, ForeignObjectRel):
                raise TypeError(
                    f"{view_cls.__name__}: projection {sender._meta.label}.{name} is a reverse "
                    f"relation, not a field of {sender._meta.label}: a view can project only fields"
                )
            copy.copy(field).contribute_to_class(view_cls, name)


models.signals.class_prepared.connect(
    realize_deferred_projections, dispatch_uid="django_pgviews_c.realize_deferred_projections"
)


def _realise_projections(app_label: str, model_name: str) -> None:
    """Project now if the source model is already prepared (it may be, while the registry is
    still loading: get_model() would refuse, all_models already holds it)."""
    model_cls = apps.all_models.get(app_label, {}).get(model_name.lower())
    if model_cls is not None:
        realize_deferred_projections(model_cls)


def _inherited(bases: tuple[type, ...], name: str, default: Any) -> Any:
    """What the first base that has ``name`` (a ViewMeta attribute) holds, else ``default``."""
    for base in bases:
        if hasattr(base, name):
            return copy.copy(getattr(base, name))
    return default


class ViewMeta(models.base.ModelBase):
    # What __new__ takes out of a view class's body: attributes of every view class.
    _dependencies: list[Any]
    _concurrent_index: str | None
    _concurrent_index_tablespace: str | None

    def __new__(cls, name: str, bases: tuple[type, ...], attrs: dict[str, Any], **kwargs: Any) -> ViewMeta:
        # A class that does not declare these takes its bases' (an abstract base shared by
        # views that differ only in their SQL); redux gave such a class none.
        dependencies = attrs.pop("dependencies", _inherited(bases, "_dependencies", []))
        projection = attrs.pop("projection", [])
        concurrent_index = attrs.pop("concurrent_index", _inherited(bases, "_concurrent_index", None))
        concurrent_index_tablespace = attrs.pop(
            "concurrent_index_tablespace", _inherited(bases, "_concurrent_index_tablespace", None)
        )

        deferred = []
        for spec in projection:
            if isinstance(spec, models.Field):
                attrs[spec.name] = copy.copy(spec)
            elif isinstance(spec, str) and (match := FIELD_SPEC_RE.match(spec)):
                deferred.append(match.groups())
            else:
                raise TypeError(f"Unrecognized field specifier: {spec!r}")

        view_cls = super().__new__(cls, name, bases, attrs, **kwargs)
        view_cls._dependencies = list(dependencies)
        view_cls._concurrent_index = concurrent_index
        view_cls._concurrent_index_tablespace = concurrent_index_tablespace
        for app_label, model_name, field_name in deferred:
            _DEFERRED_PROJECTIONS[(app_label, model_name.lower())][view_cls].append(field_name)
            _realise_projections(app_label, model_name)
        return view_cls

    def add_to_class(cls, name: str, value: Any) -> None:
        if name == "_base_manager":
            return
        # django-stubs declares add_to_class on Model only; Django defines it on ModelBase.
        super().add_to_class(name, value)  # type: ignore[misc]


class BaseManagerMeta:
    base_manager_name = "objects"


class View(models.Model, metaclass=ViewMeta):
    """A PostgreSQL view. Give it ``sql`` (or a ``get_sql()`` classmethod returning ``ViewSQL``),
    fields for its columns, ``dependencies`` on other views, and ``Meta.managed = False``."""

    _deferred = False
    # A string, or a callable returning one, a ViewSQL or a QuerySet (querysql.call_sql).
    sql: str | Callable[..., Any] | None = None
    _dependencies: list[str]

    @classmethod
    def get_sql(cls) -> ViewSQL | models.QuerySet[Any]:
        """The view's query: ``ViewSQL(query, params)``, or a QuerySet (compiled at sync time
        by the target connection). ``sql`` may be a callable returning either, or a string."""
        sql = cls.sql
        if callable(sql):
            sql = call_sql(cls, sql)
            if not isinstance(sql, str):
                # Whatever it is: querysql.view_query checks it and names the view if it is wrong.
                return cast("ViewSQL | models.QuerySet[Any]", sql)
        if sql is None:
            raise SQLNotDefinedError(f"View SQL not defined for {cls.__name__}")
        return ViewSQL(sql, None)

    @classmethod
    def get_view_connection(cls, using: str, restricted_mode: bool = True) -> BaseDatabaseWrapper | None:
        """The connection for ``using``; in restricted mode ``None`` when routers do not allow
        migrations of this app there (the view does not belong to that database).

        Override in a subclass to customize."""
        if not restricted_mode or router.allow_migrate(
            using, cls._meta.app_label, model_name=cls._meta.model_name
        ):
            return connections[using]
        return None

    class Meta:
        abstract = True
        managed = False


# A classmethod read from its class is a bound method: __func__ is the function under it.
_BASE_GET_SQL = cast(types.MethodType, View.get_sql).__func__


def _dependency_label(model: type[View], dependency: Any) -> str:
    """A dependency as ``app_label.ModelName``: from a model class, or from a label written in
    any case. A name that matches no model is returned as written, for the graph to report."""
    if isinstance(dependency, str):
        app_label, _, name = dependency.partition(".")
        all_models = model._meta.apps.all_models
        app_models = all_models.get(app_label)
        if app_models is None:  # the app label in another case
            app_models = next(
                (m for a, m in list(all_models.items()) if a.lower() == app_label.lower()), None
            )
        found = app_models.get(name.lower()) if app_models is not None else None
        return found._meta.label if found is not None else dependency
    if isinstance(dependency, type) and issubclass(dependency, models.Model):
        return dependency._meta.label
    raise TypeError(
        f"{model._meta.label}: dependencies hold model classes or 'app_label.ModelName' labels, "
        f"not {dependency!r}"
    )


# view class -> (its registry's get_models() list, its declared dependencies as labels). Django
# builds a new list whenever a model is registered, so the same list means the labels still hold.
_labels_cache: weakref.WeakKeyDictionary[type, tuple[Any, list[str]]] = weakref.WeakKeyDictionary()


def _declared_labels(model: type[View]) -> list[str]:
    try:
        token = model._meta.apps.get_models()
    except exceptions.AppRegistryNotReady:
        token = None
    cached = _labels_cache.get(model)
    if token is not None and cached is not None and cached[0] is token:
        return cached[1]
    deps = [_dependency_label(model, d) for d in getattr(model, "_dependencies", ())]
    for parent in model.__mro__[1:]:
        if isinstance(parent, type) and issubclass(parent, View):
            for d in getattr(parent, "_dependencies", ()):
                label = _dependency_label(model, d)
                if label not in deps:
                    deps.append(label)
    if token is not None:
        _labels_cache[model] = (token, deps)
    return deps


def declared_dependencies(model: type[View]) -> list[str]:
    """A view's ``dependencies`` (model classes or labels in any case, as labels), with those
    its parent view classes declare and the views its QuerySet reads."""
    deps = list(_declared_labels(model))
    overridden = cast(types.MethodType, model.get_sql).__func__ is not _BASE_GET_SQL
    if callable(getattr(model, "sql", None)) or overridden:
        deps += [d for d in queryset_dependencies(model) if d not in deps]
    return deps


class ReadOnlyView(View):
    """A view whose manager refuses writes."""

    _base_manager = ReadOnlyViewManager()
    objects = ReadOnlyViewManager()

    class Meta(BaseManagerMeta):
        abstract = True
        managed = False


# Cache of REFRESH statements by (db_table, concurrently): the quoting runs once per view.
_refresh_sql: dict[tuple[str, bool], str] = {}


def refresh_statement(db_table: str, concurrently: bool) -> str:
    """REFRESH MATERIALIZED VIEW [CONCURRENTLY] of ``db_table``, as the core writes it."""
    key = (db_table, concurrently)
    sql = _refresh_sql.get(key)
    if sql is None:
        sql = _refresh_sql[key] = _core.refresh_sql(db_table, concurrently)
    return sql


# One driver cursor per driver connection, reused by refresh(): creating Django's cursor wrapper
# costs more than a tiny REFRESH's round trip is worth measuring against.
_raw_cursors: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def _execute_fast(conn: BaseDatabaseWrapper, sql: str) -> bool:
    """Run ``sql`` on the driver's cursor directly when nothing would observe Django's wrapper
    (no query logging, no execute_wrappers, no broken transaction); errors are still raised as
    django.db errors. Returns False when the caller must take the ordinary path."""
    if conn.queries_logged or conn.execute_wrappers or conn.needs_rollback or conn.connection is None:
        return False
    raw = conn.connection
    try:
        cursor = _raw_cursors.get(raw)
    except TypeError:  # a driver connection that takes no weak references
        return False
    if cursor is None or cursor.closed:
        cursor = _raw_cursors[raw] = raw.cursor()
    with conn.wrap_database_errors:
        cursor.execute(sql)
    return True


# PostgreSQL refuses CONCURRENTLY on a view that was never populated with feature_not_supported.
# (55000, object_not_in_prerequisite_state, means a missing unique index: a real error.)
_NOT_POPULATED = ("0A000",)


def _sqlstate(exc: BaseException) -> str | None:
    cause = exc.__cause__ or exc
    return getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)


def run_refresh(
    conn: BaseDatabaseWrapper,
    db_table: str,
    concurrently: bool,
    label: str | None = None,
    say: Callable[[str], None] | None = None,
) -> None:
    """REFRESH one materialized view on ``conn``. It waits for its locks with a short
    lock_timeout and retries (refresh.guarded_refresh): a plain refresh takes ACCESS EXCLUSIVE,
    and readers never queue behind it for long; a concurrent one is not left waiting without a
    word behind a data load holding a table it reads. A concurrent refresh of a view that was never populated
    becomes a plain one (inside a savepoint when a transaction is open). ``say``: where a
    plain refresh's lock wait is said (a command's progress)."""
    from django_pgviews_c.refresh import guarded_refresh

    if not concurrently:
        guarded_refresh(conn, db_table, label or db_table, say)
        return
    try:
        guarded_refresh(conn, db_table, label or db_table, say, concurrently=True)
        return
    except DjangoDatabaseError as exc:
        if _sqlstate(exc) not in _NOT_POPULATED:
            raise
    guarded_refresh(conn, db_table, label or db_table, say)


class MaterializedView(View):
    """A materialized view. ``concurrent_index`` (a column list) allows
    ``refresh(concurrently=True)``; ``with_data = False`` creates it empty;
    ``defer_rebuild = True`` (default: the setting PGVIEWS_DEFER_REBUILD) lets a sync that must
    rebuild it create the new version beside it WITH NO DATA, for refresh_pgviews --pending;
    ``staleness = "exact"`` judges its staleness by triggers on the tables it reads instead of
    the statistics counters (docs/freshness.md, "Exact mode")."""

    with_data: bool = True
    defer_rebuild: bool | None = None
    staleness: str = "statistics"
    _concurrent_index: str | None
    _concurrent_index_tablespace: str | None

    @classmethod
    def can_refresh_concurrently(cls, concurrently: bool, strict: bool) -> bool:
        """Whether a refresh asked to be concurrent can be: without ``concurrent_index``,
        ``strict`` raises ConcurrentIndexNotDefinedError, else a warning is logged."""
        if not concurrently or cls._concurrent_index is not None:
            return concurrently
        message = (
            f"Cannot refresh {cls._meta.label} concurrently: it has no concurrent_index. "
            f"Add concurrent_index = '<unique column list>' to the class, then run "
            f"sync_pgviews to create the index."
        )
        if strict:
            raise ConcurrentIndexNotDefinedError(message)
        logger.warning(message)
        return False

    @classmethod
    def refresh(cls, concurrently: bool = False, strict: bool = False, using: str | None = None) -> None:
        """Refresh on Django's own connection (``using``, default: the router's database for
        writes), so the caller's transaction (and its uncommitted rows) is what it sees.

        ``concurrently`` needs ``concurrent_index``: without one, ``strict`` raises
        ``ConcurrentIndexNotDefinedError``, else a warning is logged and the refresh is plain.
        A view that was never populated is refreshed plainly (PostgreSQL requires it). A server
        error comes as the driver's own exception (psycopg.errors.UndefinedTable for a missing
        view), as django-pgviews-redux raises it."""
        if materialized_as_views():  # a plain view in test databases: nothing to refresh
            return
        conn = cls.get_view_connection(using=using or router.db_for_write(cls), restricted_mode=False)
        if not conn:
            logger.warning("Failed to find connection to refresh %s", cls)
            return
        asked, concurrently = concurrently, cls.can_refresh_concurrently(concurrently, strict)
        from django_pgviews_c.history import recording, refresh_recorded
        from django_pgviews_c.refreshfn import refresh_single

        try:
            way = refresh_single(conn, cls, concurrent=concurrently, asked_concurrent=asked)
            if way == "done" or (
                way == "script"
                and refresh_recorded(conn, cls, concurrent=concurrently, asked_concurrent=asked)
            ):
                return
            with recording(conn, cls, concurrent=concurrently, asked_concurrent=asked):
                run_refresh(conn, cls._meta.db_table, concurrently, cls._meta.label)
        except DjangoDatabaseError as exc:
            cause = exc.__cause__
            if cause is not None and sqlstate(exc) == INSUFFICIENT_PRIVILEGE:
                # The same class, saying which privilege is missing (privileges.py).
                text = refresh_denied(conn, cls._meta.db_table, str(cause).strip().splitlines()[0])
                raise type(cause)(f"refreshing {cls._meta.label}: {text}") from cause
            if cause is not None:
                raise cause from None
            raise

    class Meta:
        abstract = True
        managed = False


class ReadOnlyMaterializedView(MaterializedView):
    """A materialized view whose manager refuses writes."""

    _base_manager = ReadOnlyViewManager()
    objects = ReadOnlyViewManager()

    class Meta(BaseManagerMeta):
        abstract = True
        managed = False
