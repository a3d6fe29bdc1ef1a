"""tests/deferproject with a second database, "archive", where deferapp.ArchiveTotals lives (its
get_view_connection sends it there): a refresh_pgviews --pending that spans two databases."""

from tests.deferproject.settings import *  # noqa: F403
from tests.settings import _db

DATABASES = {**DATABASES, "archive": _db("pgviews_c_defer_archive")}  # noqa: F405
