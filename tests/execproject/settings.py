"""The test project's settings, with the "default" database's entries overridden from the
PGVIEWS_TEST_DEFAULT environment variable (JSON), for the command process tests of
tests/test_command_errors.py: a database that does not exist, a port nobody listens on."""

import json
import os

from tests.settings import *  # noqa: F403

DATABASES = {  # noqa: F405
    **DATABASES,  # noqa: F405
    "default": {**DATABASES["default"], **json.loads(os.environ.get("PGVIEWS_TEST_DEFAULT", "{}"))},  # noqa: F405
}
