"""Run by tests/test_admin_browser.py in a subprocess: the Views page in Debian's Chromium,
driven by Playwright, against a live development server on the test database. Logs in, follows
the index's "Views" link, presses Refresh and sees the last-refresh time change."""

import os
import tempfile

import pytest
from django.contrib.auth.models import User
from stock.models import Sale, Totals

from django_pgviews_c.models import RefreshRecord

pytestmark = pytest.mark.django_db(transaction=True)

# Playwright's sync API runs its own event loop in this thread; the ORM calls made here between
# two browser steps are ordinary blocking calls, which Django refuses while a loop runs unless
# told. The server side (live_server's thread) is unaffected.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "1"

ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def test_log_in_open_views_press_refresh(live_server):
    from playwright.sync_api import expect, sync_playwright

    User.objects.create_superuser("admin", "admin@example.com", "admin")
    Sale.objects.bulk_create([Sale(item="pen", amount=2), Sale(item="ink", amount=5)])
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as p:
        # A fresh profile each run (Playwright passes it to Chromium as --user-data-dir).
        browser = p.chromium.launch_persistent_context(
            profile,
            executable_path=os.environ["CHROMIUM"],
            args=ARGS,
            headless=True,
            viewport={"width": 1400, "height": 720},
        )
        try:
            page = browser.new_page()
            page.set_default_timeout(30_000)
            page.goto(f"{live_server.url}/admin/")
            page.fill("#id_username", "admin")
            page.fill("#id_password", "admin")
            page.click("input[type=submit]")
            page.get_by_role("link", name="Views", exact=True).click()
            expect(page).to_have_title("Views | Django site admin")

            cell = page.locator('tr[data-view="stock.Totals"] td.last-refresh')
            before = cell.get_attribute("data-refreshed")
            before_text = cell.inner_text()
            assert not Totals.objects.exists()  # populated before the sales

            page.locator('tr[data-view="stock.Totals"] input[value="Refresh"]').click()
            success = page.locator("ul.messagelist li.success")
            expect(success).to_contain_text("Refreshed stock.Totals concurrently in ")

            record = RefreshRecord.objects.filter(view="stock.Totals", ok=True).latest("id")
            after = cell.get_attribute("data-refreshed")
            assert after != before and after == record.started_at.isoformat()
            assert cell.inner_text() != before_text
            assert record.started_at.strftime("%Y-%m-%d %H:%M:%S") in cell.inner_text()
            assert sorted(Totals.objects.values_list("item", "total")) == [("ink", 5), ("pen", 2)]

            # A stale view as well, for the picture: Counts was never refreshed by the app.
            expect(page.locator('tr[data-view="stock.Counts"] td.data')).to_contain_text("stale")
            page.screenshot(path=os.environ["SCREENSHOT"], full_page=True)
        finally:
            browser.close()
