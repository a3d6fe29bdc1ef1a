"""tests/freshproject with every query Django sends logged on stderr (DEBUG: the
django.db.backends logger), for a test that counts what a refresher process asks."""

from tests.freshproject.settings import *  # noqa: F403

DEBUG = True
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"django.db.backends": {"handlers": ["stderr"], "level": "DEBUG", "propagate": False}},
}
