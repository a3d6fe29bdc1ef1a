"""refresh_pgviews --pending --jobs N: the waiting new versions of deferred rebuilds are populated
at once over N connections of the C loop (seen in pg_stat_activity), a failure of one stops none
of the others and is named, and the swap that follows is the sync's, sending view_synced for
what it changed."""

from __future__ import annotations

import threading
import time
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import override_settings

from django_pgviews_c import _core, pending
from django_pgviews_c.models import RefreshRecord
from django_pgviews_c.pending import complete_pending
from django_pgviews_c.signals import all_views_synced, view_synced
from tests import psycopg_compat
from tests.helpers import ViewSet, catalog_rows, execute, leftovers, oid

HOLDER_APP = "pgvc-test-pending-jobs-holder"
NEW_SQL = {"P1": "SELECT id, v * 2 AS v FROM t_src", "P2": "SELECT id, v * 3 AS v FROM t_src"}


def _pending_name(table: str) -> str:
    return _core.derived_name(table, "_pgvc_pending")


@pytest.fixture
def src(transactional_db):
    execute("CREATE TABLE t_src (id int PRIMARY KEY, v int); INSERT INTO t_src VALUES (1, 10), (2, 20)")
    yield
    execute("DROP TABLE IF EXISTS t_src CASCADE")


def _declare(vs: ViewSet, name: str, sql: str) -> None:
    vs.view(name, sql, materialized=True, concurrent_index="id", defer_rebuild=True)


def _two_pending(vs: ViewSet, new: dict[str, str] = NEW_SQL) -> dict[str, int]:
    """The views ``new`` names (P1 and P2) synced and populated, then changed to ``new``: each
    waits beside its old version. Returns the old versions' oids."""
    for name in new:
        _declare(vs, name, "SELECT id, v FROM t_src")
    vs.sync()
    before = {name: oid(f"t_{name.lower()}") for name in new}
    for name, sql in new.items():
        _declare(vs, name, sql)
    states = vs.sync().states
    assert all(states[f"viewtest.{name}"] == "pending rebuild" for name in new), states
    return before


class Holder:
    """A session holding ACCESS EXCLUSIVE on t_src, which every REFRESH of a view over it waits
    for, until released."""

    def __init__(self) -> None:
        self.conn = psycopg_compat._connect(connection.settings_dict["NAME"])
        cur = self.conn.cursor()
        cur.execute(f"SET application_name = '{HOLDER_APP}'")
        cur.execute("BEGIN")
        cur.execute("LOCK TABLE t_src IN ACCESS EXCLUSIVE MODE")
        cur.execute("SELECT pg_backend_pid()")
        self.pid = cur.fetchone()[0]
        self.cur = cur

    def release(self) -> None:
        if not self.conn.closed:
            self.cur.execute("ROLLBACK")
            self.conn.close()


def _populations_waiting_on(holder_pid: int) -> list[tuple]:
    """The backends whose REFRESH of a pending version waits for a lock the holder has."""
    return psycopg_compat.query(
        connection.settings_dict["NAME"],
        "SELECT pid, application_name, query FROM pg_stat_activity "
        "WHERE %s = ANY (pg_blocking_pids(pid)) AND query LIKE %s ORDER BY pid",
        [holder_pid, "%REFRESH MATERIALIZED VIEW %_pgvc_pending%"],
    )


def _release_when_waiting(holder: Holder, count: int, seen: list[tuple]) -> threading.Thread:
    """A thread that waits until ``count`` populations wait on the holder at once (the deadline
    only bounds a broken run), notes them in ``seen``, then releases the holder."""

    def watch() -> None:
        deadline = time.monotonic() + 60
        try:
            while time.monotonic() < deadline:
                rows = _populations_waiting_on(holder.pid)
                if len(rows) >= count:
                    seen.extend(rows)
                    return
                time.sleep(0.02)
        finally:
            holder.release()

    thread = threading.Thread(target=watch)
    thread.start()
    return thread


# The populations wait for t_src past the refresh's short lock_timeout: make each try long.
@override_settings(PGVIEWS_LOCK_TIMEOUT_MS=60000, PGVIEWS_REFRESH_LOCK_TIMEOUT_MS=60000)
def test_jobs_2_populates_two_pending_versions_at_once_then_swaps_them_in(src):
    vs = ViewSet()
    before = _two_pending(vs)
    holder = Holder()
    seen: list[tuple] = []
    watcher = _release_when_waiting(holder, 2, seen)
    try:
        done = complete_pending(models=list(vs.models.values()), jobs=2)
    finally:
        holder.release()
        watcher.join(60)
    # Both REFRESHes waited on the holder's lock at the same moment: two backends of the loop.
    assert len(seen) == 2, seen
    assert {row[1] for row in seen} == {"django-pgviews-c refresh"}, seen
    assert {_pending_name("t_p1"), _pending_name("t_p2")} == {
        name for name in (_pending_name("t_p1"), _pending_name("t_p2")) if any(name in r[2] for r in seen)
    }, seen
    assert sorted(done.swapped) == ["viewtest.P1", "viewtest.P2"] and not done.failed, done
    # The result is what a serial completion gives: the new definitions' rows, swapped in.
    for name, sql in NEW_SQL.items():
        table = f"t_{name.lower()}"
        assert oid(table) != before[name] and oid(_pending_name(table)) is None
        assert catalog_rows(f"SELECT id, v FROM {table} ORDER BY id") == catalog_rows(f"{sql} ORDER BY id")
        record = RefreshRecord.objects.filter(view=f"viewtest.{name}").order_by("-id").first()
        assert record.ok and record.plain_reason == "pending rebuild" and record.rows == 2
        assert record.sources is not None
    assert leftovers() == []
    assert vs.sync().actions == []


def test_jobs_2_gives_what_jobs_1_gives(src):
    """The same two changes on two pairs of views, one pair completed with one job, the other
    with two: the same rows, swaps, history records and states."""
    serial, parallel = ViewSet(), ViewSet()
    _two_pending(serial, {"S1": NEW_SQL["P1"], "S2": NEW_SQL["P2"]})
    _two_pending(parallel)
    one = complete_pending(models=list(serial.models.values()), jobs=1)
    two = complete_pending(models=list(parallel.models.values()), jobs=2)
    assert (
        [lb.replace("S", "P") for lb in sorted(one.swapped)]
        == sorted(two.swapped)
        == ["viewtest.P1", "viewtest.P2"]
    )
    assert not one.failed and not two.failed and not one.waiting and not two.waiting
    for s, p in (("S1", "P1"), ("S2", "P2")):
        assert catalog_rows(f"SELECT id, v FROM t_{s.lower()} ORDER BY id") == catalog_rows(
            f"SELECT id, v FROM t_{p.lower()} ORDER BY id"
        )
        records = [
            RefreshRecord.objects.filter(view=f"viewtest.{name}").order_by("-id").first() for name in (s, p)
        ]
        assert [(r.ok, r.plain_reason, r.rows, r.concurrent) for r in records] == [
            (True, "pending rebuild", 2, False)
        ] * 2
    assert set(serial.sync().states.values()) == set(parallel.sync().states.values()) == {"in sync"}


def test_a_failed_population_is_named_and_stops_none_of_the_others(src, monkeypatch):
    vs = ViewSet()
    # P1's new definition divides by zero on its row with v = 10: created WITH NO DATA by the
    # sync, it fails only when populated.
    before = _two_pending(vs, {"P1": "SELECT id, v / (v - 10) AS v FROM t_src", "P2": NEW_SQL["P2"]})
    project = pending.view_models()
    monkeypatch.setattr(pending, "view_models", lambda: project + list(vs.models.values()))
    out = StringIO()
    with pytest.raises(CommandError) as caught:
        call_command("refresh_pgviews", "--pending", "--jobs", "2", stdout=out, stderr=StringIO())
    text = out.getvalue()
    assert "swapped in the rebuilt viewtest.P2" in text, text
    assert "failed    viewtest.P1: populating its new version failed: division by zero" in text, text
    assert "viewtest.P1" in str(caught.value) and "division by zero" in str(caught.value)
    # P1's old version serves on, its new one still waits; P2 was swapped in.
    assert oid("t_p1") == before["P1"] and oid(_pending_name("t_p1")) is not None
    assert catalog_rows("SELECT id, v FROM t_p1 ORDER BY id") == [(1, 10), (2, 20)]
    assert oid("t_p2") != before["P2"] and oid(_pending_name("t_p2")) is None
    assert catalog_rows("SELECT id, v FROM t_p2 ORDER BY id") == [(1, 30), (2, 60)]
    failed = RefreshRecord.objects.filter(view="viewtest.P1").order_by("-id").first()
    assert not failed.ok and failed.sqlstate == "22012" and failed.plain_reason == "pending rebuild"


def test_the_swap_sends_view_synced_for_what_it_changed(src):
    vs = ViewSet()
    _declare(vs, "P1", "SELECT id, v FROM t_src")
    _declare(vs, "P2", "SELECT id, v FROM t_src")
    vs.view("R", "SELECT sum(v)::int AS total FROM t_p1", dependencies=("viewtest.P1",))
    vs.sync()
    _declare(vs, "P1", NEW_SQL["P1"])
    assert vs.sync().states["viewtest.P1"] == "pending rebuild"
    calls: list[dict] = []
    whole: list[dict] = []

    def receiver(sender, **kwargs):
        calls.append({"sender": sender, **kwargs})

    def whole_receiver(sender, **kwargs):
        whole.append(kwargs)

    view_synced.connect(receiver, dispatch_uid="test-pending-jobs")
    all_views_synced.connect(whole_receiver, dispatch_uid="test-pending-jobs-all")
    try:
        done = complete_pending(models=list(vs.models.values()))
    finally:
        view_synced.disconnect(dispatch_uid="test-pending-jobs")
        all_views_synced.disconnect(dispatch_uid="test-pending-jobs-all")
    assert done.swapped == ["viewtest.P1"]
    by_label = {c["sender"]._meta.label: c for c in calls}
    # The swapped view and the view re-created against it; P2, untouched, says nothing.
    assert set(by_label) == {"viewtest.P1", "viewtest.R"}, calls
    p1 = by_label["viewtest.P1"]
    assert p1["sender"] is vs.models["P1"]
    assert {k: p1[k] for k in ("update", "force", "status", "has_changed", "using")} == {
        "update": True, "force": False, "status": "UPDATED", "has_changed": True, "using": "default",
    }  # fmt: skip
    assert set(p1) == {"sender", "signal", "update", "force", "status", "has_changed", "using"}
    assert whole == []
    assert catalog_rows("SELECT total FROM t_r") == [(60,)]
    # Nothing left to swap: no signal.
    calls.clear()
    view_synced.connect(receiver, dispatch_uid="test-pending-jobs")
    try:
        assert complete_pending(models=list(vs.models.values())).swapped == []
    finally:
        view_synced.disconnect(dispatch_uid="test-pending-jobs")
    assert calls == []


def test_the_due_pass_with_jobs_2_completes_them_too(src):
    from django_pgviews_c.freshness import refresh_pass

    vs = ViewSet()
    before = _two_pending(vs)
    passed = refresh_pass(models=list(vs.models.values()), due=True, jobs=2)
    assert {"viewtest.P1", "viewtest.P2"} <= set(passed.refreshed) and not passed.failed, passed
    for name, sql in NEW_SQL.items():
        table = f"t_{name.lower()}"
        assert oid(table) != before[name] and oid(_pending_name(table)) is None
        assert catalog_rows(f"SELECT id, v FROM {table} ORDER BY id") == catalog_rows(f"{sql} ORDER BY id")


def test_jobs_populate_a_chain_in_order_and_a_failure_stops_what_reads_it(src):
    """B's waiting version reads A's: with --jobs 2 it starts once A's is populated, and is not
    populated when A's fails (named); both old versions serve on until one swap takes both."""
    vs = ViewSet()
    _declare(vs, "A", "SELECT id, v FROM t_src")
    vs.view("B", "SELECT id, v FROM t_a", materialized=True, concurrent_index="id", defer_rebuild=True,
            dependencies=("viewtest.A",))  # fmt: skip
    vs.sync()
    before = (oid("t_a"), oid("t_b"))
    _declare(vs, "A", "SELECT id, 100 / v AS v FROM t_src")
    vs.view("B", "SELECT id, v + 1 AS v FROM t_a", materialized=True, concurrent_index="id",
            defer_rebuild=True, dependencies=("viewtest.A",))  # fmt: skip
    vs.sync()
    execute("INSERT INTO t_src VALUES (3, 0)")
    try:
        done = complete_pending(models=list(vs.models.values()), jobs=2)
        assert done.swapped == [], done
        assert "division by zero" in done.failed["viewtest.A"], done
        assert done.failed["viewtest.B"] == (
            "its new version was not populated: it reads the new version of viewtest.A, which was not populated"
        ), done
        assert (oid("t_a"), oid("t_b")) == before
        assert catalog_rows("SELECT id, v FROM t_b ORDER BY id") == [(1, 10), (2, 20)]
    finally:
        execute("DELETE FROM t_src WHERE id = 3")
    done = complete_pending(models=list(vs.models.values()), jobs=2)
    assert sorted(done.swapped) == ["viewtest.A", "viewtest.B"], done
    assert catalog_rows("SELECT id, v FROM t_b ORDER BY id") == [(1, 11), (2, 6)]
    assert oid(_pending_name("t_a")) is None and oid(_pending_name("t_b")) is None
    assert leftovers() == []
