"""A project whose migrations change columns that views read (tests/test_migrate_aside.py), run
in processes of its own against its own database (TXPROJ_DB)."""

import os

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ["TXPROJ_DB"],
        "USER": os.environ.get("PGUSER", "postgres"),
        "PASSWORD": os.environ.get("PGPASSWORD", ""),
        "HOST": os.environ.get("PGHOST", "127.0.0.1"),
        "PORT": os.environ.get("PGPORT", "5432"),
    }
}
# TXPROJ_OVERRIDE=1: an app whose own migrate command wins over ours (listed first).
INSTALLED_APPS = (["overrider"] if os.environ.get("TXPROJ_OVERRIDE") else []) + ["django_pgviews_c", "shop"]
PGVIEWS_RESTORE_DEPENDANTS = bool(os.environ.get("TXPROJ_RESTORE"))
PGVIEWS_STRICT_COLUMNS = bool(os.environ.get("TXPROJ_STRICT_COLUMNS"))
# TXPROJ_LOCK_TIMEOUT_MS: the short lock_timeout (default 200), which the system checks wait at most.
if os.environ.get("TXPROJ_LOCK_TIMEOUT_MS"):
    PGVIEWS_LOCK_TIMEOUT_MS = int(os.environ["TXPROJ_LOCK_TIMEOUT_MS"])
SECRET_KEY = "txproj"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
# TXPROJ_LOG_QUERIES=1: every statement Django sends, on stderr (tests count what migrate sends).
if os.environ.get("TXPROJ_LOG_QUERIES"):
    DEBUG = True
    LOGGING = {
        "version": 1,
        "handlers": {"stderr": {"class": "logging.StreamHandler"}},
        "loggers": {"django.db.backends": {"handlers": ["stderr"], "level": "DEBUG"}},
    }
# TXPROJ_VIEWS_DB=name: the shop app (its tables and views) routed to the alias "views", that
# database, as a project whose router gives its views a database of their own.
if os.environ.get("TXPROJ_VIEWS_DB"):
    DATABASES["views"] = dict(DATABASES["default"], NAME=os.environ["TXPROJ_VIEWS_DB"])
    DATABASE_ROUTERS = ["shoprouter.ShopRouter"]
