"""The URLconf is what imports the view models (through the project's API views)."""

from tests.urlconfproj.hotel.api import models  # noqa: F401

urlpatterns: list = []
