"""A project first built with django-pgviews-redux, then switched to django-pgviews-c by the
one-line change its README promises: PGVIEWS_PKG names the package the models import."""

import os

PGVIEWS_PKG = os.environ.get("PGVIEWS_PKG", "django_pgviews_c")

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ["REDUXPROJ_DB"],
        "USER": os.environ.get("PGUSER", "postgres"),
        "PASSWORD": os.environ.get("PGPASSWORD", ""),
        "HOST": os.environ.get("PGHOST", "127.0.0.1"),
        "PORT": os.environ.get("PGPORT", "5432"),
    }
}
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", PGVIEWS_PKG, "shop"]
SECRET_KEY = "reduxproj"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
# The sync's per-view log lines ("pgview shop.ProductTotal ...") on stderr, as a project that
# logs them sees them.
LOGGING = {
    "version": 1,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django_pgviews_c.sync_pgviews": {"handlers": ["console"], "level": "INFO"}},
}
