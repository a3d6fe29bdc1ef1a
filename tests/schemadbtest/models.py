from django.db import models

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
