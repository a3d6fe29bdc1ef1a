"""Run by tests/test_testing.py with Django's test runner (TEST_RUNNER in settings)."""

from django.test import TestCase
from shop.models import Item, ItemTotals

from django_pgviews_c.testing import PGViewsTestMixin


class RunnerTests(PGViewsTestMixin, TestCase):
    def test_views_and_refresh_in_a_test_case(self):
        Item.objects.create(name="cup", price=4)
        self.assertEqual(self.refresh_materialized_views(ItemTotals), [ItemTotals])
        self.assertEqual(list(ItemTotals.objects.values_list("name", "total")), [("cup", 4)])
        ItemTotals.refresh(concurrently=True)
        self.assertEqual(ItemTotals.objects.get().total, 4)


class SecondCase(TestCase):
    """A second case, so that --parallel 2 runs two workers on two cloned databases."""

    def test_the_clone_has_the_views(self):
        Item.objects.create(name="mug", price=6)
        ItemTotals.refresh()
        self.assertEqual(list(ItemTotals.objects.values_list("name", "total")), [("mug", 6)])
