"""Views with schedules, for the refresher, --stale/--due and Celery tests (own database)."""

import datetime as dt
import os

from django.db import models

from django_pgviews_c import view as pg


class Reading(models.Model):
    value = models.IntegerField()


class DueEveryTime(pg.MaterializedView):
    """Due as soon as it is stale."""

    refresh_interval = dt.timedelta(0)
    sql = "SELECT count(*) AS n, coalesce(sum(value), 0) AS total FROM freshapp_reading"
    n = models.IntegerField(primary_key=True)
    total = models.IntegerField()


class ReadsDue(pg.MaterializedView):
    """Reads DueEveryTime; due with it (interval 0)."""

    refresh_interval = dt.timedelta(0)
    dependencies = ["freshapp.DueEveryTime"]
    sql = "SELECT n * 2 AS double FROM freshapp_dueeverytime"
    double = models.IntegerField(primary_key=True)


class DueHourly(pg.MaterializedView):
    # FRESH_BAD_INTERVAL=1: fifteen meant as minutes, a value the system check E007 refuses.
    refresh_interval = 15 if os.environ.get("FRESH_BAD_INTERVAL") else dt.timedelta(hours=1)
    sql = "SELECT count(*) AS n FROM freshapp_reading"
    n = models.IntegerField(primary_key=True)


class Unscheduled(pg.MaterializedView):
    """No interval: refreshed by --stale or by hand only."""

    sql = "SELECT max(value) AS top FROM freshapp_reading"
    top = models.IntegerField(primary_key=True)
