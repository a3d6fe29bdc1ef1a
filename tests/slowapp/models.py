"""Materialized views whose refresh lasts as long as a test says: each sleeps, per row of
slowapp_gate, that row's seconds (an empty gate: no sleep, so migrate builds them at once)."""

import datetime as dt

from django.db import models

from django_pgviews_c import view as pg


class Gate(models.Model):
    seconds = models.FloatField()


class SlowA(pg.MaterializedView):
    refresh_interval = dt.timedelta(0)
    sql = "SELECT g.id, (SELECT count(*) FROM (SELECT pg_sleep(g.seconds)) s) AS slept FROM slowapp_gate g"
    slept = models.IntegerField()


class SlowB(pg.MaterializedView):
    refresh_interval = dt.timedelta(0)
    sql = "SELECT g.id, (SELECT count(*) FROM (SELECT pg_sleep(g.seconds)) s) AS slept FROM slowapp_gate g"
    slept = models.IntegerField()
