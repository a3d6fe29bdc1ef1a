"""The app's own migrations match its models whatever the project's DEFAULT_AUTO_FIELD: Django's
startproject sets BigAutoField, and an app that leaves its id field to that setting makes
`makemigrations` write a migration into the installed package (and `migrate` say that the app
has changes not reflected in a migration). Each case is a real `python -m django` process with a
settings module of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SETTINGS = """
import os
DATABASES = {{"default": {{
    "ENGINE": "django.db.backends.postgresql",
    "NAME": "postgres",
    "USER": os.environ.get("PGUSER", "postgres"),
    "PASSWORD": os.environ.get("PGPASSWORD", ""),
    "HOST": os.environ.get("PGHOST", "127.0.0.1"),
    "PORT": os.environ.get("PGPORT", "5432"),
}}}}
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "django_pgviews_c"]
SECRET_KEY = "own-migrations"
USE_TZ = True
DEFAULT_AUTO_FIELD = "{auto_field}"
"""


@pytest.mark.parametrize("auto_field", ["django.db.models.BigAutoField", "django.db.models.AutoField"])
def test_no_migration_missing(tmp_path: Path, auto_field: str) -> None:
    (tmp_path / "ownsettings.py").write_text(SETTINGS.format(auto_field=auto_field))
    env = dict(
        os.environ,
        DJANGO_SETTINGS_MODULE="ownsettings",
        PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]),
    )
    done = subprocess.run(
        [sys.executable, "-m", "django", "makemigrations", "django_pgviews_c", "--check", "--dry-run"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"{auto_field}: {done.stdout}\n{done.stderr}"
    assert "No changes detected" in done.stdout
