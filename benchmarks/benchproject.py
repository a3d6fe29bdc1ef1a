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
