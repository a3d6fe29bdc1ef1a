import os

from django.db import models

from django_pgviews_c import view as pg

# PGVIEWS_AUTOVAC_VARIANT=2 changes SwapCopy's SQL, so that a sync rebuilds it beside and swaps.
_VARIANT = os.environ.get("PGVIEWS_AUTOVAC_VARIANT", "1")
_COPY = "SELECT id, grp, val{} AS val FROM shop_reading"


class Reading(models.Model):
    grp = models.IntegerField()
    val = models.IntegerField()


class SwapCopy(pg.MaterializedView):
    """Swapped in by a sync while autovacuum holds a lock on it."""

    concurrent_index = "id"
    sql = _COPY.format("" if _VARIANT == "1" else " + 0")
    id = models.IntegerField(primary_key=True)
    grp = models.IntegerField()
    val = models.IntegerField()

    class Meta:
        managed = False
        db_table = "shop_swap_copy"


class PlainCopy(pg.MaterializedView):
    """Refreshed by Model.refresh() while autovacuum holds a lock on it."""

    concurrent_index = "id"
    sql = _COPY.format("")
    id = models.IntegerField(primary_key=True)
    grp = models.IntegerField()
    val = models.IntegerField()

    class Meta:
        managed = False
        db_table = "shop_plain_copy"


class LoopCopy(pg.MaterializedView):
    """Refreshed by refresh_pgviews --jobs 2 (the C loop) while autovacuum holds a lock on it."""

    concurrent_index = "id"
    sql = _COPY.format("")
    id = models.IntegerField(primary_key=True)
    grp = models.IntegerField()
    val = models.IntegerField()

    class Meta:
        managed = False
        db_table = "shop_loop_copy"
