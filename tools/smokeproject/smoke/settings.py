"""Settings of the smoke project (see manage.py)."""

import json
import os

SECRET_KEY = "smoke-only-not-secret"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = ["django.contrib.contenttypes", "django_pgviews_c", "shop"]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("SMOKE_DB", "pgviews_c_smoke"),
        "HOST": os.environ.get("PGHOST", "127.0.0.1"),
        "PORT": os.environ.get("PGPORT", "5432"),
        "USER": os.environ.get("PGUSER", "postgres"),
        "PASSWORD": os.environ.get("PGPASSWORD", ""),
        "OPTIONS": json.loads(os.environ.get("SMOKE_OPTIONS") or "{}"),
        **json.loads(os.environ.get("SMOKE_DB_SETTINGS") or "{}"),
    }
}
