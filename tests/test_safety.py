"""What a sync never does: drop what it does not manage, lose grants, owners or comments, lock
readers out while it builds, step on another sync, or leave half a change behind."""

from __future__ import annotations

import os
import re
import threading
import time

import pytest
from django.db import connection, connections

from django_pgviews_c.exceptions import ConnectionLostError, DatabaseError, DependantObjectError
from django_pgviews_c.sync import Syncer
from tests import psycopg_compat
from tests.helpers import ViewSet, catalog_rows, comment, execute, leftovers, oid, snapshot

ROLE = f"pgvc_reader_{os.getpid()}"
OWNER = f"pgvc_owner_{os.getpid()}"


@pytest.fixture
def src(db):
    execute("CREATE TABLE t_src (id int PRIMARY KEY, v int); INSERT INTO t_src VALUES (1, 10), (2, 20)")
    # Roles are created inside the test's transaction, so they go when it rolls back.
    execute(
        f"CREATE ROLE {ROLE} NOLOGIN; CREATE ROLE {OWNER} NOLOGIN; GRANT {OWNER} TO CURRENT_USER; "
        f"GRANT SELECT ON t_src TO {OWNER}"
    )


def _owner(rel: str) -> str:
    return catalog_rows(
        "SELECT pg_get_userbyid(relowner)::text FROM pg_class WHERE oid = to_regclass(%s)", [rel]
    )[0][0]


def _can_select(role: str, rel: str) -> bool:
    return catalog_rows("SELECT has_table_privilege(%s, %s, 'SELECT')", [role, rel])[0][0]


def _declare(
    vs: ViewSet, a_sql: str = "SELECT id, v FROM t_src", m_sql: str = "SELECT id, v FROM t_a"
) -> None:
    vs.view("A", a_sql)
    vs.view("M", m_sql, materialized=True, dependencies=("viewtest.A",), concurrent_index="id")


def _user_view(sql: str = "SELECT id, v FROM t_m") -> None:
    execute(f"CREATE VIEW user_u AS {sql}")
    execute(
        f"GRANT SELECT ON t_a, t_m TO {OWNER}; GRANT SELECT ON user_u TO {ROLE}; ALTER VIEW user_u OWNER TO {OWNER}; "
        f"COMMENT ON VIEW user_u IS 'the finance team''s view'"
    )


# ---- objects we do not manage -----------------------------------------------------------------


@pytest.mark.parametrize("change", ["matview_sql", "forced_view"])
def test_an_unmanaged_dependant_is_never_dropped(src, change):
    vs = ViewSet()
    _declare(vs)
    vs.sync()
    _user_view("SELECT id, v FROM t_m" if change == "matview_sql" else "SELECT id FROM t_a")
    before = snapshot()
    if change == "matview_sql":
        _declare(vs, m_sql="SELECT id, v * 2 AS v FROM t_a")
        options = {}
    else:
        _declare(vs, a_sql="SELECT id, v::bigint AS v FROM t_src")
        options = {"force": True}
    with pytest.raises(DependantObjectError) as info:
        vs.sync(**options)
    text = str(info.value)
    assert "public.user_u" in text
    assert ("viewtest.M" if change == "matview_sql" else "viewtest.A") in text
    assert "Nothing was changed" in text
    assert [row[:2] for row in info.value.details] == [("public", "user_u")]
    assert snapshot() == before


def test_restore_dependants_recreates_them_with_grants_owner_and_comment(src):
    vs = ViewSet()
    _declare(vs)
    vs.sync()
    _user_view()
    execute("INSERT INTO t_src VALUES (3, 30)")
    _declare(vs, m_sql="SELECT id, v * 2 AS v FROM t_a")
    r = vs.sync(restore_dependants=True)
    assert r.statuses["viewtest.M"] == "UPDATED"
    assert catalog_rows("SELECT sum(v) FROM user_u") == [(120,)]
    assert _can_select(ROLE, "user_u")
    assert _owner("user_u") == OWNER
    assert comment("user_u") == "the finance team's view"
    assert leftovers() == []
    assert vs.sync().actions == []


def test_a_dependant_that_cannot_be_restored_fails_the_whole_sync(src):
    vs = ViewSet()
    _declare(vs, m_sql="SELECT id FROM t_a")
    vs.sync()
    _user_view("SELECT id, v FROM t_a")  # reads A.v
    before = snapshot()
    _declare(vs, a_sql="SELECT id FROM t_src", m_sql="SELECT id FROM t_a")  # v goes away
    with pytest.raises(DatabaseError) as info:
        vs.sync(force=True, restore_dependants=True)
    assert info.value.view == "restore public.user_u"
    # PostgreSQL 15 says 'column t_a.v does not exist', 18 'column "v" does not exist'.
    assert re.search(r'column (t_a\.v|"v") does not exist', str(info.value)), str(info.value)
    assert info.value.sqlstate == "42703"
    assert snapshot() == before


# ---- what belongs to our own views ------------------------------------------------------------


@pytest.mark.parametrize("how", ["rebuild", "force"])
def test_grants_owner_and_comment_of_managed_views_survive(src, how):
    vs = ViewSet()
    _declare(vs)
    vs.sync()
    for rel, word in (("t_a", "VIEW"), ("t_m", "MATERIALIZED VIEW")):
        execute(
            f"GRANT SELECT ON {rel} TO {ROLE}; ALTER {word} {rel} OWNER TO {OWNER}; "
            f"COMMENT ON {word} {rel} IS 'kept: {rel}'"
        )
    vs.sync()  # adopts the hand-set comments
    if how == "rebuild":
        _declare(vs, m_sql="SELECT id, v + 1 AS v FROM t_a")
        r = vs.sync()
        assert r.statuses["viewtest.M"] == "UPDATED"
        rels = ["t_m"]
    else:
        _declare(vs, a_sql="SELECT id, v::bigint AS v FROM t_src")
        r = vs.sync(force=True)
        assert r.statuses["viewtest.A"] == "FORCED"
        rels = ["t_a", "t_m"]
    assert catalog_rows("SELECT sum(v) FROM t_m") == [(32,) if how == "rebuild" else (30,)]
    for rel in ("t_a", "t_m"):
        assert _can_select(ROLE, rel), rel
        assert _owner(rel) == OWNER, rel
        assert comment(rel).split("\n")[0] == f"kept: {rel}", rel
    assert rels  # at least one of them was re-created
    assert vs.sync().actions == []


# ---- other sessions ---------------------------------------------------------------------------


def _dbname() -> str:
    return connection.settings_dict["NAME"]


def _in_thread(target):
    """Run target on its own Django connection; returns (thread, outcome dict)."""
    outcome: dict = {}

    def run():
        try:
            outcome["result"] = target()
        except BaseException as exc:  # reported by the test
            outcome["error"] = exc
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def _wait_for_sleep(marker: str, timeout: float = 20) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = psycopg_compat.query(
            _dbname(),
            # This database only (the server is shared); the marker is in the statement, or in
            # the view it reads (then the backend is seen sleeping).
            "SELECT pid FROM pg_stat_activity WHERE (query LIKE %s OR wait_event = 'PgSleep') "
            "AND state = 'active' AND datname = current_database() "
            "AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
            [f"%{marker}%"],
        )
        if rows:
            return rows[0][0]
        time.sleep(0.05)
    raise AssertionError(f"no backend ever ran {marker}")


@pytest.fixture
def committed_src(transaction_db_cleanup):
    return None


@pytest.fixture
def transaction_db_cleanup(transactional_db):
    execute("CREATE TABLE t_src (id int PRIMARY KEY, v int); INSERT INTO t_src VALUES (1, 10), (2, 20)")
    yield
    execute("DROP TABLE IF EXISTS t_src CASCADE; DROP SCHEMA IF EXISTS _pgviews_c_build CASCADE")
    execute(
        "DO $$ DECLARE r record; BEGIN FOR r IN SELECT c.oid::regclass AS rel, c.relkind FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind IN ('v', 'm') "
        "AND c.relname LIKE 't\\_%' LOOP EXECUTE format('DROP %s IF EXISTS %s CASCADE', "
        "CASE r.relkind WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'VIEW' END, r.rel); END LOOP; END $$"
    )


def test_readers_are_not_blocked_while_a_changed_matview_is_built(committed_src):
    vs = ViewSet()
    _declare(vs)
    vs.sync()
    old = oid("t_m")
    _declare(vs, m_sql="SELECT id, v * 10 AS v FROM t_a, (SELECT pg_sleep(2) AS slow_build_marker) AS pause")
    thread, outcome = _in_thread(vs.sync)
    pid = _wait_for_sleep("slow_build_marker")
    held = psycopg_compat.query(
        _dbname(), "SELECT mode FROM pg_locks WHERE pid = %s AND relation = %s", [pid, old]
    )
    # Only ACCESS EXCLUSIVE conflicts with a reader's ACCESS SHARE.
    assert "AccessExclusiveLock" not in [m for (m,) in held], held
    rows = psycopg_compat.query(_dbname(), "SELECT sum(v) FROM t_m", setup="SET lock_timeout = '1s'")
    assert rows == [(30,)]
    still_building = psycopg_compat.query(
        _dbname(), "SELECT count(*) FROM pg_stat_activity WHERE pid = %s AND state = 'active'", [pid]
    )
    assert still_building == [(1,)]  # the read happened during the build
    thread.join(60)
    assert not thread.is_alive() and "error" not in outcome, outcome
    assert outcome["result"].statuses["viewtest.M"] == "UPDATED"
    assert catalog_rows("SELECT sum(v) FROM t_m") == [(300,)]
    assert leftovers() == []


def test_two_syncs_at_once_do_the_work_once(committed_src):
    vs = ViewSet()
    vs.view("A", "SELECT id, v FROM t_src")
    vs.view(
        "M",
        "SELECT id, v FROM t_a, (SELECT pg_sleep(1) AS two_syncs_marker) AS pause",
        materialized=True,
        dependencies=("viewtest.A",),
    )
    first, out1 = _in_thread(vs.sync)
    _wait_for_sleep("two_syncs_marker")
    second, out2 = _in_thread(vs.sync)
    first.join(60)
    second.join(60)
    assert "error" not in out1 and "error" not in out2, (out1, out2)
    r1, r2 = out1["result"], out2["result"]
    assert set(r1.statuses.values()) == {"CREATED"}
    assert set(r2.statuses.values()) == {"EXISTS"}
    assert r2.actions == []
    assert catalog_rows("SELECT count(*) FROM t_m") == [(2,)]


def test_a_lost_connection_leaves_every_view_as_it_was(committed_src):
    vs = ViewSet()
    _declare(vs)
    vs.view("N", "SELECT count(*)::int AS c FROM t_a", materialized=True, dependencies=("viewtest.A",))
    vs.sync()
    before = snapshot()
    _declare(vs, a_sql="SELECT id, v + 1 AS v FROM t_src, (SELECT pg_sleep(30) AS lost_marker) AS pause")
    thread, outcome = _in_thread(vs.sync)
    pid = _wait_for_sleep("lost_marker")
    psycopg_compat.query(_dbname(), "SELECT pg_terminate_backend(%s)", [pid])
    thread.join(60)
    assert not thread.is_alive()
    err = outcome.get("error")
    assert isinstance(err, ConnectionLostError), outcome
    assert "nothing was changed" in str(err)
    assert snapshot() == before
    assert leftovers() == []


def test_plan_changes_nothing_and_describes_locks(src):
    vs = ViewSet()
    _declare(vs)
    vs.sync()
    before = snapshot()
    _declare(vs, a_sql="SELECT id, v, 1 AS one FROM t_src", m_sql="SELECT id, v + 1 AS v FROM t_a")
    vs.view("NEW", "SELECT 1 AS id")
    chosen = [vs.models[n] for n in vs.models]
    r = Syncer(connection, chosen, {m._meta.label for m in chosen}).run(dry_run=True)
    assert snapshot() == before
    assert relkind_is_missing("t_new")
    assert r.actions and all(a.lock for a in r.actions)
    ops = {a.op for a in r.actions}
    assert "stamp" in ops
    assert any("ACCESS EXCLUSIVE" in a.lock for a in r.actions if a.phase == 1)
    assert all("ACCESS EXCLUSIVE" not in a.lock for a in r.actions if a.phase == 0)
    assert r.statuses["viewtest.NEW"] == "CREATED" and r.statuses["viewtest.M"] == "UPDATED"
    # The real run does what the plan said.
    real = vs.sync()
    assert [a.op for a in real.actions] == [a.op for a in r.actions]


def relkind_is_missing(rel: str) -> bool:
    return catalog_rows("SELECT to_regclass(%s) IS NULL", [rel])[0][0]
