from django.db import models

from django_pgviews_c import view as pg


class Observation(models.Model):
    date = models.DateField()
    temperature = models.IntegerField()


class WeatherPinnedView(pg.View):
    sql = "SELECT * FROM multidbtest_observation"
    date = models.DateField()
    temperature = models.IntegerField()


class MonthlyObservation(pg.ReadOnlyMaterializedView):
    sql = """
        SELECT date_trunc('month', date)::date AS date, min(temperature) AS minimum,
               max(temperature) AS maximum, row_number() OVER () AS id
        FROM multidbtest_observation GROUP BY 1
    """
    concurrent_index = "date"
    date = models.DateField()
    minimum = models.IntegerField()
    maximum = models.IntegerField()
