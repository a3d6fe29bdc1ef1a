from django.db import models

from django_pgviews_c import view as pg


class Booking(models.Model):
    room = models.CharField(max_length=20)
    nights = models.IntegerField()

    class Meta:
        app_label = "hotel"


class CurrentBooking(pg.ReadOnlyMaterializedView):
    sql = "SELECT id AS booking_id, room FROM hotel_booking WHERE nights > 0;"
    concurrent_index = "booking_id"
    booking_id = models.IntegerField(primary_key=True)
    room = models.CharField(max_length=20)

    class Meta:
        app_label = "hotel"
        managed = False
