"""django-pgviews-redux 1.3 parity: tablespaces of materialized views (Meta.db_tablespace,
DEFAULT_TABLESPACE) and of their concurrent index (concurrent_index_tablespace,
DEFAULT_INDEX_TABLESPACE, whose name then carries the tablespace as redux names it), and what a
sync does when one changes. Needs a superuser (CREATE TABLESPACE, COPY ... TO PROGRAM)."""

from __future__ import annotations

import os

import pytest

from tests import psycopg_compat
from tests.helpers import ViewSet, catalog_rows, index_names, relkind

SUFFIX = (os.environ.get("PGVIEWS_DB_SUFFIX", "") + f"_{os.getpid()}").lower().replace("-", "_")
TS1 = f"pgvc_ts1{SUFFIX}"
TS2 = f"pgvc_ts2{SUFFIX}"


@pytest.fixture(scope="module", autouse=True)
def tablespaces():
    is_super = psycopg_compat.query("postgres", "SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
    if is_super != [(True,)]:
        pytest.skip("CREATE TABLESPACE needs a superuser")
    for name in (TS1, TS2):
        psycopg_compat.query(
            "postgres", f"COPY (SELECT 1) TO PROGRAM 'mkdir -p /tmp/{name} && cat >/dev/null'"
        )
        psycopg_compat.query("postgres", f"DROP TABLESPACE IF EXISTS {name}")
        psycopg_compat.query("postgres", f"CREATE TABLESPACE {name} LOCATION '/tmp/{name}'")
    try:
        yield
    finally:
        for name in (TS1, TS2):
            psycopg_compat.query("postgres", f"DROP TABLESPACE IF EXISTS {name}")


def matview_tablespace(table: str) -> str | None:
    return catalog_rows("SELECT tablespace FROM pg_matviews WHERE matviewname = %s", [table])[0][0]


def index_tablespace(table: str, index: str) -> str | None:
    rows = catalog_rows(
        "SELECT tablespace FROM pg_indexes WHERE tablename = %s AND indexname = %s", [table, index]
    )
    assert rows, f"no index {index} on {table}: {index_names(table)}"
    return rows[0][0]


def declare(vs: ViewSet, *, db_tablespace: str = "", index_tablespace: str | None = None):
    model = vs.view(
        "Placed",
        "SELECT g AS id FROM generate_series(1, 3) g",
        materialized=True,
        db_table="ts_placed",
        concurrent_index="id",
        concurrent_index_tablespace=index_tablespace,
    )
    model._meta.db_tablespace = db_tablespace
    return model


@pytest.mark.django_db
class TestTablespaces:
    def test_db_tablespace_places_the_view_not_its_concurrent_index(self):
        vs = ViewSet()
        declare(vs, db_tablespace=TS1)
        assert vs.sync().statuses["viewtest.Placed"] == "CREATED"
        assert matview_tablespace("ts_placed") == TS1
        assert index_names("ts_placed") == ["ts_placed_id_index"]
        assert index_tablespace("ts_placed", "ts_placed_id_index") is None
        assert catalog_rows("SELECT count(*) FROM ts_placed") == [(3,)]

    def test_default_tablespace_setting(self, settings):
        settings.DEFAULT_TABLESPACE = TS1
        vs = ViewSet()
        declare(vs)
        vs.sync()
        assert matview_tablespace("ts_placed") == TS1

    def test_changed_default_tablespace_rebuilds_the_view(self, settings):
        settings.DEFAULT_TABLESPACE = TS1
        vs = ViewSet()
        declare(vs)
        vs.sync()
        settings.DEFAULT_TABLESPACE = TS2
        vs = ViewSet()
        declare(vs)
        result = vs.sync(check_sql_changed=True)
        assert result.statuses["viewtest.Placed"] == "UPDATED"
        assert matview_tablespace("ts_placed") == TS2
        assert catalog_rows("SELECT count(*) FROM ts_placed") == [(3,)]

    def test_changed_db_tablespace_rebuilds_the_view(self):
        vs = ViewSet()
        declare(vs, db_tablespace=TS1)
        vs.sync()
        vs = ViewSet()
        declare(vs, db_tablespace=TS2)
        assert vs.sync(check_sql_changed=True).statuses["viewtest.Placed"] == "UPDATED"
        assert matview_tablespace("ts_placed") == TS2
        assert relkind("ts_placed") == "m"

    def test_concurrent_index_tablespace(self):
        vs = ViewSet()
        declare(vs, index_tablespace=TS1)
        vs.sync()
        name = f"ts_placed_id_{TS1}_index"  # redux's name: the tablespace is part of it
        assert index_names("ts_placed") == [name]
        assert index_tablespace("ts_placed", name) == TS1
        assert matview_tablespace("ts_placed") is None

    def test_default_index_tablespace_setting(self, settings):
        settings.DEFAULT_INDEX_TABLESPACE = TS1
        vs = ViewSet()
        declare(vs)
        vs.sync()
        name = f"ts_placed_id_{TS1}_index"
        assert index_names("ts_placed") == [name]
        assert index_tablespace("ts_placed", name) == TS1

    def test_changed_concurrent_index_tablespace_moves_only_the_index(self):
        vs = ViewSet()
        model = declare(vs, index_tablespace=TS1)
        vs.sync()
        oid = catalog_rows("SELECT to_regclass('ts_placed')::oid::bigint")[0][0]
        vs = ViewSet()
        model = declare(vs, index_tablespace=TS2)
        result = vs.sync(check_sql_changed=True)
        # The view's body is unchanged (redux: EXISTS); only its index is rebuilt.
        assert catalog_rows("SELECT to_regclass('ts_placed')::oid::bigint")[0][0] == oid
        assert result.statuses["viewtest.Placed"] == "EXISTS", result.statuses
        name = f"ts_placed_id_{TS2}_index"
        assert index_names("ts_placed") == [name]
        assert index_tablespace("ts_placed", name) == TS2
        model.refresh(concurrently=True, strict=True)
        assert catalog_rows("SELECT count(*) FROM ts_placed") == [(3,)]
