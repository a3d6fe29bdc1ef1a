"""The hotel project with a ROOT_URLCONF that does not import."""

from tests.urlconfproj.settings import *  # noqa: F403

ROOT_URLCONF = "tests.urlconfproj.nosuch_urls"
