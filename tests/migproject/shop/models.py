from django.db import models

from django_pgviews_c import view as pg


class Item(models.Model):
    name = models.CharField(max_length=50)


class ItemView(pg.View):
    sql = "SELECT id, name FROM shop_item"
    name = models.CharField(max_length=50)


class ItemMatView(pg.MaterializedView):
    sql = "SELECT id, name FROM shop_item"
    concurrent_index = "id"
    name = models.CharField(max_length=50)
