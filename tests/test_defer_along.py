"""Views that wait along with a deferred rebuild: when A's rebuild is deferred, a materialized
view B that reads A (directly, or through plain views) and does not change itself gets a waiting
version of its own at the sync, reading A's (and a plain view between them gets one too), so
refresh_pgviews --pending populates B's after A's and the swap renames and drops only: B's query
never runs under the swap's locks."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from django_pgviews_c import _core
from django_pgviews_c.models import RefreshRecord
from django_pgviews_c.pending import complete_pending, pending_models
from tests import psycopg_compat
from tests.helpers import Gate, ViewSet, catalog_rows, comment, execute, leftovers, oid, populated, rule_reads

PENDING_A = _core.derived_name("t_a", "_pgvc_pending")
PENDING_V = _core.derived_name("t_v", "_pgvc_pending")
PENDING_B = _core.derived_name("t_b", "_pgvc_pending")
GATE_KEY = 0x7067_7663_6464
READER_APP = "pgvc-test-defer-along-reader"


@pytest.fixture
def src(transactional_db):
    execute(
        "CREATE TABLE t_src (id int PRIMARY KEY, v int); INSERT INTO t_src VALUES (1, 10), (2, 20);"
        "CREATE SEQUENCE t_b_runs"
    )
    yield
    execute("DROP TABLE IF EXISTS t_src CASCADE; DROP SEQUENCE IF EXISTS t_b_runs")


def _declare(vs: ViewSet, factor: int, b_sql: str = "SELECT id, v + 1 AS v FROM t_v") -> None:
    """A deferred matview A; a plain view V over it; a matview B over V that does not defer
    itself; a plain view R over A that nothing materialized reads."""
    vs.view("A", f"SELECT id, v * {factor} AS v FROM t_src", materialized=True,
            concurrent_index="id", defer_rebuild=True)  # fmt: skip
    vs.view("V", "SELECT id, v FROM t_a", dependencies=("viewtest.A",))
    vs.view("B", b_sql, materialized=True, concurrent_index="id", dependencies=("viewtest.V",))
    vs.view("R", "SELECT sum(v)::int AS total FROM t_a", dependencies=("viewtest.A",))


def _complete(vs: ViewSet, **kw):
    return complete_pending(models=list(vs.models.values()), **kw)


def test_a_matview_over_a_plain_view_over_a_deferred_one_waits_along(src):
    vs = ViewSet()
    _declare(vs, 1)
    vs.sync()
    before = {t: oid(t) for t in ("t_a", "t_v", "t_b", "t_r")}
    _declare(vs, 2)
    r = vs.sync()
    assert {label: r.states[f"viewtest.{label}"] for label in "AVBR"} == {
        "A": "pending rebuild",
        "V": "pending rebuild",
        "B": "pending rebuild",
        "R": "in sync",  # a plain view nothing waiting reads: re-created in the swap
    }, r.reasons
    assert "reads viewtest.V, whose rebuild waits" in r.reasons["viewtest.B"], r.reasons
    assert {t: oid(t) for t in before} == before
    assert rule_reads(PENDING_B) == [PENDING_V] and rule_reads(PENDING_V) == [PENDING_A]
    assert rule_reads("t_b") == ["t_v"] and rule_reads("t_v") == ["t_a"]
    assert not populated(PENDING_B) and "pending=1" in comment(PENDING_V)
    assert catalog_rows("SELECT id, v FROM t_b ORDER BY id") == [(1, 11), (2, 21)]
    assert leftovers() == []
    # pending_models names B (and V) as waiting too.
    assert {m._meta.label for m in pending_models(models=list(vs.models.values()))} == {
        "viewtest.A",
        "viewtest.V",
        "viewtest.B",
    }
    assert vs.sync().actions == []  # a warm sync keeps the waiting versions
    done = _complete(vs)
    assert sorted(done.swapped) == ["viewtest.A", "viewtest.B", "viewtest.V"], done
    assert not done.failed, done
    assert catalog_rows("SELECT id, v FROM t_b ORDER BY id") == [(1, 21), (2, 41)]
    assert catalog_rows("SELECT total FROM t_r") == [(60,)]
    assert rule_reads("t_b") == ["t_v"] and rule_reads("t_v") == ["t_a"]
    assert all(oid(p) is None for p in (PENDING_A, PENDING_V, PENDING_B))
    assert leftovers() == []
    assert RefreshRecord.objects.filter(view="viewtest.B", ok=True, plain_reason="pending rebuild").exists()
    assert not RefreshRecord.objects.filter(view="viewtest.V").exists()  # a plain view: no history
    r = vs.sync()
    assert r.actions == [] and set(r.states.values()) == {"in sync"}, r.reasons


def test_a_failure_to_populate_a_leaves_b_unpopulated_both_named_old_ones_serving(src):
    vs = ViewSet()
    _declare(vs, 1)
    vs.sync()
    before = {t: oid(t) for t in ("t_a", "t_v", "t_b")}
    vs.view("A", "SELECT id, 100 / v AS v FROM t_src", materialized=True, concurrent_index="id",
            defer_rebuild=True)  # fmt: skip
    vs.sync()
    execute("INSERT INTO t_src VALUES (3, 0)")  # A's new version divides by it
    try:
        for jobs in (1, 2):
            done = _complete(vs, jobs=jobs)
            assert done.swapped == [], done
            assert "division by zero" in done.failed["viewtest.A"], done
            blocked = "its new version was not populated: it reads the new version of viewtest.A, which was not populated"
            assert done.failed["viewtest.B"] == blocked and done.failed["viewtest.V"] == blocked, done
            assert {t: oid(t) for t in before} == before and not populated(PENDING_B)
            assert catalog_rows("SELECT id, v FROM t_b ORDER BY id") == [(1, 11), (2, 21)]
        failed = RefreshRecord.objects.filter(view="viewtest.B", ok=False).first()
        assert failed is not None and "viewtest.A" in failed.message
    finally:
        execute("DELETE FROM t_src WHERE id = 3")
    done = _complete(vs, jobs=2)
    assert sorted(done.swapped) == ["viewtest.A", "viewtest.B", "viewtest.V"], done
    assert catalog_rows("SELECT id, v FROM t_b ORDER BY id") == [(1, 11), (2, 6)]


def test_when_a_stops_waiting_b_stops_too(src):
    """A revert of A drops its waiting version; B (and V) no longer wait and theirs go too."""
    vs = ViewSet()
    _declare(vs, 1)
    vs.sync()
    _declare(vs, 2)
    vs.sync()
    _declare(vs, 1)
    r = vs.sync()
    assert set(r.states.values()) == {"in sync"}, r.reasons
    assert all(oid(p) is None for p in (PENDING_A, PENDING_V, PENDING_B))
    assert vs.sync().actions == []


def _read_once(dbname: str) -> list[tuple]:
    """A reader of B and A in its own session, as a report would be, that fails rather than
    waits when either is locked (lock_timeout; a wait would be the failure)."""
    conn = psycopg_compat._connect(dbname)
    try:
        cur = conn.cursor()
        cur.execute(f"SET application_name = '{READER_APP}'")
        cur.execute("SET lock_timeout = '2s'")
        cur.execute("SELECT b.id, b.v, a.v FROM t_b b JOIN t_a a USING (id) ORDER BY b.id")
        return [tuple(r) for r in cur.fetchall()]
    finally:
        conn.close()


def test_b_query_runs_in_its_populate_never_under_the_swap_locks(src):
    """B's query is held mid-statement by a gate: it is the REFRESH of B's waiting version that
    waits there, and meanwhile readers of B and A go on at once with the old data; B's query runs
    once after the sync (a sequence it advances says so), and the rows after the swap are right.
    Re-created in the swap instead, B's query would hold the gate with the swap's ACCESS
    EXCLUSIVE locks on t_a and t_b taken, and the reader would fail on its lock_timeout."""
    dbname = connection.settings_dict["NAME"]
    gate_sql = f"(SELECT pg_catalog.pg_advisory_xact_lock_shared({GATE_KEY}) AS gate_{GATE_KEY}) AS gate"
    b_sql = f"SELECT id, v + 1 AS v FROM t_v, {gate_sql}, (SELECT nextval('public.t_b_runs') AS run) AS runs"
    vs = ViewSet()
    _declare(vs, 1, b_sql)
    vs.sync()  # the gate is open: B is created WITH DATA (its query's first run)
    _declare(vs, 2, b_sql)
    assert vs.sync().states["viewtest.B"] == "pending rebuild"
    assert catalog_rows("SELECT last_value FROM t_b_runs") == [(1,)]  # WITH NO DATA: not run
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["done"] = _complete(vs)
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            outcome["error"] = exc
        finally:
            connection.close()

    with Gate(dbname, GATE_KEY) as gate:
        worker = threading.Thread(target=run)
        worker.start()
        waiter = gate.waiter()
        query = psycopg_compat.query(dbname, "SELECT query FROM pg_stat_activity WHERE pid = %s", [waiter])
        assert PENDING_B in query[0][0] and "REFRESH" in query[0][0], query
        # B's whole query is under way: readers of B and A are not kept waiting by it.
        assert _read_once(dbname) == [(1, 11, 10), (2, 21, 20)]
    worker.join()
    assert "error" not in outcome, outcome
    assert sorted(outcome["done"].swapped) == ["viewtest.A", "viewtest.B", "viewtest.V"]
    assert catalog_rows("SELECT last_value FROM t_b_runs") == [(2,)]  # its populate only
    assert _read_once(dbname) == [(1, 21, 20), (2, 41, 40)]
    assert leftovers() == []


def test_changed_readers_wait_along_with_their_new_definitions(src):
    """A's new version adds a column; V (a plain view) and B change in the same deploy to use
    it. Built at once they would read A's old version, which lacks it: they wait along instead,
    their waiting versions reading A's, and a warm sync does nothing."""
    vs = ViewSet()
    _declare(vs, 1)
    vs.sync()
    vs.view("A", "SELECT id, v, v * 100 AS w FROM t_src", materialized=True, concurrent_index="id",
            defer_rebuild=True)  # fmt: skip
    vs.view("V", "SELECT id, w AS v FROM t_a", dependencies=("viewtest.A",))
    vs.view("B", "SELECT id, v + 2 AS v FROM t_v", materialized=True, concurrent_index="id",
            dependencies=("viewtest.V",))  # fmt: skip
    r = vs.sync()
    assert r.states["viewtest.V"] == "pending rebuild" and r.states["viewtest.B"] == "pending rebuild"
    assert r.reasons["viewtest.V"].startswith("definition changed; reads viewtest.A"), r.reasons
    assert catalog_rows("SELECT id, v FROM t_b ORDER BY id") == [(1, 11), (2, 21)]
    assert vs.sync().actions == []
    done = _complete(vs)
    assert sorted(done.swapped) == ["viewtest.A", "viewtest.B", "viewtest.V"], done
    assert catalog_rows("SELECT id, v FROM t_b ORDER BY id") == [(1, 1002), (2, 2002)]
    assert vs.sync().actions == []
