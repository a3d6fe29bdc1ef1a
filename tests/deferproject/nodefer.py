"""tests/deferproject with deferral turned off again (PGVIEWS_DEFER_REBUILD = False), as a user
who set it back would run it while a deferred rebuild still waits."""

from tests.deferproject.settings import *  # noqa: F403

PGVIEWS_DEFER_REBUILD = False
