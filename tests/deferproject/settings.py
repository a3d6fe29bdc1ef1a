"""A one-database project whose materialized view defers its rebuilds (tests/deferapp), for
migrate, refresh_pgviews --pending, pgviews_status and clear_pgviews in real processes."""

from tests.settings import _db

DATABASES = {"default": _db("pgviews_c_defer")}
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django_pgviews_c",
    "tests.deferapp",
]
SECRET_KEY = "tests"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
PGVIEWS_DEFER_REBUILD = True
PGVIEWS_SWAP_RETRIES = 2
PGVIEWS_SWAP_LOCK_TIMEOUT_MS = 300
LOGGING = {"version": 1, "disable_existing_loggers": False}
