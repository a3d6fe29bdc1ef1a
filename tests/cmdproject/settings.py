"""The test project's settings plus an alias, "spare", that no view belongs to (the router allows
no migrations there); it points at the default database. Used by tests/test_commands.py."""

from tests.settings import *  # noqa: F403

DATABASES = {**DATABASES, "spare": dict(DATABASES["default"])}  # noqa: F405
