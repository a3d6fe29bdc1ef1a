"""makemigrations names view migrations after what they do; sqlmigrate prints their SQL.
A real project (tests/devproject) in processes of its own."""

from __future__ import annotations

from django.db.migrations import Migration

from django_pgviews_c.db.migrations.operations import (
    DeleteViewOperation,
    DropView,
    RefreshMaterializedView,
    RegisterViewOperation,
    SyncView,
)
from tests.test_testing import devproject, run  # noqa: F401  (the project fixture)

BY_HAND = """from django.db import migrations

from django_pgviews_c.db.migrations.operations import RefreshMaterializedView, SyncView


class Migration(migrations.Migration):
    dependencies = [("shop", "{previous}")]
    operations = [SyncView("shop.ItemCount"), RefreshMaterializedView("shop.ItemCount", concurrently=True)]
"""


def django(project, db, *args, **env):
    done = run(project, db, "-m", "django", *args, DJANGO_SETTINGS_MODULE="settings", **env)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def migrations(project) -> list[str]:
    return sorted(p.name for p in (project / "shop" / "migrations").glob("0*.py"))


def test_makemigrations_names_and_sqlmigrate_prints_the_sql(devproject):  # noqa: F811
    project, db = devproject
    from tests import psycopg_compat

    psycopg_compat.recreate_database(db)
    (project / "shop" / "migrations").mkdir()
    (project / "shop" / "migrations" / "__init__.py").write_text("")
    on = {"DEVPROJ_SYNC_ON_MIGRATE": "1"}
    django(project, db, "makemigrations", "shop", **on)
    django(project, db, "migrate", **on)
    assert migrations(project) == ["0001_initial.py"]

    # A view added: the migration is named after it.
    django(project, db, "makemigrations", "shop", DEVPROJ_EXTRA="1", **on)
    assert migrations(project) == ["0001_initial.py", "0002_itemcount.py"]
    out = django(project, db, "sqlmigrate", "shop", "0002", DEVPROJ_EXTRA="1", **on)
    assert "-- Register materialized view ItemCount" in out
    assert "-- shop_itemcount is created or updated by the sync that follows migrate" in out
    assert "CANNOT BE WRITTEN AS SQL" not in out

    # Hand-written operations print the statements they would run on the database as it is.
    (project / "shop" / "migrations" / "0003_by_hand.py").write_text(
        BY_HAND.format(previous="0002_itemcount")
    )
    out = django(project, db, "sqlmigrate", "shop", "0003", DEVPROJ_EXTRA="1", **on)
    assert "-- Create or update view shop.ItemCount" in out
    assert (
        "CREATE MATERIALIZED VIEW public.shop_itemcount AS\nSELECT 1 AS id, count(*) AS items FROM shop_item"
        in out
    )
    assert "REFRESH MATERIALIZED VIEW CONCURRENTLY shop_itemcount;" in out
    assert "CANNOT BE WRITTEN AS SQL" not in out
    # sqlmigrate ran nothing.
    assert psycopg_compat.query(db, "SELECT to_regclass('shop_itemcount')") == [(None,)]

    # The view removed: the migration says so, and prints its DROP.
    django(project, db, "migrate", DEVPROJ_EXTRA="1", **on)
    django(project, db, "makemigrations", "shop", **on)
    assert migrations(project)[-1] == "0004_delete_itemcount.py"
    out = django(project, db, "sqlmigrate", "shop", "0004", **on)
    assert "DROP MATERIALIZED VIEW IF EXISTS shop_itemcount;" in out  # never CASCADE


def test_name_fragments_of_every_view_operation():
    def name(*operations):
        migration = Migration("0002_x", "shop")
        migration.operations = list(operations)
        return migration.suggest_name()

    assert name(RegisterViewOperation("EventView", False, "ev")) == "eventview"
    assert name(DeleteViewOperation("EventView", False, "ev")) == "delete_eventview"
    assert name(SyncView("shop.EventView"), RefreshMaterializedView("shop.EventMat")) == (
        "sync_eventview_refresh_eventmat"
    )
    assert name(DropView("shop.EventView")) == "drop_eventview"
