"""Switching a project from django-pgviews-redux: the database redux built and populated keeps
serving queries through the first `migrate` with this package. Each step is a real
`python -m django` process of tests/reduxproj, first with redux installed in INSTALLED_APPS and
imported by the models, then with the one-line change to django_pgviews_c."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests import psycopg_compat

pytest.importorskip("django_pgviews", reason="django-pgviews-redux 1.3 (the test extra) needs Python 3.11+")

ROOT = Path(__file__).resolve().parent.parent
DB = "pgviews_c_redux" + os.environ.get("PGVIEWS_DB_SUFFIX", "")
MARKER = "django-pgviews-c:1"


def q(sql: str, params=None) -> list[tuple]:
    return psycopg_compat.query(DB, sql, params)


def django(path: Path, package: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    environ = dict(
        os.environ,
        DJANGO_SETTINGS_MODULE="settings",
        REDUXPROJ_DB=DB,
        PGVIEWS_PKG=package,
        PYTHONPATH=os.pathsep.join([str(path), str(ROOT)]),
        **env,
    )
    environ.pop("PGVIEWS_DB_SUFFIX", None)
    done = subprocess.run(
        [sys.executable, "-m", "django", *args],
        cwd=path,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"{package} {args}: {done.stdout}\n{done.stderr}"
    return done


def matview(name: str) -> tuple:
    """(oid, populated, comment) of a materialized view."""
    rows = q(
        "SELECT c.oid::bigint, c.relispopulated, obj_description(c.oid, 'pg_class') "
        "FROM pg_class c WHERE c.relname = %s AND c.relkind = 'm'",
        [name],
    )
    assert rows, f"{name} does not exist"
    return rows[0]


@pytest.fixture
def redux_db(tmp_path):
    """A database built and populated by django-pgviews-redux, as a project has it in production."""
    psycopg_compat.recreate_database(DB)
    path = tmp_path / "reduxproj"
    shutil.copytree(ROOT / "tests" / "reduxproj", path, ignore=shutil.ignore_patterns("__pycache__"))
    django(path, "django_pgviews", "migrate", "-v", "0")
    q("INSERT INTO shop_sale (product, amount) VALUES ('a', 5), ('a', 20), ('b', 30), ('c', 1)")
    django(path, "django_pgviews", "refresh_pgviews")
    assert matview("shop_producttotal")[1], "redux's refresh_pgviews populated the view"
    yield path
    psycopg_compat.drop_database(DB)


class Reader(threading.Thread):
    """Reads the materialized views in a loop until stopped; keeps every error it meets."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.reads = 0

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                q("SELECT (SELECT count(*) FROM shop_producttotal) + (SELECT count(*) FROM shop_bigproduct)")
                self.reads += 1
            except Exception as exc:  # every failure is a finding
                self.errors.append(str(exc).splitlines()[0])


def test_first_migrate_adopts_what_redux_built(redux_db):
    before = {name: matview(name) for name in ("shop_producttotal", "shop_bigproduct")}
    totals = q("SELECT product, total FROM shop_producttotal ORDER BY product")
    reader = Reader()
    reader.start()
    try:
        migrated = django(redux_db, "django_pgviews_c", "migrate")
    finally:
        reader.stop.set()
        reader.join()
    assert reader.errors == [], "queries failed while migrate switched the project"
    # The log says what happened to each: adopted, not "skipping".
    for label in ("shop.ProductTotal", "shop.BigSale", "shop.BigProduct"):
        assert (
            f"pgview {label} already exists, kept as it is (adopted: it equals its declaration)"
            in migrated.stderr
        ), migrated.stderr
        assert f"pgview {label} already exists, skipping" not in migrated.stderr
    for name, (oid, populated, _comment) in before.items():
        now_oid, now_populated, comment = matview(name)
        assert populated and now_populated, f"{name} must stay populated"
        assert now_oid == oid, f"{name} was rebuilt although its definition did not change"
        assert MARKER in (comment or ""), f"{name} was not stamped"
    assert q("SELECT product, total FROM shop_producttotal ORDER BY product") == totals
    status = django(redux_db, "django_pgviews_c", "pgviews_status", "--check")
    assert "shop.ProductTotal" in status.stdout
    # Adopted once: the next sync finds nothing to do.
    django(redux_db, "django_pgviews_c", "sync_pgviews")
    assert {name: matview(name)[0] for name in before} == {name: v[0] for name, v in before.items()}


def test_changed_definition_is_rebuilt_populated(redux_db):
    """The switch commit also changes a with_data = False view: it is rebuilt from its new
    definition, and populated, because it held data before."""
    oid = matview("shop_producttotal")[0]
    django(redux_db, "django_pgviews_c", "migrate", SHOP_CHANGED="1")
    now_oid, populated, _comment = matview("shop_producttotal")
    assert now_oid != oid
    assert populated, "a populated view was emptied by with_data = False"
    assert q("SELECT product, total, n FROM shop_producttotal ORDER BY product") == [
        ("a", 25, 2),
        ("b", 30, 1),
        ("c", 1, 1),
    ]


def unique_indexes(name: str) -> list[str]:
    return [
        row[0]
        for row in q(
            "SELECT i.indexrelid::regclass::text FROM pg_index i "
            "WHERE i.indrelid = %s::regclass AND i.indisunique ORDER BY 1",
            [name],
        )
    ]


def test_concurrent_index_declared_on_abstract_base(redux_db):
    """A concurrent_index declared on an abstract base holds for its subclasses. Redux dropped
    it (the view got no unique index, and refresh(concurrently=True) fell back to a plain refresh,
    locking readers out); the switch's first migrate adds the index to the view redux built,
    keeping it and its rows, and concurrent refreshes then run concurrently."""
    assert unique_indexes("shop_largetotal") == [], "redux built the view without the index"
    oid = matview("shop_largetotal")[0]
    rows = q("SELECT product, total FROM shop_largetotal ORDER BY product")
    assert rows == [("a", 20), ("b", 30)]
    django(redux_db, "django_pgviews_c", "migrate")
    assert unique_indexes("shop_largetotal") == ["shop_largetotal_product_index"]
    assert matview("shop_largetotal")[0] == oid, "the view was rebuilt to add an index"
    assert q("SELECT product, total FROM shop_largetotal ORDER BY product") == rows
    refreshed = django(redux_db, "django_pgviews_c", "refresh_pgviews", "--concurrently")
    assert "shop.LargeTotal concurrently" not in refreshed.stdout + refreshed.stderr
    assert q("SELECT concurrent FROM django_pgviews_c_refresh WHERE view = 'shop.LargeTotal'") == [(True,)]
