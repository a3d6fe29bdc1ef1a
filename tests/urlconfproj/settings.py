"""A project whose view models live in a module that only its URLconf imports, as in a hotel
reservations service: the app ``hotel`` has no models module; ``hotel/api/models.py`` declares the
booking table and a materialized view over it, and ``urls.py`` imports them. Used by
tests/test_urlconf_views.py."""

from tests.settings import _db

DATABASES = {"default": _db("pgviews_c_urlconf")}
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django_pgviews_c",
    "tests.urlconfproj.hotel.apps.HotelConfig",
]
ROOT_URLCONF = "tests.urlconfproj.urls"
SECRET_KEY = "tests"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
