"""The set-up the single-database benchmarks share (along_bench.py, pending_bench.py): a Django
settings module for one app over one database of the server named by the PG* variables, that
database made afresh, and statements run as the server's administrator."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import psycopg


def admin(sql: str, dbname: str = "postgres") -> None:
    with psycopg.connect(dbname=dbname, autocommit=True) as c:
        c.execute(sql)


def matview(name: str, sql: str, db_table: str, *attributes: str) -> list[str]:
    """The lines of a materialized view model with one integer key g, attributes (lines such
    as "defer_rebuild = True") first."""
    return [
        f"class {name}(pg.MaterializedView):",
        *(f"    {line}" for line in attributes),
        f"    sql = {sql!r}",
        "    g = models.IntegerField(primary_key=True)",
        "    class Meta:",
        f"        db_table = {db_table!r}",
        "        managed = False",
    ]


def write_app(tmp: Path, app: str, classes: list[str]) -> None:
    """The app tmp/<app>: its models.py the lines of classes."""
    (tmp / app).mkdir()
    (tmp / app / "__init__.py").write_text("")
    head = ["from django.db import models", "from django_pgviews_c import view as pg", ""]
    (tmp / app / "models.py").write_text("\n".join(head + classes) + "\n")


def write_settings(tmp: Path, app: str, db: str) -> None:
    """tmp/<app>_settings.py: INSTALLED_APPS the package and app, DATABASES db."""
    settings = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": db,
        "USER": os.environ.get("PGUSER", "postgres"),
        "HOST": os.environ.get("PGHOST", "127.0.0.1"),
        "PORT": os.environ.get("PGPORT", "5432"),
    }
    (tmp / f"{app}_settings.py").write_text(
        f"DATABASES = {{'default': {settings!r}}}\n"
        f"INSTALLED_APPS = ['django.contrib.contenttypes', 'django_pgviews_c', {app!r}]\n"
        "SECRET_KEY = 'bench'\nUSE_TZ = True\nDEFAULT_AUTO_FIELD = 'django.db.models.AutoField'\n"
    )


def fresh_database(db: str, setup_sql: str) -> None:
    """db dropped (its sessions ended) and created again, then setup_sql run in it."""
    admin(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    admin(f'CREATE DATABASE "{db}"')
    admin(setup_sql, db)


def setup_django(tmp: Path, app: str) -> None:
    """django.setup() with tmp/<app>_settings.py."""
    sys.path.insert(0, str(tmp))
    os.environ["DJANGO_SETTINGS_MODULE"] = f"{app}_settings"
    import django

    django.setup()
