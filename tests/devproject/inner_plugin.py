"""Run by tests/test_testing.py in a subprocess; DEVPROJ_* variables say what to expect."""

import os

import pytest
from django.db import connection
from shop.models import Item, ItemTotals, ItemView

pytestmark = pytest.mark.django_db


def rows(sql, params=None):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def test_views_are_there_as_declared():
    kinds = dict(
        rows(
            "SELECT relname, relkind::text || CASE WHEN relispopulated THEN '+' ELSE '-' END "
            "FROM pg_class WHERE relname IN ('shop_itemview', 'shop_itemtotals')"
        )
    )
    columns = [
        c
        for (c,) in rows(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_name = 'shop_itemview' ORDER BY ordinal_position"
        )
    ]
    indexes = [i for (i,) in rows("SELECT indexname FROM pg_indexes WHERE tablename = 'shop_itemtotals'")]
    print(f"\nDEVPROJ kinds={sorted(kinds.items())} columns={columns} indexes={len(indexes)}")
    assert kinds["shop_itemview"] == "v+"
    if os.environ.get("DEVPROJ_AS_VIEWS") == "1":
        assert kinds["shop_itemtotals"] == "v+" and indexes == []
    else:
        populated = os.environ.get("DEVPROJ_WITH_DATA", "1") == "1"
        assert kinds["shop_itemtotals"] == ("m+" if populated else "m-")
        assert len(indexes) == 1  # the concurrent index
    expected = ["id", "name", "price"] + (["doubled"] if os.environ.get("DEVPROJ_VERSION") == "2" else [])
    assert columns == expected


def test_refresh_sees_the_tests_rows(refresh_materialized_views):
    Item.objects.create(name="pen", price=2)
    Item.objects.create(name="pen", price=3)
    assert list(ItemView.objects.values_list("name", "price").order_by("price")) == [("pen", 2), ("pen", 3)]
    refreshed = refresh_materialized_views(ItemTotals)
    if os.environ.get("DEVPROJ_AS_VIEWS") == "1":
        assert refreshed == []  # nothing to refresh: a plain view reads current data
        ItemTotals.refresh(concurrently=True)  # a no-op too
    else:
        assert refreshed == [ItemTotals]
    assert list(ItemTotals.objects.values_list("name", "total")) == [("pen", 5)]


def test_each_test_starts_clean():
    assert not Item.objects.exists()
    if os.environ.get("DEVPROJ_WITH_DATA", "1") == "1":
        # The refresh of the previous test was rolled back with its transaction.
        assert list(ItemTotals.objects.all()) == []
