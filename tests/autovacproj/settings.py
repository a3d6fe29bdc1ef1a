"""A project on the private server that tests/test_autovacuum.py starts (port in
PGVIEWS_AUTOVAC_PORT), where autovacuum runs every second."""

import os

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "pgviews_autovac" + os.environ.get("PGVIEWS_DB_SUFFIX", ""),
        "USER": "postgres",
        "PASSWORD": "",
        "HOST": "127.0.0.1",
        "PORT": os.environ.get("PGVIEWS_AUTOVAC_PORT", "5432"),
    }
}
INSTALLED_APPS = ["django_pgviews_c", "tests.autovacproj.shop"]
SECRET_KEY = "tests"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
