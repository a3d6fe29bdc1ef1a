"""A materialized view whose definition a deploy changes: DEFER_FACTOR in the environment
multiplies its values, as a new release of the code would. A plain view reads it."""

import os

from django.db import models

from django_pgviews_c import view as pg

FACTOR = int(os.environ.get("DEFER_FACTOR", "1"))


class Reading(models.Model):
    value = models.IntegerField()


class Totals(pg.MaterializedView):
    concurrent_index = "id"
    sql = f"SELECT id, value * {FACTOR} AS value FROM deferapp_reading"
    value = models.IntegerField()

    class Meta:
        managed = False
        db_table = "deferapp_totals"


class Report(pg.View):
    dependencies = ["deferapp.Totals"]
    sql = "SELECT sum(value)::int AS total FROM deferapp_totals"
    total = models.IntegerField(primary_key=True)

    class Meta:
        managed = False
        db_table = "deferapp_report"
