"""Declarations: what the view models of one connection declare, in the tuple form the C
planner reads, and the one catalog query the planner compares them with."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from importlib import import_module
from typing import Any

from django.apps import apps
from django.conf import settings
from django.db.backends.base.base import BaseDatabaseWrapper

from django_pgviews_c import _core, testing
from django_pgviews_c.dberrors import execute_script
from django_pgviews_c.exceptions import InvalidNameError, PlanError
from django_pgviews_c.querysql import view_query
from django_pgviews_c.view import MaterializedView, View, declared_dependencies

__all__ = ["Declarations", "defers", "load_urlconf", "read_catalog", "setting", "view_models"]

logger = logging.getLogger("django_pgviews_c.sync_pgviews")

_CATALOG_SQL = _core.catalog_sql()


def setting(name: str, default: Any) -> Any:
    return getattr(settings, name, default)


def defers(model: type[View]) -> bool:
    """Whether a rebuild of this materialized view waits beside it for refresh_pgviews --pending:
    its ``defer_rebuild``, else the setting PGVIEWS_DEFER_REBUILD (default False)."""
    if not issubclass(model, MaterializedView):
        return False
    own = getattr(model, "defer_rebuild", None)
    return bool(setting("PGVIEWS_DEFER_REBUILD", False) if own is None else own)


_urlconf_loaded = False


def load_urlconf() -> None:
    """Import the project's ROOT_URLCONF, once per process, as Django's system checks do.

    A project may declare its views in a module that only its URLconf imports (models in
    ``app/api/models.py`` of an app with no ``models`` module of its own). Redux's commands run
    the system checks, whose URL check imports the URLconf and so registers those views; the
    view commands here skip the checks, and without this would find no view at all and report
    an empty success. A URLconf that does not import is said, naming the error, and the command
    goes on with the views it has."""
    global _urlconf_loaded
    if _urlconf_loaded:
        return
    _urlconf_loaded = True
    urlconf = getattr(settings, "ROOT_URLCONF", None)
    if not isinstance(urlconf, str) or not urlconf:
        return
    try:
        import_module(urlconf)
    except Exception as exc:  # noqa: BLE001 - any error of the project's URLconf is reported
        logger.warning(
            "ROOT_URLCONF %r does not import (%s: %s): views declared in modules that only it "
            "imports are not seen",
            urlconf,
            type(exc).__name__,
            exc,
        )


def view_models() -> list[type[View]]:
    """Every concrete view model of the installed apps, in app registry order, the URLconf's
    imports included (load_urlconf())."""
    load_urlconf()
    return [m for m in apps.get_models() if issubclass(m, View) and not m._meta.abstract]


class Declarations:
    """The declarations of the views one connection holds, in the tuple form plan() reads."""

    def __init__(
        self, models: Sequence[type[View]], connection: BaseDatabaseWrapper, known: set[str]
    ) -> None:
        self.models = list(models)
        self.connection = connection
        self.labels = [m._meta.label for m in self.models]
        self.sql: list[str] = []
        self.tuples: list[tuple[Any, ...]] = []
        self.split: list[tuple[str | None, str]] = []
        #: Declarations whose rebuild may wait beside the old object (plan(defer=...)).
        self.defer: list[int] = []
        mine = set(self.labels)
        editor = (
            connection.schema_editor(collect_sql=True)
            if any(issubclass(m, MaterializedView) and m._meta.indexes for m in self.models)
            else None
        )
        for model in self.models:
            self.tuples.append(self._declaration(model, editor, mine, known))
        self.defer = [i for i, model in enumerate(self.models) if self.tuples[i][3] == "m" and defers(model)]

    def _declaration(
        self, model: type[View], editor: Any, mine: set[str], known: set[str]
    ) -> tuple[Any, ...]:
        meta = model._meta
        _refuse_nul(meta.label, "db_table", meta.db_table)
        try:
            schema, name = _core.split_table(meta.db_table)
        except InvalidNameError as exc:
            raise PlanError(f"{meta.label}: {exc}. Nothing was changed.") from exc
        self.split.append((schema, name))
        try:
            sql = view_query(model, self.connection)
        except Exception:
            # The driver refuses a NUL byte in a parameter with a bare traceback: say which view.
            _refuse_nul_in_parameters(model)
            raise
        _refuse_nul(meta.label, "SQL", sql)
        sql = sql.strip()
        while sql.endswith(";"):
            sql = sql[:-1].rstrip()
        self.sql.append(sql)
        # A dependency on a view that lives on another database is not an edge here; an unknown
        # name goes through, for the core to report.
        deps = tuple(d for d in declared_dependencies(model) if d in mine or d not in known)
        materialized = issubclass(model, MaterializedView)
        with_data = bool(getattr(model, "with_data", True))
        if materialized and testing.in_test_databases():  # PGVIEWS_TEST_* settings
            materialized = not testing.materialized_as_views()
            with_data = with_data and testing.materialized_with_data()
        indexes: tuple[tuple[str, tuple[str | int, ...]], ...] = ()
        tablespace = cidx_ts = None
        if materialized:
            tablespace = meta.db_tablespace or setting("DEFAULT_TABLESPACE", "") or None
            cidx_ts = model._concurrent_index_tablespace or setting("DEFAULT_INDEX_TABLESPACE", "") or None
            for index in meta.indexes:
                _refuse_nul(meta.label, "index name", index.name)
            indexes = tuple((index.name, _index_template(model, index, editor)) for index in meta.indexes)
        fields = {
            "label": meta.label,
            "schema": schema,
            "name": name,
            "kind": "m" if materialized else "v",
            "sql": sql,
            "dependencies": deps,
            "with_data": with_data,
            "tablespace": tablespace,
            "indexes": indexes,
            "concurrent_index": model._concurrent_index if materialized else None,
            "concurrent_index_tablespace": cidx_ts if materialized and model._concurrent_index else None,
            "db_table": meta.db_table,
            # The fields whose columns the view must have. The `id` Django adds when no field is
            # the primary key is left out: views often have none, and are queried with values().
            "columns": tuple(
                (f.name, f.column, _db_type(f, self.connection))
                for f in meta.concrete_fields
                if not f.auto_created
            ),
        }
        # The order is the core's (_core.DECL_FIELDS): the one definition of this contract.
        return tuple(fields[field] for field in _core.DECL_FIELDS)

    def catalog_params(self, restore: bool) -> dict[str, Any]:
        return {
            "decl_schemas": [s for s, _ in self.split],
            "decl_names": [n for _, n in self.split],
            "schemas": sorted({s for s, _ in self.split if s}),
            "restore": restore,
        }


#: Slots of an index template: where the core puts the table and the index name.
TABLE, NAME = 0, 1
_SLOT = re.compile(r"%\((table|name)\)s")


def _index_template(model: type[View], index: Any, editor: Any) -> tuple[str | int, ...]:
    """The index's CREATE statement as Django's schema editor writes it, in pieces: text, and
    the slots (TABLE, NAME) where the core puts the table and the index name, so it can build
    the index on a side-by-side copy too. The slots are the placeholders of Django's own
    statement template, found there by position; nothing in the rendered text (a condition's
    string literal, say) is ever searched."""
    statement = index.create_sql(model, editor)
    template, parts = statement.template, statement.parts
    segments: list[str | int] = []
    start = 0
    for slot in _SLOT.finditer(template):
        text = template[start : slot.start()] % parts
        if text:
            segments.append(text)
        segments.append(TABLE if slot.group(1) == "table" else NAME)
        start = slot.end()
    if tail := template[start:] % parts:
        segments.append(tail)
    return tuple(segments)


def _db_type(field: Any, connection: BaseDatabaseWrapper) -> str | None:
    """The column type Django expects for a field, or None when it cannot tell."""
    try:
        db_type: str | None = field.db_type(connection)
    except Exception:  # a custom field may need more than a connection to say
        return None
    return db_type


def _refuse_nul_in_parameters(model: type[View]) -> None:
    result = model.get_sql()
    if isinstance(result, tuple) and len(result) == 2:
        query, params = result
        _refuse_nul(model._meta.label, "SQL", query)
        for param in params.values() if isinstance(params, dict) else params or ():
            _refuse_nul(model._meta.label, "SQL parameters", param)


def _refuse_nul(label: str, what: str, value: Any) -> None:
    """PostgreSQL cannot take a NUL byte (the server would cut the text there, or the driver
    fails with a bare traceback): say which view holds one."""
    if isinstance(value, str) and "\x00" in value:
        raise PlanError(
            f"{label}: its {what} contains a NUL byte, which PostgreSQL cannot take. Nothing was changed."
        )


def read_catalog(
    cursor: Any, params: dict[str, Any], triggers: list[int] | None = None
) -> list[tuple[Any, ...]]:
    """One round trip. JIT is turned off for it: on a long-lived database the recursive query's
    cost estimate crosses jit_above_cost, and compiling takes longer than the query itself. The
    two statements run as one implicit transaction, so SET LOCAL ends with it. The rows of the
    tables that carry the exact mode's trigger are left out, their oids put in ``triggers``."""
    results = execute_script(cursor, "SET LOCAL jit = off;\n" + _CATALOG_SQL, params)
    while results.description is None and results.nextset():  # psycopg 3 starts at the SET
        pass
    rows = []
    for row in results.fetchall():
        if row[3] == "T":
            if triggers is not None:
                triggers.append(row[0])
        else:
            rows.append(tuple(row))
    return rows
