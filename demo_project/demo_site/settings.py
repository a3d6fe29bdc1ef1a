"""Settings of the demo project. The database server comes from the libpq environment
(PGHOST, PGPORT, PGUSER, PGPASSWORD), as `tools/pgserver.py --env` exports it; the database
is "pgviews_c_demo", which `manage.py demo` creates when it is missing."""

import os

SECRET_KEY = "demo-only-not-secret"
DEBUG = False
ALLOWED_HOSTS: list[str] = []
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.postgres",
    "django_pgviews_c",
    "newsletter",
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("PGVIEWS_DEMO_DB", "pgviews_c_demo"),
        "HOST": os.environ.get("PGHOST", "127.0.0.1"),
        "PORT": os.environ.get("PGPORT", "5432"),
        "USER": os.environ.get("PGUSER", "postgres"),
        "PASSWORD": os.environ.get("PGPASSWORD", ""),
    }
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    # django_pgviews_c logs each view it creates or refreshes at INFO; the demo prints its own
    # report, so only warnings are shown.
    "loggers": {"django_pgviews_c": {"handlers": ["console"], "level": "WARNING"}},
}
