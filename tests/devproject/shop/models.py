import os

from django.db import models
from django.db.models import F

from django_pgviews_c import view as pg

# The second version of the project adds a column to ItemView.
VERSION = os.environ.get("DEVPROJ_VERSION", "1")


class Item(models.Model):
    name = models.CharField(max_length=50)
    price = models.IntegerField()


def _item_view():
    items = Item.objects.filter(price__gt=0)
    if VERSION == "2":
        return items.values("id", "name", "price", doubled=F("price") * 2)
    return items.values("id", "name", "price")


class ItemView(pg.View):
    sql = _item_view

    name = models.CharField(max_length=50)
    price = models.IntegerField()


class ItemTotals(pg.MaterializedView):
    dependencies = [ItemView]
    concurrent_index = "name"
    sql = "SELECT name, sum(price) AS total FROM shop_itemview GROUP BY name"

    name = models.CharField(max_length=50, primary_key=True)
    total = models.BigIntegerField()


if os.environ.get("DEVPROJ_EXTRA") == "1":  # a view added later (the migrations test)

    class ItemCount(pg.MaterializedView):
        concurrent_index = "id"
        sql = "SELECT 1 AS id, count(*) AS items FROM shop_item"

        items = models.BigIntegerField()
