"""A project behind a hot standby: "default" is the primary, "replica" the standby that
tools/pgreplica.py started (ports in PGVIEWS_STANDBY_PRIMARY_PORT / _REPLICA_PORT); the router
sends reads to the replica and writes, migrations and views to the primary. Used by
tests/test_standby.py."""

import os

_NAME = "pgviews_standby" + os.environ.get("PGVIEWS_DB_SUFFIX", "")


def _db(port_variable, **extra):
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _NAME,
        "USER": "postgres",
        "PASSWORD": "",
        "HOST": "127.0.0.1",
        "PORT": os.environ.get(port_variable, "5432"),
        **extra,
    }


DATABASES = {
    "default": _db("PGVIEWS_STANDBY_PRIMARY_PORT"),
    "replica": _db("PGVIEWS_STANDBY_REPLICA_PORT", TEST={"MIRROR": "default"}),
}
DATABASE_ROUTERS = ["tests.standbyproj.routers.PrimaryReplicaRouter"]
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django_pgviews_c",
    "tests.standbyproj.shop",
]
SECRET_KEY = "tests"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
