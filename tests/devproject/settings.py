"""A small project as a user has it: pytest-django with the plugin, the admin, a QuerySet view."""

import os

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ["DEVPROJ_DB"],
        "USER": os.environ.get("PGUSER", "postgres"),
        "PASSWORD": os.environ.get("PGPASSWORD", ""),
        "HOST": os.environ.get("PGHOST", "127.0.0.1"),
        "PORT": os.environ.get("PGPORT", "5432"),
    }
}
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django_pgviews_c",
    "shop",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
ROOT_URLCONF = "urls"
SECRET_KEY = "devproject"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
TEST_RUNNER = "django_pgviews_c.testing.PGViewsDiscoverRunner"

# Only the test helpers sync: the project syncs views in its deploy, not on migrate.
MATERIALIZED_VIEWS_DISABLE_SYNC_ON_MIGRATE = os.environ.get("DEVPROJ_SYNC_ON_MIGRATE") != "1"
PGVIEWS_TEST_WITH_DATA = os.environ.get("DEVPROJ_WITH_DATA", "1") == "1"
PGVIEWS_TEST_MATERIALIZED_AS_VIEWS = os.environ.get("DEVPROJ_AS_VIEWS") == "1"
