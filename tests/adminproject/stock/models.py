from django.db import models

from django_pgviews_c import view as pg


class Sale(models.Model):
    item = models.CharField(max_length=50)
    amount = models.IntegerField()


class Shop(models.Model):
    name = models.CharField(max_length=50)


class SaleView(pg.View):
    sql = "SELECT item, sum(amount) AS total FROM stock_sale GROUP BY item"
    item = models.CharField(max_length=50, primary_key=True)
    total = models.BigIntegerField()


class Totals(pg.MaterializedView):
    """Refreshed concurrently (it has a concurrent_index)."""

    dependencies = ["stock.SaleView"]
    concurrent_index = "item"
    sql = "SELECT * FROM stock_saleview"
    item = models.CharField(max_length=50, primary_key=True)
    total = models.BigIntegerField()


class Counts(pg.MaterializedView):
    """No concurrent_index: refreshed plainly."""

    sql = "SELECT count(*) AS n FROM stock_sale"
    n = models.BigIntegerField(primary_key=True)


class Ratios(pg.MaterializedView):
    """Its refresh fails (division by zero) once a sale has amount 0."""

    sql = "SELECT id, 100 / amount AS ratio FROM stock_sale"
    id = models.IntegerField(primary_key=True)
    ratio = models.IntegerField()


class ShopNames(pg.MaterializedView):
    """Reads only stock_shop, which the tests never write: stays fresh."""

    sql = "SELECT id, name FROM stock_shop"
    id = models.IntegerField(primary_key=True)
    name = models.CharField(max_length=50)
