"""Test helpers: views declared in an isolated app registry, synced on the test connection."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.apps.registry import Apps
from django.db import connection

if TYPE_CHECKING:
    from django_pgviews_c import view as pg

_counter = itertools.count()

# What decl_tuple fills a field with when a test does not say.
_DECL_DEFAULTS: dict[str, Any] = {
    "label": "app.V",
    "schema": None,
    "name": "v",
    "kind": "v",
    "sql": "SELECT 1 AS id",
    "dependencies": (),
    "with_data": True,
    "tablespace": None,
    "indexes": (),
    "concurrent_index": None,
    "concurrent_index_tablespace": None,
    "db_table": None,  # the name
    "columns": (),
}


def decl_tuple(**fields: Any) -> tuple:
    """One declaration in the tuple form _core.plan reads (declarations.py builds the real ones),
    its fields named as _core.DECL_FIELDS names them and put in that order; the rest defaulted
    (db_table to the name). A field the core does not have, or one it gained without a default
    here, is a TypeError naming it. Imports nothing of Django's app registry, so a worker process
    without settings can build one."""
    from django_pgviews_c import _core

    unknown = set(fields) - set(_core.DECL_FIELDS)
    missing = set(_core.DECL_FIELDS) - set(_DECL_DEFAULTS) - set(fields)
    if unknown or missing:
        raise TypeError(f"decl_tuple: unknown fields {sorted(unknown)}, no default for {sorted(missing)}")
    values = {**_DECL_DEFAULTS, **fields}
    if values["db_table"] is None and "db_table" not in fields:
        values["db_table"] = values["name"]
    return tuple(values[name] for name in _core.DECL_FIELDS)


class ViewSet:
    """Views declared for one test, kept out of the project's registry."""

    def __init__(self) -> None:
        self.apps = Apps(["tests.viewtest"])
        self.models: dict[str, type[pg.View]] = {}

    def view(
        self,
        name: str,
        sql: str,
        *,
        materialized: bool = False,
        db_table: str | None = None,
        dependencies: tuple[str, ...] = (),
        indexes: list[Any] | None = None,
        **attrs: Any,
    ) -> type[pg.View]:
        from django_pgviews_c import view as pg

        meta_attrs = {
            "app_label": "viewtest",
            "apps": self.apps,
            "managed": False,
            "db_table": db_table or f"t_{name.lower()}",
        }
        if indexes is not None:
            meta_attrs["indexes"] = indexes
        body = {
            "__module__": "tests.viewtest.models",
            "Meta": type("Meta", (), meta_attrs),
            "sql": sql,
            "dependencies": list(dependencies),
            **attrs,
        }
        base = pg.MaterializedView if materialized else pg.View
        # A fresh class name each time: the same name may be declared again, changed.
        model = type(f"{name}", (base,), body) if name not in self.models else None
        if model is None:
            self.apps.all_models["viewtest"].pop(name.lower(), None)
            model = type(f"{name}", (base,), body)
        self.models[name] = model
        return model

    def sync(self, names: list[str] | None = None, **options: Any):
        from django_pgviews_c.sync import Syncer

        chosen = [self.models[n] for n in (names or list(self.models))]
        known = {m._meta.label for m in self.models.values()}
        return Syncer(connection, chosen, known, **options).run()


def catalog_rows(sql: str, params: Any = None) -> list[tuple]:
    with connection.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall()


def relkind(qualified: str) -> str | None:
    rows = catalog_rows("SELECT relkind::text FROM pg_class WHERE oid = to_regclass(%s)", [qualified])
    return rows[0][0] if rows else None


def execute(sql: str, params: Any = None) -> None:
    with connection.cursor() as cur:
        cur.execute(sql, params)


def oid(qualified: str) -> int | None:
    return catalog_rows("SELECT to_regclass(%s)::oid::bigint", [qualified])[0][0]


def viewdef(qualified: str) -> str:
    return catalog_rows("SELECT pg_get_viewdef(to_regclass(%s))", [qualified])[0][0]


def populated(qualified: str) -> bool:
    return catalog_rows("SELECT relispopulated FROM pg_class WHERE oid = to_regclass(%s)", [qualified])[0][0]


def rule_reads(qualified: str) -> list[str]:
    """The relations the rewrite rule of a view reads (pg_depend), by name."""
    return [
        r[0]
        for r in catalog_rows(
            "SELECT DISTINCT d.refobjid::regclass::text FROM pg_depend d "
            "JOIN pg_rewrite w ON w.oid = d.objid WHERE d.classid = 'pg_rewrite'::regclass "
            "AND w.ev_class = to_regclass(%s) AND d.refobjid <> w.ev_class ORDER BY 1",
            [qualified],
        )
    ]


def index_names(qualified: str) -> list[str]:
    return [
        r[0]
        for r in catalog_rows(
            "SELECT c.relname::text FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid "
            "WHERE x.indrelid = to_regclass(%s) ORDER BY 1",
            [qualified],
        )
    ]


def comment(qualified: str) -> str | None:
    return catalog_rows("SELECT obj_description(to_regclass(%s), 'pg_class')", [qualified])[0][0]


def leftovers() -> list[str]:
    """Objects a sync builds on the side and must not leave behind."""
    return [
        r[0]
        for r in catalog_rows(
            "SELECT relname::text FROM pg_class WHERE relname LIKE '%%pgvc\\_new%%' "
            "UNION ALL SELECT nspname::text FROM pg_namespace WHERE nspname = '_pgviews_c_build'"
        )
    ]


def snapshot() -> list[tuple]:
    """Every view and materialized view outside the system schemas: oid, name, kind, definition,
    populated flag, comment and indexes; equal snapshots mean nothing changed."""
    return catalog_rows(
        "SELECT c.oid::bigint, n.nspname::text, c.relname::text, c.relkind::text, "
        "pg_get_viewdef(c.oid), c.relispopulated, obj_description(c.oid, 'pg_class'), "
        "c.relacl::text, pg_get_userbyid(c.relowner)::text, "
        "(SELECT array_agg(i.relname::text ORDER BY 1) FROM pg_index x "
        " JOIN pg_class i ON i.oid = x.indexrelid WHERE x.indrelid = c.oid) "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind IN ('v', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
        "ORDER BY 2, 3"
    )


def ddl(queries: list[dict]) -> list[str]:
    """The statements among captured queries that are not plain reads."""
    return [q["sql"] for q in queries if not q["sql"].lstrip().upper().startswith(("WITH", "SELECT"))]


class Gate:
    """An advisory lock this test holds, so that SQL including ``gate.sql`` blocks, mid-statement,
    until ``open()``: the test then acts while the other session is provably inside that
    statement, instead of hoping a pg_sleep outlasts it. ``waiter()`` returns the pid of the
    backend blocked on it, as pg_locks shows it."""

    def __init__(self, dbname: str, key: int) -> None:
        from tests import psycopg_compat

        self.dbname, self.key = dbname, key
        self.sql = f"(SELECT pg_catalog.pg_advisory_xact_lock_shared({key}) AS gate_{key}) AS gate"
        self._conn = psycopg_compat._connect(dbname)
        self._conn.cursor().execute("SELECT pg_catalog.pg_advisory_lock(%s)", [key])

    def waiter(self, timeout: float = 60) -> int:
        return wait_for_advisory_waiter(self.dbname, self.key, timeout)

    def open(self) -> None:
        if self._conn is not None:
            self._conn.close()  # ends the session: the lock goes with it
            self._conn = None

    def __enter__(self) -> Gate:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.open()


def advisory_waiters(dbname: str, key: int) -> list[int]:
    """Pids of the backends waiting for the advisory lock `key` (bigint form) in dbname."""
    from tests import psycopg_compat

    return [
        r[0]
        for r in psycopg_compat.query(
            dbname,
            "SELECT pid FROM pg_catalog.pg_locks WHERE locktype = 'advisory' AND NOT granted "
            "AND database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database()) "
            "AND classid::int8 = %s AND objid::int8 = %s AND objsubid = 1 ORDER BY pid",
            [key >> 32, key & 0xFFFFFFFF],
        )
    ]


def wait_for_advisory_waiter(dbname: str, key: int, timeout: float = 60, count: int = 1) -> int:
    """Wait until `count` backends wait for the advisory lock `key`; the first one's pid. The
    timeout only bounds a broken run: nothing here depends on how fast the machine is."""
    import time

    deadline = time.monotonic() + timeout
    while not len(pids := advisory_waiters(dbname, key)) >= count:
        assert time.monotonic() < deadline, f"no session ever waited for advisory lock {key}"
        time.sleep(0.02)
    return pids[0]


def assert_pruned_to_keep(model: Any, keep: int, refresh: Callable[[], Any]) -> None:
    """Refreshes (refresh()) with PGVIEWS_HISTORY_KEEP=keep until model's history has been pruned
    twice: after each refresh the records kept are the newest, at least keep (or all there are)
    and at most keep + the prune slack; pruned back to keep when there were more than keep +
    slack, not on every refresh."""
    from django.test.utils import override_settings

    from django_pgviews_c import history
    from django_pgviews_c.historyfn import PRUNE_SLACK

    ids = [r.id for r in history.records(model)]  # the sync's record
    counts = []
    with override_settings(PGVIEWS_HISTORY_KEEP=keep):
        for _ in range(2 * (keep + PRUNE_SLACK) + 3):
            refresh()
            ids.append(history.records(model).first().id)
            kept = [r.id for r in history.records(model)]
            counts.append(len(kept))
            assert kept == sorted(ids, reverse=True)[: len(kept)]  # always the newest
            assert min(len(ids), keep) <= len(kept) <= keep + PRUNE_SLACK
    assert keep in counts[keep:] and keep + PRUNE_SLACK in counts
    assert counts.count(keep) <= 3


def in_thread(work: Callable[[], Any], then: Callable[[], Any] | None = None) -> tuple[Any, dict[str, Any]]:
    """Start ``work`` in a thread of its own (a refresh that waits behind a lock this test holds):
    returns the thread and a dict that gets "result" (what ``work`` returned) or "error" (what it
    raised). The thread's database connections are closed when it ends, then ``then`` runs (a
    test waiting for a line that says the thread is done)."""
    import threading

    from django.db import connections

    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = work()
        except BaseException as exc:  # reported by the test
            outcome["error"] = exc
        finally:
            connections.close_all()
            if then is not None:
                then()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome
