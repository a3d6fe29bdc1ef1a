from django.db import connections, models
from django.db.models import signals
from django.dispatch import receiver

from django_pgviews_c import view as pg


class SchemaObservation(models.Model):
    date = models.DateField()
    temperature = models.IntegerField()


class SchemaMonthlyObservationView(pg.View):
    sql = "SELECT date, temperature, id FROM schemadbtest_schemaobservation"
    date = models.DateField()
    temperature = models.IntegerField()


class SchemaMonthlyObservationMaterializedView(pg.MaterializedView):
    concurrent_index = "id"
    sql = "SELECT date, temperature, id FROM schemadbtest_schemaobservation"
    date = models.DateField()
    temperature = models.IntegerField()

    class Meta:
        managed = False
        indexes = [models.Index(fields=["date"])]


@receiver(signals.pre_migrate, dispatch_uid="tests.schemadbtest.create_other_schema")
def create_other_schema(sender, app_config, using, **kwargs):
    """schema_db's search_path is `other`: the schema must exist before its tables are created."""
    if using == "schema_db":
        with connections[using].cursor() as cursor:
            cursor.execute("CREATE SCHEMA IF NOT EXISTS other")
