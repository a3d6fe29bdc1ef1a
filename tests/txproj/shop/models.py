from django.db import models

from django_pgviews_c import view as pg


class Item(models.Model):
    price = models.IntegerField()
    name = models.CharField(max_length=20)


class Cheap(pg.View):
    sql = """
        SELECT id, price, name
        FROM shop_item
        WHERE price < 10
    """
    price = models.IntegerField()
    name = models.CharField(max_length=20)

    class Meta:
        managed = False


class CheapCount(pg.MaterializedView):
    """Created empty; the project refreshes it (as a with_data = False view is used)."""

    dependencies = ["shop.Cheap"]
    with_data = False
    concurrent_index = "n"
    sql = "SELECT count(*) AS n, sum(price) AS total FROM shop_cheap"
    n = models.IntegerField(primary_key=True)
    total = models.IntegerField()

    class Meta:
        managed = False


class Names(pg.MaterializedView):
    """Reads only the name: a change of the price leaves it alone."""

    sql = "SELECT id, name FROM shop_item"
    name = models.CharField(max_length=20)

    class Meta:
        managed = False
