"""A one-database project with scheduled views (tests/freshapp), for command and worker
processes: pgviews_refresher, refresh_pgviews --stale/--due and the Celery task."""

import os

from tests.settings import _db

DATABASES = {"default": _db("pgviews_c_fresh")}
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django_pgviews_c",
    "tests.freshapp",
]
SECRET_KEY = "tests"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
PGVIEWS_REFRESHER_POLL = 0.5
CELERY_BROKER_URL = os.environ.get("PGVIEWS_CELERY_BROKER", "redis://127.0.0.1:6379/0")
CELERY_RESULT_BACKEND = CELERY_BROKER_URL
LOGGING = {"version": 1, "disable_existing_loggers": False}
# A test that holds a view's source table for as long as it needs a refresh kept waiting.
if os.environ.get("FRESH_REFRESH_LOCK_TIMEOUT_MS"):
    PGVIEWS_REFRESH_LOCK_TIMEOUT_MS = int(os.environ["FRESH_REFRESH_LOCK_TIMEOUT_MS"])
