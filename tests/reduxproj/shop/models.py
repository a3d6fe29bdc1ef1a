import importlib
import os

from django.conf import settings
from django.db import models

pg = importlib.import_module(settings.PGVIEWS_PKG + ".view")


class Sale(models.Model):
    product = models.CharField(max_length=50)
    amount = models.IntegerField()


class ProductTotal(pg.MaterializedView):
    """Traffic-Stops' pattern: created empty, filled by a scheduled refresh."""

    with_data = False
    concurrent_index = "product"
    sql = "SELECT product, sum(amount)::int AS total FROM shop_sale GROUP BY product"
    if os.environ.get("SHOP_CHANGED"):  # the switch commit also changes this view
        sql = "SELECT product, sum(amount)::int AS total, count(*)::int AS n FROM shop_sale GROUP BY product"

    product = models.CharField(max_length=50, primary_key=True)
    total = models.IntegerField()

    class Meta:
        managed = False
        db_table = "shop_producttotal"


class BigSale(pg.View):
    sql = "SELECT id, product, amount FROM shop_sale WHERE amount >= 10"

    product = models.CharField(max_length=50)
    amount = models.IntegerField()

    class Meta:
        managed = False
        db_table = "shop_bigsale"


class BigProduct(pg.MaterializedView):
    dependencies = ["shop.BigSale"]
    sql = "SELECT product, count(*)::int AS n FROM shop_bigsale GROUP BY product"

    product = models.CharField(max_length=50, primary_key=True)
    n = models.IntegerField()

    class Meta:
        managed = False
        db_table = "shop_bigproduct"
        indexes = [models.Index(fields=["n"], name="shop_bigproduct_n")]


class WindowTotal(pg.MaterializedView):
    """katago-server's pattern: the concurrent index declared once, on an abstract base whose
    subclasses differ only in their SQL."""

    concurrent_index = "product"

    product = models.CharField(max_length=50, primary_key=True)
    total = models.IntegerField()

    @staticmethod
    def make_sql(min_amount: int) -> str:
        return f"SELECT product, sum(amount)::int AS total FROM shop_sale WHERE amount >= {min_amount} GROUP BY product"

    class Meta:
        abstract = True


class LargeTotal(WindowTotal):
    sql = WindowTotal.make_sql(10)

    class Meta:
        managed = False
        db_table = "shop_largetotal"
