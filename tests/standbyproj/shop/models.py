import os

from django.db import models

from django_pgviews_c import view as pg

# PGVIEWS_STANDBY_VARIANT=2 changes the totals' SQL, so that a sync rebuilds it beside and swaps.
_VARIANT = os.environ.get("PGVIEWS_STANDBY_VARIANT", "1")


class Sale(models.Model):
    product = models.IntegerField()
    amount = models.IntegerField()


class SaleTotals(pg.MaterializedView):
    concurrent_index = "product"
    sql = (
        "SELECT product, sum(amount)::bigint AS total, count(*)::bigint AS n FROM shop_sale GROUP BY product"
        if _VARIANT == "1"
        else "SELECT product, sum(amount)::bigint AS total, count(*)::bigint + 0 AS n FROM shop_sale GROUP BY product"
    )
    product = models.IntegerField(primary_key=True)
    total = models.BigIntegerField()
    n = models.BigIntegerField()

    class Meta:
        managed = False
        db_table = "shop_sale_totals"


class BigSales(pg.MaterializedView):
    """Another materialized view, which no step of the tests touches."""

    concurrent_index = "id"
    sql = "SELECT id, product, amount FROM shop_sale WHERE amount > 90"
    id = models.IntegerField(primary_key=True)
    product = models.IntegerField()
    amount = models.IntegerField()

    class Meta:
        managed = False
        db_table = "shop_big_sales"
