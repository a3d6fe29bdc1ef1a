"""Settings of the test project. The server comes from the standard PG* variables (set by
conftest.py through tools/pgserver.py); pytest-django creates test_<NAME> databases."""

import os
import sys
from pathlib import Path

if not any(k in os.environ for k in ("PGHOST", "DATABASE_URL")):
    # Run outside `make test`: find or start a server the same way.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
    import pgserver

    for key, value in pgserver._libpq_env(pgserver.ensure_server()).items():
        os.environ.setdefault(key, value)

# PGVIEWS_DB_SUFFIX keeps concurrent runs (several checkouts, one server) apart.
_SUFFIX = os.environ.get("PGVIEWS_DB_SUFFIX", "")


def _db(name, **extra):
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": name + _SUFFIX,
        "USER": os.environ.get("PGUSER", "postgres"),
        "PASSWORD": os.environ.get("PGPASSWORD", ""),
        "HOST": os.environ.get("PGHOST", "127.0.0.1"),
        "PORT": os.environ.get("PGPORT", "5432"),
        **extra,
    }


DATABASES = {
    "default": _db("pgviews_c"),
    "weather_db": _db("pgviews_c_weather"),
    "schema_db": _db("pgviews_c_schema", OPTIONS={"options": "-c search_path=other"}),
    # The default database again, through psycopg 3's server-side binding (Django's documented
    # OPTIONS): every statement the package sends must work with it (psycopg2 ignores it).
    "server_binding": _db("pgviews_c", OPTIONS={"server_side_binding": True}, TEST={"MIRROR": "default"}),
}
DATABASE_ROUTERS = ["tests.routers.DBRouter"]
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django_pgviews_c",
    "tests.viewtest",
    "tests.multidbtest",
    "tests.schemadbtest",
]
SECRET_KEY = "tests"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
LOGGING = {"version": 1, "disable_existing_loggers": False}
