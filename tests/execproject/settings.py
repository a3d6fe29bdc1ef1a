"""The test project's settings, for the command process tests: the "default" database's
entries overridden from the PGVIEWS_TEST_DEFAULT environment variable (JSON: a database that
does not exist, a port nobody listens on, OPTIONS), and settings from PGVIEWS_TEST_SETTINGS
(JSON: name -> value)."""

import json
import os

from tests.settings import *  # noqa: F403

DATABASES = {  # noqa: F405
    **DATABASES,  # noqa: F405
    "default": {**DATABASES["default"], **json.loads(os.environ.get("PGVIEWS_TEST_DEFAULT", "{}"))},  # noqa: F405
}
globals().update(json.loads(os.environ.get("PGVIEWS_TEST_SETTINGS", "{}")))
