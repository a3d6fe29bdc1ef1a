"""A materialized view whose definition a deploy changes: DEFER_FACTOR in the environment
multiplies its values, as a new release of the code would. A plain view reads it. With a second
database "archive" (tests/deferproject/archive.py), a copy of it lives there, sent by its
get_view_connection: a --pending pass then spans two databases."""

import os

from django.conf import settings
from django.db import connections, models

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


if "archive" in settings.DATABASES:

    class ArchiveTotals(pg.MaterializedView):
        concurrent_index = "id"
        sql = f"SELECT id, value * {FACTOR} AS value FROM deferapp_reading"
        value = models.IntegerField()

        class Meta:
            managed = False
            db_table = "deferapp_archive_totals"

        @classmethod
        def get_view_connection(cls, using, restricted_mode=True):
            return connections["archive"]
