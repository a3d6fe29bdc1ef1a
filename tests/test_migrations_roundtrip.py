"""Migrations round trip in a project of its own (tests/migproject, copied to a temporary
directory), each step a real `python -m django` process on a database of its own:
makemigrations writes RegisterViewOperation / DeleteViewOperation, migrate creates and drops the
views; the hand-written operations SyncView / DropView / RefreshMaterializedView; an invalid
view's SQL makes migrate fail with a precise message and no change; system check W001."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests import psycopg_compat

ROOT = Path(__file__).resolve().parent.parent
DB = "pgviews_c_mig" + os.environ.get("PGVIEWS_DB_SUFFIX", "")

BASE_MODELS = (ROOT / "tests" / "migproject" / "shop" / "models.py").read_text()


def q(sql: str, params=None) -> list[tuple]:
    return psycopg_compat.query(DB, sql, params)


class Project:
    def __init__(self, path: Path) -> None:
        self.path = path

    def django(self, *args: str, **env: str) -> subprocess.CompletedProcess:
        environ = dict(
            os.environ,
            DJANGO_SETTINGS_MODULE="settings",
            MIGPROJECT_DB=DB,
            PYTHONPATH=os.pathsep.join([str(self.path), str(ROOT)]),
            **env,
        )
        environ.pop("PGVIEWS_DB_SUFFIX", None)
        return subprocess.run(
            [sys.executable, "-m", "django", *args],
            cwd=self.path,
            env=environ,
            capture_output=True,
            text=True,
            timeout=300,
        )

    def ok(self, *args: str, **env: str) -> subprocess.CompletedProcess:
        done = self.django(*args, **env)
        assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
        return done

    def models(self, text: str) -> None:
        (self.path / "shop" / "models.py").write_text(text)
        for cached in (self.path / "shop").rglob("__pycache__"):
            shutil.rmtree(cached)

    def migration(self, name: str) -> str:
        return (self.path / "shop" / "migrations" / name).read_text()

    def migrations(self) -> list[str]:
        return sorted(p.name for p in (self.path / "shop" / "migrations").glob("0*.py"))


def kinds() -> dict[str, str]:
    return dict(
        q(
            "SELECT c.relname::text, c.relkind::text FROM pg_class c "
            "WHERE c.relkind IN ('v', 'm') AND c.relnamespace = 'public'::regnamespace"
        )
    )


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    path = tmp_path_factory.mktemp("migproject") / "migproject"
    shutil.copytree(ROOT / "tests" / "migproject", path, ignore=shutil.ignore_patterns("__pycache__"))
    psycopg_compat.recreate_database(DB)
    try:
        yield Project(path)
    finally:
        psycopg_compat.drop_database(DB)


# The steps build on each other, in file order.


def test_makemigrations_registers_views(project):
    done = project.ok("makemigrations", "shop")
    assert "Register view ItemView" in done.stdout
    assert "Register materialized view ItemMatView" in done.stdout
    text = project.migration("0001_initial.py")
    assert "django_pgviews_c.db.migrations.operations" in text
    assert text.count("RegisterViewOperation(") == 2
    assert "db_name='shop_itemmatview'" in text.replace('"', "'")
    # Nothing more to detect.
    done = project.ok("makemigrations", "shop", "--check", "--dry-run")
    assert "No changes detected" in done.stdout


def test_migrate_creates_the_views(project):
    project.ok("migrate", "-v", "0")
    assert kinds() == {"shop_itemview": "v", "shop_itemmatview": "m"}
    assert q("SELECT indexname FROM pg_indexes WHERE tablename = 'shop_itemmatview'") == [
        ("shop_itemmatview_id_index",)
    ]


def test_w001_absent_with_our_commands(project):
    done = project.ok("check", "--database", "default")
    assert "django_pgviews_c.W001" not in done.stdout + done.stderr


def test_w001_when_another_app_overrides_migrate(project):
    done = project.django("check", "--database", "default", MIGPROJECT_OVERRIDE="1")
    output = done.stdout + done.stderr
    assert "django_pgviews_c.W001" in output
    assert "PGViewsAutodetector" in output
    # A warning, not an error.
    assert done.returncode == 0, output


VIEWS_SQL = (
    "SELECT c.relname::text, c.oid::bigint, pg_get_viewdef(c.oid), obj_description(c.oid, 'pg_class') "
    "FROM pg_class c WHERE c.relkind IN ('v', 'm') ORDER BY 1"
)


def _migrate_with_bad_sql(project, bad_sql: str) -> subprocess.CompletedProcess:
    project.ok("sync_pgviews", "-v", "0")
    before = q(VIEWS_SQL)
    project.models(
        BASE_MODELS.replace(
            'class ItemMatView(pg.MaterializedView):\n    sql = "SELECT id, name FROM shop_item"',
            f'class ItemMatView(pg.MaterializedView):\n    sql = "{bad_sql}"',
        )
    )
    try:
        done = project.django("migrate")
        assert done.returncode != 0
        assert q(VIEWS_SQL) == before  # every existing view as it was
        return done
    finally:
        project.models(BASE_MODELS)
        project.ok("migrate", "-v", "0")


def test_invalid_sql_fails_migrate_and_changes_nothing(project):
    done = _migrate_with_bad_sql(project, "SELECT id, name FROM shop_item WHERE nosuchcol")
    assert "CommandError: build shop.ItemMatView (public.shop_itemmatview)" in done.stderr
    assert 'column "nosuchcol" does not exist (SQLSTATE 42703)' in done.stderr
    assert "at line 1, column 38 of its SQL" in done.stderr
    assert "Traceback" not in done.stderr


def test_syntax_error_fails_migrate_naming_the_view(project):
    done = _migrate_with_bad_sql(project, "SELECT id, name FROM shop_item WHERE")
    assert "shop.ItemMatView" in done.stderr and "shop_itemmatview" in done.stderr
    assert "SQLSTATE 42601" in done.stderr
    assert "of its SQL" in done.stderr
    assert "Traceback" not in done.stderr


def test_dependency_cycle_fails_migrate_naming_the_path(project):
    project.ok("sync_pgviews", "-v", "0")
    before = q(VIEWS_SQL)
    cyclic = BASE_MODELS.replace(
        "class ItemView(pg.View):\n", 'class ItemView(pg.View):\n    dependencies = ["shop.ItemMatView"]\n'
    ).replace(
        "class ItemMatView(pg.MaterializedView):\n",
        'class ItemMatView(pg.MaterializedView):\n    dependencies = ["shop.ItemView"]\n',
    )
    assert cyclic.count("dependencies = ") == 2
    project.models(cyclic)
    try:
        done = project.django("migrate")
        assert done.returncode != 0, done.stdout
        output = done.stdout + done.stderr
        assert "cycle" in output.lower()
        # The path, both ways round being acceptable, with the start repeated at its end.
        assert (
            "shop.ItemView -> shop.ItemMatView -> shop.ItemView" in output
            or "shop.ItemMatView -> shop.ItemView -> shop.ItemMatView" in output
        ), output
        assert "Traceback" not in done.stderr
        assert q(VIEWS_SQL) == before
        # sync_pgviews refuses it too, the same way.
        done = project.django("sync_pgviews")
        assert done.returncode != 0
        assert "shop.ItemView" in done.stderr and "shop.ItemMatView" in done.stderr
        assert q(VIEWS_SQL) == before
    finally:
        project.models(BASE_MODELS)
        project.ok("migrate", "-v", "0")


def test_removed_view_gets_a_delete_operation(project):
    without_view = (
        BASE_MODELS.split("class ItemView(pg.View):")[0]
        + "class ItemMatView"
        + BASE_MODELS.split("class ItemMatView")[1]
    )
    assert "ItemView(" not in without_view
    project.models(without_view)
    done = project.ok("makemigrations", "shop", "-n", "drop_itemview")
    assert "Delete view ItemView" in done.stdout
    text = project.migration("0002_drop_itemview.py")
    assert "DeleteViewOperation(" in text
    assert "shop_itemview" in text
    assert "ItemMatView" not in text
    # A view of the user's own reads the one being deleted: migrate refuses, naming it, and
    # drops nothing (no CASCADE takes it away silently); the migration is not recorded.
    q("CREATE VIEW user_report AS SELECT count(*) AS n FROM shop_itemview")
    before = q(VIEWS_SQL)
    done = project.django("migrate", "shop", "-v", "1")
    assert done.returncode != 0, done.stdout
    assert "public.user_report (view not managed by django-pgviews-c, reads public.shop_itemview)" in (
        done.stderr
    )
    assert "Delete view ItemView" in done.stderr
    assert "Traceback" not in done.stderr
    assert q(VIEWS_SQL) == before
    assert q("SELECT count(*) FROM django_migrations WHERE app = 'shop' AND name = '0002_drop_itemview'") == [
        (0,)
    ]
    q("DROP VIEW user_report")
    done = project.ok("migrate", "shop", "-v", "1")
    assert q("SELECT count(*) FROM pg_views WHERE viewname = 'shop_itemview'") == [(0,)]
    assert kinds() == {"shop_itemmatview": "m"}


HAND_MODELS = """

class Other(pg.View):
    sql = "SELECT id, upper(name) AS name FROM shop_item"
    name = models.CharField(max_length=50)

    class Meta:
        managed = False
        db_table = "shop_other"
"""

HAND_MIGRATION = """from django.db import migrations

from django_pgviews_c.db.migrations.operations import DropView, RefreshMaterializedView, SyncView


class Migration(migrations.Migration):
    dependencies = [("shop", "0002_drop_itemview")]

    operations = [
        SyncView("shop.Other"),
        migrations.RunSQL("INSERT INTO shop_item (name) VALUES ('a'), ('b')", "DELETE FROM shop_item"),
        RefreshMaterializedView("shop.ItemMatView"),
    ]
"""

DROP_MIGRATION = """from django.db import migrations

from django_pgviews_c.db.migrations.operations import DropView


class Migration(migrations.Migration):
    dependencies = [("shop", "0003_by_hand")]

    operations = [DropView("shop.Other")]
"""


def test_hand_written_operations(project):
    # Views under migration control only: the post_migrate sync is off for these runs.
    project.models(project.path.joinpath("shop", "models.py").read_text() + HAND_MODELS)
    (project.path / "shop" / "migrations" / "0003_by_hand.py").write_text(HAND_MIGRATION)
    q("REFRESH MATERIALIZED VIEW shop_itemmatview WITH NO DATA")
    done = project.ok("migrate", "shop", "0003", MIGPROJECT_NO_SYNC="1")
    assert "0003_by_hand" in done.stdout
    assert kinds().get("shop_other") == "v"
    assert sorted(q("SELECT name FROM shop_other")) == [("A",), ("B",)]
    assert q("SELECT count(*) FROM shop_itemmatview") == [(2,)]

    (project.path / "shop" / "migrations" / "0004_drop_other.py").write_text(DROP_MIGRATION)
    # A view of the user's own reads it: DropView refuses, naming it, and drops nothing.
    q("CREATE VIEW user_other_report AS SELECT count(*) AS n FROM shop_other")
    done = project.django("migrate", "shop", "0004", MIGPROJECT_NO_SYNC="1")
    assert done.returncode != 0, done.stdout
    assert "public.user_other_report" in done.stderr and "Drop view shop.Other" in done.stderr
    assert "Traceback" not in done.stderr
    assert kinds().get("shop_other") == "v" and kinds().get("user_other_report") == "v"
    q("DROP VIEW user_other_report")
    project.ok("migrate", "shop", "0004", MIGPROJECT_NO_SYNC="1")
    assert "shop_other" not in kinds()

    # Backwards: DropView re-creates, SyncView drops.
    project.ok("migrate", "shop", "0003", MIGPROJECT_NO_SYNC="1")
    assert kinds().get("shop_other") == "v"
    project.ok("migrate", "shop", "0002", MIGPROJECT_NO_SYNC="1")
    assert "shop_other" not in kinds()
    assert q("SELECT count(*) FROM shop_item") == [(0,)]
    assert kinds().get("shop_itemmatview") == "m"


def test_sqlmigrate_shows_the_drop(project):
    done = project.ok("sqlmigrate", "shop", "0002")
    assert (
        'DROP VIEW IF EXISTS "shop_itemview";' in done.stdout
        or "DROP VIEW IF EXISTS shop_itemview;" in done.stdout
    )
    assert "CASCADE" not in done.stdout
