"""Run by tests/test_admin.py in a subprocess: view models in the admin are read-only."""

import pytest
from django.contrib import admin
from shop.models import Item, ItemTotals, ItemView

from django_pgviews_c.admin import ViewAdmin

pytestmark = pytest.mark.django_db


@pytest.fixture
def item(refresh_materialized_views):
    item = Item.objects.create(name="pen", price=2)
    refresh_materialized_views(ItemTotals)
    return item


def test_view_models_get_view_admin_and_tables_do_not():
    assert isinstance(admin.site._registry[ItemView], ViewAdmin)
    assert isinstance(admin.site._registry[ItemTotals], ViewAdmin)
    assert admin.site._registry[ItemTotals].list_display == ["name", "total"]  # the user's admin kept
    assert not isinstance(admin.site._registry[Item], ViewAdmin)


def test_changelist_lists_rows_without_add_or_delete(admin_client, item):
    response = admin_client.get("/admin/shop/itemview/")
    assert response.status_code == 200
    content = response.content.decode()
    assert f"/admin/shop/itemview/{item.pk}/change/" in content  # the row, to look at
    assert "/admin/shop/itemview/add/" not in content
    assert "delete_selected" not in content
    # The table's own admin still offers both.
    content = admin_client.get("/admin/shop/item/").content.decode()
    assert "/admin/shop/item/add/" in content and "delete_selected" in content


def test_change_page_is_read_only(admin_client, item):
    response = admin_client.get(f"/admin/shop/itemview/{item.pk}/change/")
    assert response.status_code == 200
    assert 'name="_save"' not in response.content.decode()
    response = admin_client.post(f"/admin/shop/itemview/{item.pk}/change/", {"name": "x", "price": 1})
    assert response.status_code == 403


def test_add_and_delete_are_forbidden(admin_client, item):
    assert admin_client.get("/admin/shop/itemview/add/").status_code == 403
    assert admin_client.get(f"/admin/shop/itemview/{item.pk}/delete/").status_code == 403
    assert admin_client.post(f"/admin/shop/itemview/{item.pk}/delete/", {"post": "yes"}).status_code == 403
    assert admin_client.get("/admin/shop/itemtotals/pen/delete/").status_code == 403


def test_bulk_delete_is_refused_not_a_server_error(admin_client, item):
    response = admin_client.post(
        "/admin/shop/itemtotals/",
        {"action": "delete_selected", "_selected_action": ["pen"], "post": "yes"},
        follow=True,
    )
    # The action is not offered, so the POST changes nothing and shows the list again.
    assert response.status_code == 200
    assert "delete_selected" not in response.content.decode()
    assert ItemTotals.objects.filter(name="pen").exists()
