from django.db import models

from django_pgviews_c import view as pg


class Item(models.Model):
    price = models.IntegerField()
    name = models.CharField(max_length=20)


class Cheap(pg.View):
    sql = "SELECT id, price, name FROM shop_item WHERE price < 10"
    price = models.IntegerField()

    class Meta:
        managed = False


class CheapCount(pg.MaterializedView):
    dependencies = ["shop.Cheap"]
    concurrent_index = "n"
    sql = "SELECT count(*) AS n, sum(price) AS total FROM shop_cheap"

    class Meta:
        managed = False
