"""What a sync never does: drop what it does not manage, lose grants, owners or comments, lock
readers out while it builds, step on another sync, or leave half a change behind."""

from __future__ import annotations

import os
import re

import pytest
from django.db import connection

from django_pgviews_c.exceptions import ConnectionLostError, DatabaseError, DependantObjectError
from django_pgviews_c.sync import ADVISORY_LOCK_KEY, Syncer
from tests import psycopg_compat
from tests.helpers import (
    Gate,
    ViewSet,
    advisory_waiters,
    catalog_rows,
    comment,
    execute,
    in_thread,
    leftovers,
    oid,
    snapshot,
    wait_for_advisory_waiter,
)

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


def _gate(key: int) -> Gate:
    """A lock the test holds: a build whose SQL includes gate.sql waits on it, mid-statement."""
    return Gate(_dbname(), key)


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
    with _gate(0x5AFE01) as gate:
        _declare(vs, m_sql=f"SELECT id, v * 10 AS v FROM t_a, {gate.sql}")
        thread, outcome = in_thread(vs.sync)
        pid = gate.waiter()  # the sync is inside its build, and stays there until the gate opens
        held = psycopg_compat.query(
            _dbname(), "SELECT mode FROM pg_locks WHERE pid = %s AND relation = %s", [pid, old]
        )
        # Only ACCESS EXCLUSIVE conflicts with a reader's ACCESS SHARE.
        assert "AccessExclusiveLock" not in [m for (m,) in held], held
        rows = psycopg_compat.query(_dbname(), "SELECT sum(v) FROM t_m", setup="SET lock_timeout = '1s'")
        assert rows == [(30,)]
        assert advisory_waiters(_dbname(), 0x5AFE01) == [pid]  # the read happened during the build
    thread.join(60)
    assert not thread.is_alive() and "error" not in outcome, outcome
    assert outcome["result"].statuses["viewtest.M"] == "UPDATED"
    assert catalog_rows("SELECT sum(v) FROM t_m") == [(300,)]
    assert leftovers() == []


def test_two_syncs_at_once_do_the_work_once(committed_src):
    vs = ViewSet()
    with _gate(0x5AFE02) as gate:
        vs.view("A", "SELECT id, v FROM t_src")
        vs.view("M", f"SELECT id, v FROM t_a, {gate.sql}", materialized=True, dependencies=("viewtest.A",))
        first, out1 = in_thread(vs.sync)
        gate.waiter()  # the first sync holds the sync lock and is inside its build
        second, out2 = in_thread(vs.sync)
        # The second one found work to do (nothing is committed yet) and waits for the first.
        wait_for_advisory_waiter(_dbname(), ADVISORY_LOCK_KEY)
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
    with _gate(0x5AFE03) as gate:
        _declare(vs, a_sql=f"SELECT id, v + 1 AS v FROM t_src, {gate.sql}")
        thread, outcome = in_thread(vs.sync)
        pid = gate.waiter()
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
