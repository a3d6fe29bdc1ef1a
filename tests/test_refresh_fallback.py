"""Refresh corner cases: never-populated views refreshed concurrently, failures as RefreshError."""

import pytest
from django.db import connection

from django_pgviews_c.exceptions import RefreshError
from django_pgviews_c.refresh import refresh_views
from tests.viewtest import models as vm
from tests.viewtest.models import MaterializedRelatedViewWithIndex as M

TestModel = vm.TestModel


@pytest.mark.django_db
def test_concurrent_refresh_of_unpopulated_view_falls_back(cursor):
    cursor.execute("REFRESH MATERIALIZED VIEW viewtest_materializedrelatedviewwithindex WITH NO DATA")
    TestModel.objects.create(name="a")
    M.refresh(concurrently=True)
    assert M.objects.count() == 1
    cursor.execute("REFRESH MATERIALIZED VIEW viewtest_materializedrelatedviewwithindex WITH NO DATA")
    r = refresh_views([M], concurrently=True)
    assert r.refreshed == ["viewtest.MaterializedRelatedViewWithIndex"] and M.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_parallel_concurrent_refresh_of_unpopulated_view_falls_back():
    from tests.viewtest.models import MaterializedRelatedView as M2

    with connection.cursor() as c:
        c.execute("REFRESH MATERIALIZED VIEW viewtest_materializedrelatedviewwithindex WITH NO DATA")
    TestModel.objects.create(name="a")
    r = refresh_views([M, M2], concurrently=True, jobs=2)
    assert sorted(r.refreshed) == [
        "viewtest.MaterializedRelatedView",
        "viewtest.MaterializedRelatedViewWithIndex",
    ]
    assert M.objects.count() == 1


@pytest.mark.django_db
def test_serial_refresh_failure_is_a_refresh_error(cursor):
    cursor.execute("ALTER MATERIALIZED VIEW viewtest_materializedrelatedviewwithindex RENAME TO gone")
    with pytest.raises(RefreshError) as info:
        refresh_views([M])
    assert "viewtest.MaterializedRelatedViewWithIndex" in str(info.value) and "42P01" in str(info.value)
