"""The shop of tests/standbyproj on one database, connected as a restricted role: the login
user is PGVIEWS_ROLES_USER and, when PGVIEWS_ROLES_ASSUME is set, every session takes that role
(Django's ``assume_role``). Used by tests/test_roles.py against PostgreSQL 17+ (MAINTAIN)."""

import os

_OPTIONS = (
    {"assume_role": os.environ["PGVIEWS_ROLES_ASSUME"]} if os.environ.get("PGVIEWS_ROLES_ASSUME") else {}
)

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "pgviews_roles" + os.environ.get("PGVIEWS_DB_SUFFIX", ""),
        "USER": os.environ.get("PGVIEWS_ROLES_USER", "postgres"),
        "PASSWORD": "",
        "HOST": os.environ.get("PGHOST", "127.0.0.1"),
        "PORT": os.environ.get("PGPORT", "5432"),
        "OPTIONS": _OPTIONS,
    },
}
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django_pgviews_c",
    "tests.standbyproj.shop",
]
SECRET_KEY = "tests"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
