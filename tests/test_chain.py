import pytest
from django.db import connection
from tests.helpers import ViewSet, catalog_rows

@pytest.mark.django_db
def test_changed_chain_is_built_beside_and_falls_back_when_sql_names_an_old_object():
    with connection.cursor() as c:
        c.execute("CREATE TABLE t_src(id int primary key, v int); INSERT INTO t_src SELECT g, g FROM generate_series(1,10) g")
    vs = ViewSet()
    vs.view("A", "SELECT id, v FROM t_src")
    vs.view("U", "SELECT id, v FROM t_a", dependencies=("viewtest.A",))
    vs.view("M", "SELECT sum(v) AS s FROM t_u", materialized=True, dependencies=("viewtest.U",))
    vs.view("N", "SELECT s * 2 AS s2 FROM t_m", materialized=True, dependencies=("viewtest.M",))
    vs.view("W", "SELECT s FROM t_m", dependencies=("viewtest.M",))
    vs.sync()
    assert catalog_rows("select s2 from t_n") == [(110,)]
    vs.view("A", "SELECT id, v * 10 AS v FROM t_src")
    r = vs.sync()
    ops = [a.op for a in r.actions]
    # New versions built in phase 0, swapped in phase 1; nothing refreshed in place.
    assert "refresh" not in ops and ops.count("build") == 4
    assert {a.op for a in r.actions if a.phase == 0} >= {"build", "chain_check"}
    assert catalog_rows("select s2 from t_n") == [(1100,)]
    assert catalog_rows("select s from t_w") == [(550,)]
    assert catalog_rows("select count(*) from pg_namespace where nspname='_pgviews_c_build'") == [(0,)]
    r = vs.sync(); assert r.actions == []
    # schema-qualified reference to an old object: falls back to in place
    vs.view("U", "SELECT id, v + 1 AS v FROM public.t_a", dependencies=("viewtest.A",))
    vs.view("A", "SELECT id, v * 100 AS v FROM t_src")
    r = vs.sync()
    assert "build" not in [a.op for a in r.actions]  # in place: U names public.t_a
    assert catalog_rows("select s2 from t_n") == [(2 * (5500 + 10),)]
    assert vs.sync().actions == []
