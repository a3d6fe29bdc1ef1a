"""A view command run on a database that holds none of the views, when the routers send them to
another one (Traffic-Stops keeps its views on an alias of their own): it says where they are
and which --database to give, instead of an empty success ("refreshed 0 materialized views").
tests/txproj with TXPROJ_VIEWS_DB, each command a real process."""

from __future__ import annotations

import shutil

import pytest

from tests import psycopg_compat
from tests.test_migrate_aside import DB as ASIDE_DB
from tests.test_migrate_aside import HERE, Project

DB = ASIDE_DB.replace("pgvc_tx", "pgvc_wd", 1)
VIEWS_DB = ASIDE_DB.replace("pgvc_tx", "pgvc_wdv", 1)

HINT = "the routers allow shop.Cheap, shop.CheapCount, shop.Names on 'views'. Run with --database views."


class AliasProject(Project):
    db = DB

    def env(self, **extra: str) -> dict[str, str]:
        return super().env(TXPROJ_VIEWS_DB=VIEWS_DB, **extra)


@pytest.fixture
def project(tmp_path):
    path = tmp_path / "txproj"
    shutil.copytree(HERE / "txproj", path, ignore=shutil.ignore_patterns("__pycache__"))
    (path / "shop" / "migrations").mkdir()
    (path / "shop" / "migrations" / "__init__.py").write_text("")
    psycopg_compat.recreate_database(DB)
    psycopg_compat.recreate_database(VIEWS_DB)
    proj = AliasProject(path)
    proj.ok("makemigrations", "shop")
    proj.ok("migrate", "-v", "0")
    proj.ok("migrate", "--database", "views", "-v", "0")
    try:
        yield proj
    finally:
        psycopg_compat.drop_database(DB)
        psycopg_compat.drop_database(VIEWS_DB)


def populated() -> list[tuple]:
    return psycopg_compat.query(
        VIEWS_DB, "SELECT relname::text, relispopulated FROM pg_class WHERE relkind = 'm' ORDER BY 1"
    )


def test_refresh_on_the_wrong_database_names_the_right_one(project):
    done = project.ok("refresh_pgviews")
    assert "refreshed 0 materialized views" in done.stdout
    assert (
        "warning: no materialized views belong to database 'default': the routers allow "
        "shop.CheapCount, shop.Names on 'views'. Run with --database views." in done.stderr
    ), done.stderr
    assert populated() == [("shop_cheapcount", False), ("shop_names", True)]
    right = project.ok("refresh_pgviews", "--database", "views")
    assert "refreshed 2 materialized views" in right.stdout
    assert "warning" not in right.stderr
    assert populated() == [("shop_cheapcount", True), ("shop_names", True)]


def test_sync_and_status_on_the_wrong_database_name_the_right_one(project):
    sync = project.ok("sync_pgviews")
    assert f"warning: no views belong to database 'default': {HINT}" in sync.stderr, sync.stderr
    status = project.ok("pgviews_status")
    assert "0 views, 0 not in sync" in status.stdout
    assert f"warning: no views belong to database 'default': {HINT}" in status.stderr, status.stderr
    right = project.ok("pgviews_status", "--database", "views")
    assert "3 views, 0 not in sync" in right.stdout, right.stdout
    assert "warning" not in right.stderr
