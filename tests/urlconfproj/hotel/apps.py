from django.apps import AppConfig


class HotelConfig(AppConfig):
    name = "tests.urlconfproj.hotel"
    label = "hotel"
