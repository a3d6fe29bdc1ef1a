"""A one-database project whose materialized views take as long to refresh as a test makes them
(tests/slowapp), for the refresher and interrupted commands in real processes."""

from tests.settings import _db

DATABASES = {"default": _db("pgviews_c_slow")}
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django_pgviews_c",
    "tests.slowapp",
]
SECRET_KEY = "tests"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
LOGGING = {"version": 1, "disable_existing_loggers": False}
