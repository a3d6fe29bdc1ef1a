"""Settings for type checking only (make lint: mypy's Django plugin loads them). The package's
app and the contrib apps its models need, and no database: unlike tests.settings they never
look for a server, and django.setup() with them imports no module that needs the built C core
(django.contrib.admin would, through its autodiscovery of django_pgviews_c.admin)."""

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django_pgviews_c",
]
SECRET_KEY = "typing"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
