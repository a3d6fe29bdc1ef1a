import os

from django.db import models

from django_pgviews_c import view as pg


class Sale(models.Model):
    product = models.CharField(max_length=100)
    amount = models.IntegerField()


# SMOKE_VARIANT=2 declares a changed view (a column more), for checking a sync that rebuilds.
_SALES = ", count(*) AS sales" if os.environ.get("SMOKE_VARIANT") == "2" else ""


class ProductTotal(pg.View):
    sql = f"SELECT product, sum(amount) AS total{_SALES} FROM shop_sale GROUP BY product"
    product = models.CharField(max_length=100, primary_key=True)
    total = models.BigIntegerField()


class ProductTotalMat(pg.MaterializedView):
    dependencies = ["shop.ProductTotal"]
    concurrent_index = "product"
    sql = "SELECT product, total FROM shop_producttotal"
    product = models.CharField(max_length=100, primary_key=True)
    total = models.BigIntegerField()


class TopProduct(pg.MaterializedView):
    dependencies = ["shop.ProductTotalMat"]
    sql = "SELECT product, total FROM shop_producttotalmat ORDER BY total DESC, product LIMIT 1"
    product = models.CharField(max_length=100, primary_key=True)
    total = models.BigIntegerField()
