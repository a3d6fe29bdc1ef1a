"""Migrations that change columns views read: the views are set aside and come back."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests import psycopg_compat

HERE = Path(__file__).parent


def run(project: Path, *args: str, db: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": f"{project}{os.pathsep}{HERE.parent}",
        "DJANGO_SETTINGS_MODULE": "settings",
        "ASIDE_DB": db,
    }
    return subprocess.run(
        [sys.executable, "-m", "django", *args], env=env, capture_output=True, text=True, timeout=300
    )


def sql(db: str, query: str) -> list[tuple]:
    return psycopg_compat.query(db, query)


@pytest.fixture
def project(tmp_path):
    dest = tmp_path / "proj"
    shutil.copytree(HERE / "asideproj", dest)
    (dest / "shop" / "migrations").mkdir()
    (dest / "shop" / "migrations" / "__init__.py").write_text("")
    db = "pgvc_aside" + os.environ.get("PGVIEWS_DB_SUFFIX", "")
    psycopg_compat.recreate_database(db)
    r = run(dest, "makemigrations", "shop", db=db)
    assert r.returncode == 0, r.stderr
    r = run(dest, "migrate", db=db)
    assert r.returncode == 0, r.stderr
    sql(db, "INSERT INTO shop_item (price, name) VALUES (5, 'a'), (7, 'b'), (20, 'c')")
    assert run(dest, "refresh_pgviews", db=db).returncode == 0
    yield dest, db
    psycopg_compat.drop_database(db)


def change_price_type(project: Path) -> None:
    models = project / "shop" / "models.py"
    models.write_text(
        models.read_text().replace(
            "price = models.IntegerField()\n    name", "price = models.BigIntegerField()\n    name"
        )
    )


def test_alter_column_read_by_views_just_works(project):
    dest, db = project
    change_price_type(dest)
    assert run(dest, "makemigrations", "shop", db=db).returncode == 0
    r = run(dest, "migrate", db=db)
    assert r.returncode == 0, r.stderr
    assert "Set aside 2 views" in r.stdout
    # Back, populated, and reading the new column type.
    assert sql(db, "SELECT n, total FROM shop_cheapcount") == [(2, 12)]
    assert sql(
        db,
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = 'shop_cheap'::regclass AND attname = 'price'",
    ) == [("bigint",)]


def test_failed_migration_puts_views_back(project):
    dest, db = project
    (dest / "shop" / "migrations" / "0002_fail.py").write_text(
        "from django.db import migrations, models\n"
        "class Migration(migrations.Migration):\n"
        "    dependencies = [('shop', '0001_initial')]\n"
        "    operations = [migrations.AlterField('item', 'name', models.CharField(max_length=50)),\n"
        "                  migrations.RunSQL('SELECT 1/0')]\n"
    )
    r = run(dest, "migrate", db=db)
    assert r.returncode != 0
    assert "division by zero" in r.stderr
    assert sql(db, "SELECT n, total FROM shop_cheapcount") == [(2, 12)]
    assert sql(db, "SELECT count(*) FROM pg_views WHERE viewname = 'shop_cheap'") == [(1,)]
