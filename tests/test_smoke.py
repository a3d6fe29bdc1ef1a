import pytest

from tests.helpers import ViewSet, relkind


@pytest.mark.django_db
def test_create_then_warm_sync():
    vs = ViewSet()
    vs.view("A", "SELECT 1 AS id, 'x'::text AS name")
    vs.view("B", "SELECT id FROM t_a", dependencies=("viewtest.A",))
    vs.view("M", "SELECT id FROM t_b", materialized=True, dependencies=("viewtest.B",), concurrent_index="id")
    r = vs.sync()
    assert r.statuses == {"viewtest.A": "CREATED", "viewtest.B": "CREATED", "viewtest.M": "CREATED"}
    assert relkind("t_m") == "m"
    r2 = vs.sync()
    assert r2.actions == []
    assert r2.catalog_queries == 1
    assert set(r2.statuses.values()) == {"EXISTS"}
