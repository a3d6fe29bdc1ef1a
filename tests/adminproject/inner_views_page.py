"""Run by tests/test_admin_browser.py in a subprocess: the admin's Views page through Django's
test client, on the real test database. Each test commits (transaction=True), as a web request
does: refreshes and their history records are real."""

import re

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test import Client
from django.utils.timezone import localtime
from stock.models import Counts, Ratios, Sale, ShopNames, Totals

from django_pgviews_c.models import RefreshRecord
from django_pgviews_c.refresh import refresh_views

pytestmark = pytest.mark.django_db(transaction=True)

PAGE = "/admin/django_pgviews_c/databaseview/"


def staff(username, *codenames):
    user = User.objects.create_user(username, password="pw", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="django_pgviews_c", codename__in=codenames)
    )
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def refresher():
    return staff("refresher", "refresh_materializedview")


@pytest.fixture
def reader():
    return staff("reader", "view_refreshrecord")


@pytest.fixture
def sales():
    Sale.objects.bulk_create(
        [Sale(item="pen", amount=2), Sale(item="pen", amount=3), Sale(item="ink", amount=5)]
    )


def messages_of(response):
    return [str(m) for m in response.context["messages"]]


def row(content, label):
    found = re.search(rf'<tr data-view="{re.escape(label)}">(.*?)</tr>', content, re.S)
    assert found, f"no row for {label}"
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", found.group(1))).strip()


def test_the_index_links_the_views_page(refresher):
    content = refresher.get("/admin/").content.decode()
    assert f'href="{PAGE}"' in content and ">Views<" in content


def test_every_view_with_kind_state_and_freshness(refresher, sales):
    refresh_views([Totals, ShopNames])
    content = refresher.get(PAGE).content.decode()
    assert row(content, "stock.SaleView").startswith("stock.SaleView view in sync")
    totals = row(content, "stock.Totals")
    assert totals.startswith("stock.Totals materialized view in sync fresh")
    assert " 2 " in totals  # rows: pen and ink
    assert " s ago, plain" in totals
    assert 'value="Refresh"' in content
    assert totals.endswith(" KB")  # its size
    counts = row(content, "stock.Counts")
    assert "stale" in counts and "never" in counts  # no refresh recorded since its creation
    assert 'value="Refresh all stale (' in content


def test_refresh_button_refreshes_concurrently_and_records_it(refresher, sales):
    Sale.objects.create(item="button", amount=9)
    assert not Totals.objects.filter(item="button").exists()  # not refreshed since the sale
    before = RefreshRecord.objects.filter(view="stock.Totals").count()
    response = refresher.post(
        PAGE, {"action": "refresh", "view": "stock.Totals", "database": "default"}, follow=True
    )
    assert response.status_code == 200
    [message] = messages_of(response)
    assert message.startswith("Refreshed stock.Totals concurrently in ")
    assert sorted(Totals.objects.values_list("item", "total")) == [("button", 9), ("ink", 5), ("pen", 5)]
    record = RefreshRecord.objects.filter(view="stock.Totals").latest("id")
    assert RefreshRecord.objects.filter(view="stock.Totals").count() == before + 1
    assert record.ok and record.concurrent and record.rows == 3
    assert localtime(record.started_at).strftime("%Y-%m-%d %H:%M:%S") in row(
        response.content.decode(), "stock.Totals"
    )


def test_a_view_without_concurrent_index_is_refreshed_plainly(refresher, sales):
    response = refresher.post(PAGE, {"action": "refresh", "view": "stock.Counts"}, follow=True)
    assert messages_of(response)[0].startswith(
        "Refreshed stock.Counts (plain refresh: it has no concurrent_index)"
    )
    assert Counts.objects.get().n == 3


def test_a_failed_refresh_shows_the_servers_message_and_keeps_the_data(refresher, sales):
    refresh_views([Ratios])
    Sale.objects.create(item="free", amount=0)
    response = refresher.post(PAGE, {"action": "refresh", "view": "stock.Ratios"}, follow=True)
    [message] = messages_of(response)
    assert message.startswith("Refreshing stock.Ratios failed: division by zero")
    assert "22012" in message and message.endswith("It keeps the data it had.")
    assert Ratios.objects.count() == 3  # the data of the last refresh
    failed = RefreshRecord.objects.filter(view="stock.Ratios").latest("id")
    assert not failed.ok and failed.sqlstate == "22012"
    content = response.content.decode()
    assert "failed" in row(content, "stock.Ratios") and "division by zero" in row(content, "stock.Ratios")
    assert 'class="error"' in content


def test_refresh_all_stale_skips_the_fresh_ones(refresher, sales):
    refresh_views()  # every materialized view refreshed and recorded
    with connection.cursor() as cursor:  # a rewrite of the table: seen at once (new relfilenode)
        cursor.execute("TRUNCATE stock_sale")
    Sale.objects.create(item="pen", amount=7)
    shop_records = RefreshRecord.objects.filter(view="stock.ShopNames").count()
    response = refresher.post(PAGE, {"action": "refresh_stale", "database": "default"}, follow=True)
    got = messages_of(response)
    assert "Refreshed 3 stale materialized views: " in got[0]
    assert {"stock.Totals", "stock.Counts", "stock.Ratios"} == set(
        got[0].split(": ")[1].rstrip(".").split(", ")
    )
    assert "Skipped as fresh: stock.ShopNames." in got
    assert list(Totals.objects.values_list("item", "total")) == [("pen", 7)]
    assert RefreshRecord.objects.filter(view="stock.ShopNames").count() == shop_records  # not refreshed
    content = response.content.decode()
    assert 'value="Refresh all stale (0)" disabled' in content


def test_refresh_all_stale_with_one_stale_view_says_view(refresher, sales):
    refresh_views()
    with connection.cursor() as cursor:  # read by stock.ShopNames alone
        cursor.execute("TRUNCATE stock_shop")
    response = refresher.post(PAGE, {"action": "refresh_stale", "database": "default"}, follow=True)
    got = messages_of(response)
    assert got[0] == "Refreshed 1 stale materialized view: stock.ShopNames.", got
    assert "Skipped as fresh: stock.Counts, stock.Ratios, stock.Totals." in got, got


def test_a_reader_sees_the_page_read_only_and_cannot_post(reader):
    Sale.objects.create(item="read-only", amount=1)
    response = reader.get(PAGE)
    assert response.status_code == 200
    content = response.content.decode()
    assert "stock.Totals" in content and "Read-only" in content
    assert 'name="action"' not in content
    before = RefreshRecord.objects.count()
    assert reader.post(PAGE, {"action": "refresh", "view": "stock.Totals"}).status_code == 403
    assert RefreshRecord.objects.count() == before
    assert not Totals.objects.filter(item="read-only").exists()


def test_staff_without_either_permission_get_403():
    client = staff("outsider")
    assert client.get(PAGE).status_code == 403
    assert client.post(PAGE, {"action": "refresh_stale"}).status_code == 403


def test_a_post_without_csrf_token_is_refused():
    user = User.objects.create_superuser("boss", password="pw")
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.post(PAGE, {"action": "refresh_stale"}).status_code == 403
    assert not RefreshRecord.objects.exists()


def test_an_unknown_view_changes_nothing(refresher):
    response = refresher.post(PAGE, {"action": "refresh", "view": "stock.SaleView"}, follow=True)
    assert messages_of(response) == [
        "stock.SaleView is not a materialized view of database 'default': nothing was changed."
    ]
    assert not RefreshRecord.objects.exists()


def test_refresh_all_stale_reports_a_failure_and_refreshes_the_others(refresher, sales):
    refresh_views()
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE stock_sale")
    Sale.objects.bulk_create([Sale(item="pen", amount=4), Sale(item="free", amount=0)])
    response = refresher.post(PAGE, {"action": "refresh_stale", "database": "default"}, follow=True)
    got = messages_of(response)
    assert got[0] == "Refreshed 2 stale materialized views: stock.Counts, stock.Totals." or got[0] == (
        "Refreshed 2 stale materialized views: stock.Totals, stock.Counts."
    )
    [error] = [m for m in got if m.startswith("Refreshing ")]
    assert error.startswith("Refreshing stock.Ratios failed: division by zero") and "22012" in error
    assert Counts.objects.get().n == 2
    assert Ratios.objects.count() == 3  # the rows of its last successful refresh


def test_a_view_dropped_by_hand_is_shown_missing_and_never_synced(refresher):
    with connection.cursor() as cursor:
        cursor.execute("DROP MATERIALIZED VIEW stock_shopnames")
    content = refresher.get(PAGE).content.decode()
    shop = row(content, "stock.ShopNames")
    assert shop.startswith("stock.ShopNames materialized view missing")
    assert 'value="stock.ShopNames"' not in content  # no Refresh button for it
    response = refresher.post(PAGE, {"action": "refresh", "view": "stock.ShopNames"}, follow=True)
    assert messages_of(response)[0].startswith("Refreshing stock.ShopNames failed: ")
    with connection.cursor() as cursor:  # the page did not create it
        cursor.execute("SELECT count(*) FROM pg_matviews WHERE matviewname = 'stock_shopnames'")
        assert cursor.fetchone() == (0,)


def test_an_orphan_is_listed_without_a_refresh_button(refresher):
    # A materialized view carrying our fingerprint that no model declares (a model removed
    # from the code): its comment copied from one the sync made.
    with connection.cursor() as cursor:
        cursor.execute("CREATE MATERIALIZED VIEW stock_gone AS SELECT 1 AS x")
        cursor.execute("SELECT obj_description('stock_totals'::regclass, 'pg_class')")
        stamp = cursor.fetchone()[0]
        cursor.execute("COMMENT ON MATERIALIZED VIEW stock_gone IS %s", [stamp])
    try:
        content = refresher.get(PAGE).content.decode()
        gone = row(content, "public.stock_gone")
        assert gone.startswith("public.stock_gone materialized view orphaned") and "--prune" in gone
        assert 'value="public.stock_gone"' not in content
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP MATERIALIZED VIEW stock_gone")
