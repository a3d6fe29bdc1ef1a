"""Views in tests: a pytest-django project using the plugin, and Django's test runner, each run
in a subprocess against the real server."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests import psycopg_compat

HERE = Path(__file__).parent
SUFFIX = os.environ.get("PGVIEWS_DB_SUFFIX", "")


@pytest.fixture
def devproject(tmp_path):
    dest = tmp_path / "devproject"
    shutil.copytree(HERE / "devproject", dest, ignore=shutil.ignore_patterns("__pycache__"))
    db = "pgvc_devproj" + SUFFIX
    yield dest, db
    for name in (f"test_{db}", db):
        psycopg_compat.drop_database(name)


def run(project: Path, db: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHONPATH": str(project), "DEVPROJ_DB": db, "PYTHONDONTWRITEBYTECODE": "1"}
    environ.pop("DJANGO_SETTINGS_MODULE", None)
    environ.update(env)
    return subprocess.run(
        [sys.executable, *args], cwd=project, env=environ, capture_output=True, text=True, timeout=300
    )


def pytest_run(project: Path, db: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    done = run(project, db, "-m", "pytest", "-s", "-q", "inner_plugin.py", *args, **env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout
    return done


def database_oid(name: str) -> int | None:
    rows = psycopg_compat.query("postgres", "SELECT oid FROM pg_database WHERE datname = %s", [name])
    return rows[0][0] if rows else None


def test_nomigrations_and_reuse_db_get_every_view_and_changes_since(devproject):
    project, db = devproject
    # No post_migrate sync in this project (MATERIALIZED_VIEWS_DISABLE_SYNC_ON_MIGRATE): the
    # plugin alone gives the test database its views.
    first = pytest_run(project, db, "--nomigrations", "--reuse-db", DEVPROJ_VERSION="1")
    assert "columns=['id', 'name', 'price'] indexes=1" in first.stdout
    kept = database_oid(f"test_{db}")
    assert kept is not None  # --reuse-db keeps it
    # The QuerySet view gained a column since: the reused database gets it.
    second = pytest_run(project, db, "--nomigrations", "--reuse-db", DEVPROJ_VERSION="2")
    assert "columns=['id', 'name', 'price', 'doubled']" in second.stdout
    assert database_oid(f"test_{db}") == kept  # the same database, brought up to date


def test_with_migrate_sync_on_too(devproject):
    project, db = devproject
    pytest_run(project, db, "--create-db", DEVPROJ_SYNC_ON_MIGRATE="1")


def test_test_with_data_false_creates_materialized_views_empty(devproject):
    project, db = devproject
    done = pytest_run(project, db, "--nomigrations", "--create-db", DEVPROJ_WITH_DATA="0")
    assert "('shop_itemtotals', 'm-')" in done.stdout


def test_materialized_as_views(devproject):
    project, db = devproject
    pytest_run(project, db, "--nomigrations", "--reuse-db")
    # Switched on for a kept database: the materialized view becomes a plain one.
    done = pytest_run(project, db, "--nomigrations", "--reuse-db", DEVPROJ_AS_VIEWS="1")
    assert "('shop_itemtotals', 'v+')" in done.stdout and "indexes=0" in done.stdout


@pytest.mark.parametrize("parallel", ["1", "2"])
def test_django_test_runner(devproject, parallel):
    project, db = devproject
    done = run(
        project, db, "-m", "django", "test", "inner_runner", "--noinput", "-v", "2", "--parallel", parallel,
        DJANGO_SETTINGS_MODULE="settings",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "test_views_and_refresh_in_a_test_case" in done.stderr and "OK" in done.stderr
    if parallel == "2":  # the clones the workers ran on were made from the synced database
        assert f"Cloning test database for alias 'default' ('test_{db}')" in done.stderr


@pytest.mark.django_db
def test_refresh_materialized_views_refreshes_what_they_read_first(refresh_materialized_views):
    from tests.helpers import catalog_rows
    from tests.viewtest.models import DependantMaterializedView, MaterializedRelatedView, TestModel

    def ids():
        return [i for (i,) in catalog_rows("SELECT model_id FROM viewtest_dependantmaterializedview")]

    row = TestModel.objects.create(name="x")
    assert row.pk not in ids()
    # Only the outer view is named: the one it reads is refreshed before it, in this transaction.
    refreshed = refresh_materialized_views(DependantMaterializedView)
    assert refreshed == [MaterializedRelatedView, DependantMaterializedView]
    assert row.pk in ids()
