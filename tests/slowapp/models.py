"""Materialized views whose refresh lasts as long as a test says: each sleeps, per row of
slowapp_gate, that row's seconds (an empty gate: no sleep, so migrate builds them at once)."""

import datetime as dt
import os

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


class Deferred(pg.MaterializedView):
    """Its rebuilds wait for refresh_pgviews --pending; SLOW_FACTOR in the environment changes
    its definition, as a deploy would."""

    defer_rebuild = True
    sql = f"SELECT id, seconds * {int(os.environ.get('SLOW_FACTOR', '1'))} AS v FROM slowapp_gate"
    v = models.FloatField()
