import pytest
from django.db import connection

from tests.helpers import ViewSet, catalog_rows


@pytest.mark.django_db
def test_changed_chain_is_built_beside_and_falls_back_when_sql_names_an_old_object():
    with connection.cursor() as c:
        c.execute(
            "CREATE TABLE t_src(id int primary key, v int);"
            "INSERT INTO t_src SELECT g, g FROM generate_series(1, 10) g"
        )
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
    r = vs.sync()
    assert r.actions == []
    # schema-qualified reference to an old object: falls back to in place
    vs.view("U", "SELECT id, v + 1 AS v FROM public.t_a", dependencies=("viewtest.A",))
    vs.view("A", "SELECT id, v * 100 AS v FROM t_src")
    r = vs.sync()
    assert "build" not in [a.op for a in r.actions]  # in place: U names public.t_a
    assert catalog_rows("select s2 from t_n") == [(2 * (5500 + 10),)]
    assert vs.sync().actions == []


@pytest.mark.django_db(transaction=True)
def test_readers_are_not_blocked_while_a_chain_is_rebuilt():
    import threading
    import time

    from django.db import connections

    from tests import psycopg_compat

    dbname = connection.settings_dict["NAME"]
    with connection.cursor() as c:
        c.execute("CREATE TABLE t_slow(id int primary key, v int); INSERT INTO t_slow VALUES (1, 1), (2, 2)")
    vs = ViewSet()
    vs.view("SA", "SELECT id, v FROM t_slow", db_table="t_sa")
    vs.view(
        "SM",
        "SELECT sum(v) AS s FROM t_sa",
        materialized=True,
        db_table="t_sm",
        dependencies=("viewtest.SA",),
    )
    try:
        vs.sync()
        # The new version takes two seconds to compute: the build runs in phase 0.
        vs.view("SA", "SELECT id, v * 10 AS v FROM t_slow, (SELECT pg_sleep(2)) AS pause", db_table="t_sa")
        errors = []

        def run():
            try:
                vs.sync()
            except Exception as exc:  # reported below
                errors.append(exc)
            finally:
                connections.close_all()

        worker = threading.Thread(target=run)
        worker.start()
        deadline = time.monotonic() + 20
        sleeping = []
        while time.monotonic() < deadline and not sleeping:
            sleeping = psycopg_compat.query(
                dbname,
                # This database only (the server is shared); the build's statement reads the
                # sleeping view, so the backend is seen sleeping rather than by its text.
                "SELECT pid FROM pg_stat_activity WHERE (query LIKE '%%pg_sleep(2)%%' "
                "OR wait_event = 'PgSleep') AND state = 'active' AND datname = current_database() "
                "AND pid <> pg_backend_pid()",
            )
            time.sleep(0.05)
        assert sleeping, "the build never started"
        pid = sleeping[0][0]
        # While the new version is built, the syncing backend holds no lock on the old view that
        # a reader would wait for, and a reader that refuses to wait gets its rows.
        held = psycopg_compat.query(
            dbname, "SELECT mode FROM pg_locks WHERE pid = %s AND relation = 't_sm'::regclass", [pid]
        )
        assert all(mode in ("AccessShareLock",) for (mode,) in held), held
        rows = psycopg_compat.query(dbname, "SELECT s FROM t_sm", setup="SET lock_timeout = '500ms'")
        assert rows == [(3,)]
        worker.join(30)
        assert not worker.is_alive() and not errors, errors
        assert catalog_rows("SELECT s FROM t_sm") == [(30,)]
    finally:
        with connection.cursor() as c:
            c.execute("DROP MATERIALIZED VIEW IF EXISTS t_sm; DROP VIEW IF EXISTS t_sa; DROP TABLE t_slow")
