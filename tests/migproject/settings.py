"""A tiny project for the migration round trip (tests/test_migrations_roundtrip.py), run in
processes of its own against its own database (MIGPROJECT_DB)."""

import os

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ["MIGPROJECT_DB"],
        "USER": os.environ.get("PGUSER", "postgres"),
        "PASSWORD": os.environ.get("PGPASSWORD", ""),
        "HOST": os.environ.get("PGHOST", "127.0.0.1"),
        "PORT": os.environ.get("PGPORT", "5432"),
    }
}
# MIGPROJECT_OVERRIDE=1: an app whose own migrate command wins over ours (listed first).
INSTALLED_APPS = (["overrider"] if os.environ.get("MIGPROJECT_OVERRIDE") else []) + [
    "django.contrib.contenttypes",
    "django_pgviews_c",
    "shop",
]
MATERIALIZED_VIEWS_DISABLE_SYNC_ON_MIGRATE = bool(os.environ.get("MIGPROJECT_NO_SYNC"))
SECRET_KEY = "migproject"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
