"""Deferred rebuilds (PGVIEWS_DEFER_REBUILD / defer_rebuild): a sync that must rebuild a populated
materialized view creates the new version beside it WITH NO DATA and leaves the old one serving;
refresh_pgviews --pending (complete_pending, and the --due pass) populates it and swaps it in with
the sync's lock_timeout-guarded swap, re-creating what reads it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.core import checks
from django.db import connection, models
from django.test import override_settings

from django_pgviews_c import _core
from django_pgviews_c import view as pg
from django_pgviews_c.clear import _doomed
from django_pgviews_c.exceptions import LockNotAvailableError
from django_pgviews_c.freshness import refresh_pass
from django_pgviews_c.models import RefreshRecord
from django_pgviews_c.pending import complete_pending, pending_models
from tests import psycopg_compat
from tests.helpers import (
    ViewSet,
    catalog_rows,
    comment,
    execute,
    index_names,
    leftovers,
    oid,
    populated,
    rule_reads,
    viewdef,
)

PENDING = _core.derived_name("t_m", "_pgvc_pending")
HOLDER_APP = "pgvc-test-defer-holder"


@pytest.fixture
def src(db):
    execute("CREATE TABLE t_src (id int PRIMARY KEY, v int); INSERT INTO t_src VALUES (1, 10), (2, 20)")


@pytest.fixture
def committed_src(transactional_db):
    execute("CREATE TABLE t_src (id int PRIMARY KEY, v int); INSERT INTO t_src VALUES (1, 10), (2, 20)")
    yield
    execute(f"DROP TABLE IF EXISTS t_src CASCADE; DROP MATERIALIZED VIEW IF EXISTS {PENDING}")


def _declare(vs: ViewSet, sql: str, **attrs):
    attrs.setdefault("defer_rebuild", True)
    return vs.view("M", sql, materialized=True, concurrent_index="id", **attrs)


def _deferred(vs: ViewSet) -> int:
    """M synced and populated with its first definition, then changed: returns the old oid."""
    _declare(vs, "SELECT id, v FROM t_src")
    vs.sync()
    before = oid("t_m")
    _declare(vs, "SELECT id, v * 2 AS v FROM t_src")
    r = vs.sync()
    assert r.states["viewtest.M"] == "pending rebuild", r.reasons
    return before


def _complete(vs: ViewSet):
    return complete_pending(models=list(vs.models.values()))


class Reader:
    """A second session that reads the view in an open transaction (ACCESS SHARE until it ends),
    as a long report would."""

    def __init__(self) -> None:
        self.conn = psycopg_compat._connect(connection.settings_dict["NAME"])
        self.cur = self.conn.cursor()
        self.cur.execute(f"SET application_name = '{HOLDER_APP}'")
        self.cur.execute("BEGIN")
        self.cur.execute("SELECT pg_backend_pid()")
        self.pid = self.cur.fetchone()[0]

    def rows(self) -> list[tuple]:
        self.cur.execute("SELECT id, v FROM t_m ORDER BY id")
        return [tuple(r) for r in self.cur.fetchall()]

    def release(self) -> None:
        self.cur.execute("ROLLBACK")
        self.conn.close()


def test_changed_populated_matview_waits_beside_the_old_one(src):
    vs = ViewSet()
    before = _deferred(vs)
    assert oid("t_m") == before
    assert catalog_rows("SELECT id, v FROM t_m ORDER BY id") == [(1, 10), (2, 20)]
    assert oid(PENDING) is not None and not populated(PENDING)
    assert "pending=1" in comment(PENDING)
    assert index_names(PENDING) == [_core.derived_name("t_m_id_index", "_pgvc_pending")]
    assert pending_models(models=list(vs.models.values())) == [vs.models["M"]]
    # A warm sync sees the pending version hold the declaration: nothing to do, no rebuild loop.
    r = vs.sync()
    assert r.actions == [] and r.statuses["viewtest.M"] == "EXISTS"
    assert r.states["viewtest.M"] == "pending rebuild"
    assert f"public.{PENDING}" not in {name for name, _ in r.orphans}
    done = _complete(vs)
    assert done.swapped == ["viewtest.M"], done
    assert oid(PENDING) is None and oid("t_m") != before
    assert catalog_rows("SELECT id, v FROM t_m ORDER BY id") == [(1, 20), (2, 40)]
    assert index_names("t_m") == ["t_m_id_index"]
    assert "pending" not in comment("t_m")
    assert leftovers() == []
    r = vs.sync()
    assert r.actions == [] and r.states["viewtest.M"] == "in sync"
    record = RefreshRecord.objects.filter(view="viewtest.M").order_by("-id").first()
    assert record.ok and record.plain_reason == "pending rebuild" and record.rows == 2
    assert _complete(vs).swapped == []


def test_the_global_setting_defers_and_the_views_own_false_wins(src):
    vs = ViewSet()
    with override_settings(PGVIEWS_DEFER_REBUILD=True):
        _declare(vs, "SELECT id, v FROM t_src", defer_rebuild=None)
        vs.sync()
        _declare(vs, "SELECT id, v + 1 AS v FROM t_src", defer_rebuild=None)
        assert vs.sync().states["viewtest.M"] == "pending rebuild"
        # The view's own False: rebuilt now, and its waiting version goes.
        _declare(vs, "SELECT id, v + 1 AS v FROM t_src", defer_rebuild=False)
        r = vs.sync()
    assert {"drop_pending", "build", "swap"} <= {a.op for a in r.actions}
    assert oid(PENDING) is None
    assert catalog_rows("SELECT id, v FROM t_m ORDER BY id") == [(1, 11), (2, 21)]


def test_a_second_change_replaces_the_pending_version(src):
    vs = ViewSet()
    before = _deferred(vs)
    first = oid(PENDING)
    _declare(vs, "SELECT id, v * 3 AS v FROM t_src")
    r = vs.sync()
    assert [a.op for a in r.actions][:2] == ["drop_pending", "build"]
    assert all(a.phase == 0 for a in r.actions if a.op in ("drop_pending", "build", "build_index"))
    assert oid(PENDING) not in (None, first) and oid("t_m") == before
    assert "v * 3" in viewdef(PENDING)
    assert vs.sync().actions == []
    assert _complete(vs).swapped == ["viewtest.M"]
    assert catalog_rows("SELECT id, v FROM t_m ORDER BY id") == [(1, 30), (2, 60)]


def test_reverting_drops_the_pending_version(src):
    vs = ViewSet()
    before = _deferred(vs)
    _declare(vs, "SELECT id, v FROM t_src")
    r = vs.sync()
    assert [a.op for a in r.actions] == ["drop_pending"]
    assert r.states["viewtest.M"] == "in sync"
    assert oid(PENDING) is None and oid("t_m") == before
    assert vs.sync().actions == []


def test_a_missing_or_empty_matview_is_not_deferred(src):
    vs = ViewSet()
    _declare(vs, "SELECT id, v FROM t_src")
    r = vs.sync()
    assert r.statuses["viewtest.M"] == "CREATED" and populated("t_m")
    execute("DROP MATERIALIZED VIEW t_m")
    execute("CREATE MATERIALIZED VIEW t_m AS SELECT 1 AS id, 1 AS v WITH NO DATA")
    vs2 = ViewSet()
    _declare(vs2, "SELECT id, v FROM t_src", with_data=False)
    vs2.sync()
    assert not populated("t_m")
    _declare(vs2, "SELECT id, v * 2 AS v FROM t_src", with_data=False)
    r = vs2.sync()
    assert r.states["viewtest.M"] != "pending rebuild" and oid(PENDING) is None
    assert "swap" in {a.op for a in r.actions}


def test_a_plain_view_reading_it_reads_the_old_one_until_the_swap(src):
    """A plain view over it is re-created against the new version in the swap (that costs
    nothing); a materialized one waits along with it (tests/test_defer_along.py)."""
    vs = ViewSet()
    _declare(vs, "SELECT id, v FROM t_src")
    vs.view("R", "SELECT sum(v)::int AS total FROM t_m", dependencies=("viewtest.M",))
    vs.view(
        "Top",
        "SELECT max(v) AS top FROM t_m",
        materialized=True,
        dependencies=("viewtest.M",),
    )
    vs.sync()
    r_oid = oid("t_r")
    _declare(vs, "SELECT id, v * 2 AS v FROM t_src")
    r = vs.sync()
    assert r.states["viewtest.M"] == "pending rebuild"
    assert r.states["viewtest.R"] == "in sync" and r.states["viewtest.Top"] == "pending rebuild"
    assert oid("t_r") == r_oid
    assert catalog_rows("SELECT total FROM t_r") == [(30,)]
    assert catalog_rows("SELECT top FROM t_top") == [(20,)]
    assert sorted(_complete(vs).swapped) == ["viewtest.M", "viewtest.Top"]
    # R re-created against the new version in the swap; Top's waiting version renamed in.
    assert catalog_rows("SELECT total FROM t_r") == [(60,)]
    assert catalog_rows("SELECT top FROM t_top") == [(40,)]
    assert vs.sync().actions == []


def test_a_change_upstream_rebuilds_it_now(src):
    """When what it reads changes in the same sync, the old version cannot go on serving (it may
    be dropped with its input): it is rebuilt as without the deferral."""
    vs = ViewSet()
    vs.view("A", "SELECT id, v FROM t_src")
    _declare(vs, "SELECT id, v FROM t_a", dependencies=("viewtest.A",))
    vs.sync()
    _declare(vs, "SELECT id, v * 2 AS v FROM t_a", dependencies=("viewtest.A",))
    vs.view("A", "SELECT id, v + 1 AS v FROM t_src")
    r = vs.sync()
    assert r.states["viewtest.M"] != "pending rebuild" and oid(PENDING) is None
    assert catalog_rows("SELECT id, v FROM t_m ORDER BY id") == [(1, 22), (2, 42)]


PENDING_A = _core.derived_name("t_a", "_pgvc_pending")
PENDING_B = _core.derived_name("t_b", "_pgvc_pending")


def _chain(vs: ViewSet, factor: int, extra: int) -> None:
    """A deferred matview A, and a deferred matview B reading it."""
    vs.view("A", f"SELECT id, v * {factor} AS v FROM t_src", materialized=True,
            concurrent_index="id", defer_rebuild=True)  # fmt: skip
    vs.view("B", f"SELECT id, v + {extra} AS v FROM t_a", materialized=True, concurrent_index="id",
            defer_rebuild=True, dependencies=("viewtest.A",))  # fmt: skip


def test_a_chain_of_deferred_rebuilds_completes_in_one_swap(src):
    """A and B both defer, B reads A, both change in one sync: B's waiting version reads A's
    waiting version, --pending populates A's first and swaps both in together."""
    vs = ViewSet()
    _chain(vs, 1, 0)
    vs.sync()
    a_before, b_before = oid("t_a"), oid("t_b")
    _chain(vs, 2, 1)
    r = vs.sync()
    assert r.states["viewtest.A"] == "pending rebuild", r.reasons
    assert r.states["viewtest.B"] == "pending rebuild", r.reasons
    assert (oid("t_a"), oid("t_b")) == (a_before, b_before)
    assert catalog_rows("SELECT id, v FROM t_b ORDER BY id") == [(1, 10), (2, 20)]
    assert rule_reads(PENDING_B) == [PENDING_A]
    assert rule_reads("t_b") == ["t_a"]
    assert index_names(PENDING_B) == [_core.derived_name("t_b_id_index", "_pgvc_pending")]
    assert "pending=1" in comment(PENDING_B) and "pending=1" in comment(PENDING_A)
    assert leftovers() == []
    assert vs.sync().actions == []  # the waiting versions hold the code: a warm sync
    done = _complete(vs)
    assert sorted(done.swapped) == ["viewtest.A", "viewtest.B"], done
    assert oid(PENDING_A) is None and oid(PENDING_B) is None
    assert catalog_rows("SELECT id, v FROM t_a ORDER BY id") == [(1, 20), (2, 40)]
    assert catalog_rows("SELECT id, v FROM t_b ORDER BY id") == [(1, 21), (2, 41)]
    assert rule_reads("t_b") == ["t_a"]
    assert index_names("t_b") == ["t_b_id_index"]
    assert leftovers() == []
    r = vs.sync()
    assert r.actions == [] and r.states["viewtest.B"] == "in sync", r.reasons


def test_only_a_changes_and_b_waits_along_reading_a_waiting_version(src):
    """B's definition holds, but it reads A, whose rebuild waits: B waits along (its waiting
    version reads A's), so the swap renames and drops only."""
    vs = ViewSet()
    _chain(vs, 1, 0)
    vs.sync()
    b_before = oid("t_b")
    _chain(vs, 2, 0)
    r = vs.sync()
    assert r.states["viewtest.A"] == "pending rebuild" and r.states["viewtest.B"] == "pending rebuild"
    assert "reads viewtest.A, whose rebuild waits" in r.reasons["viewtest.B"], r.reasons
    assert oid("t_b") == b_before and rule_reads(PENDING_B) == [PENDING_A]
    done = _complete(vs)
    assert sorted(done.swapped) == ["viewtest.A", "viewtest.B"], done
    assert oid("t_b") != b_before and rule_reads("t_b") == ["t_a"]
    assert catalog_rows("SELECT id, v FROM t_b ORDER BY id") == [(1, 20), (2, 40)]
    assert vs.sync().actions == []


def test_a_failure_to_populate_a_leaves_b_waiting_unpopulated_and_both_old_ones_serving(src):
    vs = ViewSet()
    vs.view("A", "SELECT id, v FROM t_src", materialized=True, concurrent_index="id", defer_rebuild=True)
    vs.view("B", "SELECT id, v FROM t_a", materialized=True, concurrent_index="id", defer_rebuild=True,
            dependencies=("viewtest.A",))  # fmt: skip
    vs.sync()
    a_before, b_before = oid("t_a"), oid("t_b")
    vs.view("A", "SELECT id, 100 / v AS v FROM t_src", materialized=True, concurrent_index="id",
            defer_rebuild=True)  # fmt: skip
    vs.view("B", "SELECT id, v + 1 AS v FROM t_a", materialized=True, concurrent_index="id",
            defer_rebuild=True, dependencies=("viewtest.A",))  # fmt: skip
    vs.sync()
    execute("INSERT INTO t_src VALUES (3, 0)")  # A's new version divides by it
    done = _complete(vs)
    assert done.swapped == [], done
    assert "populating its new version failed: division by zero" in done.failed["viewtest.A"], done
    assert done.failed["viewtest.B"] == (
        "its new version was not populated: it reads the new version of viewtest.A, which was not populated"
    ), done
    assert (oid("t_a"), oid("t_b")) == (a_before, b_before)
    assert not populated(PENDING_A) and not populated(PENDING_B)
    assert catalog_rows("SELECT id, v FROM t_b ORDER BY id") == [(1, 10), (2, 20)]
    failed = RefreshRecord.objects.filter(view="viewtest.B", ok=False).first()
    assert failed is not None and "viewtest.A" in failed.message
    execute("DELETE FROM t_src WHERE id = 3")
    done = _complete(vs)
    assert done.swapped == ["viewtest.A", "viewtest.B"], done
    assert catalog_rows("SELECT id, v FROM t_b ORDER BY id") == [(1, 11), (2, 6)]


def test_pending_for_b_alone_takes_the_waiting_version_brule_reads():
    """--pending naming B populates and swaps A's waiting version too: B's reads it. Naming A
    takes B's too: swapped without it, B would be re-populated under the swap's locks."""
    from django_pgviews_c.pending import PendingResult, _todo

    vs = ViewSet()
    _chain(vs, 1, 0)
    models = [vs.models["A"], vs.models["B"]]
    rows = [(0, "public", PENDING_A, False, True, ()), (1, "public", PENDING_B, False, True, (0,))]
    result = PendingResult()
    assert [i for i, *_ in _todo(models, rows, {vs.models["B"]}, result)] == [0, 1]
    assert [i for i, *_ in _todo(models, rows, {vs.models["A"]}, result)] == [0, 1]
    # A's waiting version no longer matches the code: B's, which reads it, waits with it.
    rows[0] = (0, "public", PENDING_A, False, False, ())
    assert _todo(models, rows, None, result) == []
    assert "viewtest.A" in result.waiting["viewtest.B"]


def test_b_deferred_before_a_is_made_again_to_read_a_waiting_version(src):
    """B's waiting version was made while A served as it is; then A's rebuild is deferred: B's
    is made again, against A's waiting version. A later change of A alone makes B's again too."""
    vs = ViewSet()
    _chain(vs, 1, 0)
    vs.sync()
    _chain(vs, 1, 1)
    assert vs.sync().states["viewtest.B"] == "pending rebuild"
    assert rule_reads(PENDING_B) == ["t_a"]
    first_b = oid(PENDING_B)
    _chain(vs, 2, 1)
    r = vs.sync()
    assert r.states["viewtest.A"] == "pending rebuild", r.reasons
    assert rule_reads(PENDING_B) == [PENDING_A] and oid(PENDING_B) != first_b
    assert vs.sync().actions == []
    _chain(vs, 3, 1)
    r = vs.sync()
    ops = [(a.op, a.target) for a in r.actions]
    assert [op for op, _ in ops[:2]] == ["drop_pending", "drop_pending"], ops
    assert ops[0][1] == f"public.{PENDING_B}", ops  # the reader first
    assert rule_reads(PENDING_B) == [PENDING_A]
    assert leftovers() == []
    assert sorted(_complete(vs).swapped) == ["viewtest.A", "viewtest.B"]
    assert catalog_rows("SELECT id, v FROM t_b ORDER BY id") == [(1, 31), (2, 61)]


def test_b_changed_while_a_waits_reads_a_kept_waiting_version(src):
    vs = ViewSet()
    _chain(vs, 1, 0)
    vs.sync()
    _chain(vs, 2, 0)
    assert vs.sync().states["viewtest.A"] == "pending rebuild"
    waiting_a = oid(PENDING_A)
    _chain(vs, 2, 5)
    r = vs.sync()
    assert "pending_move" in {a.op for a in r.actions}, [a.op for a in r.actions]
    assert oid(PENDING_A) == waiting_a and "pending=1" in comment(PENDING_A)
    assert rule_reads(PENDING_B) == [PENDING_A]
    assert vs.sync().actions == []
    assert sorted(_complete(vs).swapped) == ["viewtest.A", "viewtest.B"]
    assert catalog_rows("SELECT id, v FROM t_b ORDER BY id") == [(1, 25), (2, 45)]


def test_a_waiting_version_reading_an_old_version_by_schema_is_rebuilt_in_the_swap(src):
    """SQL that names the old version by schema cannot be pointed at the waiting one: the swap
    drops that waiting version first and re-creates the view against the new one."""
    vs = ViewSet()
    _chain(vs, 1, 0)
    vs.view("B", "SELECT id, v FROM public.t_a", materialized=True, concurrent_index="id",
            defer_rebuild=True, dependencies=("viewtest.A",))  # fmt: skip
    vs.sync()
    _chain(vs, 2, 0)
    vs.view("B", "SELECT id, v + 7 AS v FROM public.t_a", materialized=True, concurrent_index="id",
            defer_rebuild=True, dependencies=("viewtest.A",))  # fmt: skip
    vs.sync()
    assert rule_reads(PENDING_B) == ["t_a"]
    assert vs.sync().actions == []  # no rebuild on every sync
    done = _complete(vs)
    assert sorted(done.swapped) == ["viewtest.A", "viewtest.B"], done
    assert oid(PENDING_B) is None
    assert catalog_rows("SELECT id, v FROM t_b ORDER BY id") == [(1, 27), (2, 47)]
    assert vs.sync().actions == []


def test_prune_and_orphans_leave_the_pending_version_and_clear_drops_it(src):
    vs = ViewSet()
    _deferred(vs)
    assert f"public.{PENDING}" not in {name for name, _ in vs.sync().orphans}
    # --prune drops orphans (the project's own views, here) but not the waiting version.
    r = vs.sync(prune=True)
    assert "drop_pending" not in {a.op for a in r.actions}
    assert oid(PENDING) is not None
    with connection.cursor() as cursor:
        drop, unmanaged = _doomed(cursor, [vs.models["M"]], False)
    assert [(d.name, d.label) for d in drop][0] == (PENDING, "viewtest.M (its pending rebuild)")
    assert unmanaged == []
    # Declared by nothing any more: then it is an orphan like any other.
    r = ViewSet().sync()
    assert (f"public.{PENDING}", "m") in r.orphans


def test_the_due_pass_completes_pending_rebuilds(src):
    vs = ViewSet()
    _deferred(vs)
    passed = refresh_pass(models=list(vs.models.values()), due=True)
    assert "viewtest.M" in passed.refreshed and not passed.failed
    # Swapped in, then judged fresh: said once, as refreshed, not also as skipped.
    assert "viewtest.M" not in passed.skipped, passed.skipped
    assert oid(PENDING) is None
    assert catalog_rows("SELECT id, v FROM t_m ORDER BY id") == [(1, 20), (2, 40)]


@override_settings(PGVIEWS_SWAP_RETRIES=2, PGVIEWS_SWAP_LOCK_TIMEOUT_MS=300)
def test_readers_keep_the_old_data_and_a_held_lock_stops_the_swap_naming_its_holder(committed_src):
    vs = ViewSet()
    _declare(vs, "SELECT id, v FROM t_src")
    vs.sync()
    before = oid("t_m")
    reader = Reader()
    try:
        assert reader.rows() == [(1, 10), (2, 20)]  # ACCESS SHARE on t_m until it ends
        _declare(vs, "SELECT id, v * 2 AS v FROM t_src")
        # A rebuild would need ACCESS EXCLUSIVE on t_m: deferred, the sync takes no lock on it.
        assert vs.sync().states["viewtest.M"] == "pending rebuild"
        assert reader.rows() == [(1, 10), (2, 20)]
        with pytest.raises(LockNotAvailableError) as caught:
            _complete(vs)
        text = str(caught.value)
        assert f"pid {reader.pid}" in text and HOLDER_APP in text and "t_m" in text, text
        # No sync ran, and the populated new version is kept: the sync's words would be false.
        assert "sync was rolled back" not in text and "nothing was changed" not in text, text
        assert (
            "Nothing was swapped in: the old version of viewtest.M keeps serving; its populated new "
            "version waits beside it, and the next refresh_pgviews --pending swaps it in." in text
        ), text
        assert reader.rows() == [(1, 10), (2, 20)]
    finally:
        reader.release()
    # Rolled back: the old version serves on, the new one waits, populated, for the next try.
    assert oid("t_m") == before and populated(PENDING)
    assert catalog_rows("SELECT id, v FROM t_m ORDER BY id") == [(1, 10), (2, 20)]
    failed = RefreshRecord.objects.filter(view="viewtest.M", ok=False).first()
    assert failed is not None and failed.sqlstate == "55P03"
    assert _complete(vs).swapped == ["viewtest.M"]
    assert catalog_rows("SELECT id, v FROM t_m ORDER BY id") == [(1, 20), (2, 40)]


def test_defer_rebuild_on_a_plain_view_is_w009():
    from django_pgviews_c.checks import validate_view_declarations

    class Plain(pg.View):
        defer_rebuild = True
        sql = "SELECT 1 AS id"
        id = models.IntegerField(primary_key=True)

        class Meta:
            app_label = "viewtest"
            managed = False
            db_table = "t_plain_w009"

    from django.apps import apps

    try:
        found = [m for m in validate_view_declarations() if m.id == "django_pgviews_c.W009"]
    finally:
        apps.all_models["viewtest"].pop("plain", None)
        apps.clear_cache()
    assert len(found) == 1 and "Plain" in found[0].msg and found[0].level == checks.WARNING


# -- the commands, in real processes (tests/deferproject) ----------------------------------------

ROOT = Path(__file__).resolve().parent.parent
SUFFIX = os.environ.get("PGVIEWS_DB_SUFFIX", "")
DB = "pgviews_c_defer" + SUFFIX


def django(*args: str, factor: int = 1) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = "tests.deferproject.settings"
    env["DEFER_FACTOR"] = str(factor)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-m", "django", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def q(sql: str) -> list[tuple]:
    return [tuple(r) for r in psycopg_compat.query(DB, sql)]


@pytest.fixture
def defer_db():
    psycopg_compat.query("postgres", f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
    psycopg_compat.query("postgres", f'CREATE DATABASE "{DB}"')
    try:
        done = django("migrate", "--run-syncdb", "-v", "0")
        assert done.returncode == 0, done.stderr
        q("INSERT INTO deferapp_reading (value) VALUES (10), (20), (30)")
        done = django("refresh_pgviews")
        assert done.returncode == 0, done.stderr
        yield
    finally:
        psycopg_compat.query("postgres", f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')


def test_migrate_defers_and_refresh_pgviews_pending_swaps_in(defer_db):
    pending = _core.derived_name("deferapp_totals", "_pgvc_pending")
    before = q("SELECT 'deferapp_totals'::regclass::oid::bigint")
    reader = psycopg_compat._connect(DB)
    cur = reader.cursor()
    cur.execute(f"SET application_name = '{HOLDER_APP}'")
    cur.execute("BEGIN")
    cur.execute("SELECT pg_backend_pid()")
    pid = cur.fetchone()[0]
    try:
        cur.execute("SELECT sum(value) FROM deferapp_totals")  # ACCESS SHARE until it ends
        assert cur.fetchone()[0] == 60
        # The deploy: migrate returns without touching the old version, which the reader holds.
        done = django("migrate", "-v", "0", factor=2)
        assert done.returncode == 0, done.stderr
        assert q("SELECT 'deferapp_totals'::regclass::oid::bigint") == before
        cur.execute("SELECT sum(value) FROM deferapp_totals")
        assert cur.fetchone()[0] == 60
        assert q("SELECT total FROM deferapp_report") == [(60,)]
        done = django("pgviews_status", "--json", factor=2)
        assert done.returncode == 0, done.stderr
        rows = {r["label"]: r for r in json.loads(done.stdout)}
        assert rows["deferapp.Totals"]["state"] == "pending rebuild", rows
        assert rows["deferapp.Totals"]["old_data_age"] is not None
        assert "serves data refreshed" in rows["deferapp.Totals"]["detail"]
        assert rows["deferapp.Report"]["state"] == "in sync"
        done = django("pgviews_status", "--check", factor=2)
        assert done.returncode == 1 and "refresh_pgviews --pending (deferapp.Totals)" in done.stderr, done
        # The swap needs the reader's lock: it gives up in time, naming it; nothing changes.
        done = django("refresh_pgviews", "--pending", factor=2)
        assert done.returncode == 1, done.stdout
        assert f"pid {pid}" in done.stderr and HOLDER_APP in done.stderr, done.stderr
        assert q("SELECT 'deferapp_totals'::regclass::oid::bigint") == before
    finally:
        reader.close()
    done = django("refresh_pgviews", "--pending", factor=2)
    assert done.returncode == 0, done.stderr
    assert "swapped in the rebuilt deferapp.Totals" in done.stdout, done.stdout
    assert q("SELECT sum(value)::int FROM deferapp_totals") == [(120,)]
    assert q("SELECT total FROM deferapp_report") == [(120,)]
    assert q(f"SELECT to_regclass('{pending}') IS NULL") == [(True,)]
    done = django("pgviews_status", "--check", factor=2)
    assert done.returncode == 0, done.stdout + done.stderr
    # Another deploy, then clear_pgviews: the waiting version goes with the views.
    done = django("migrate", "-v", "0", factor=3)
    assert done.returncode == 0, done.stderr
    assert q(f"SELECT to_regclass('{pending}') IS NOT NULL") == [(True,)]
    done = django("clear_pgviews", "--no-input", factor=3)
    assert done.returncode == 0, done.stderr
    assert q(f"SELECT to_regclass('{pending}') IS NULL AND to_regclass('deferapp_totals') IS NULL") == [
        (True,)
    ]


def test_a_migration_that_sets_aside_what_the_waiting_version_reads_drops_it(tmp_path):
    """The waiting version reads a view a migration sets aside: it is dropped with it (ours, not
    an unmanaged view to refuse or restore), and the sync after the migrations rebuilds."""
    from tests.test_aside import HERE as ASIDE
    from tests.test_aside import change_price_type, run, sql

    dest = tmp_path / "proj"
    shutil.copytree(ASIDE / "asideproj", dest)
    (dest / "shop" / "migrations").mkdir()
    (dest / "shop" / "migrations" / "__init__.py").write_text("")
    with (dest / "settings.py").open("a") as f:
        f.write("\nPGVIEWS_DEFER_REBUILD = True\n")
    db = "pgvc_defer_aside" + SUFFIX
    psycopg_compat.recreate_database(db)
    try:
        assert run(dest, "makemigrations", "shop", db=db).returncode == 0
        assert run(dest, "migrate", db=db).returncode == 0
        sql(db, "INSERT INTO shop_item (price, name) VALUES (5, 'a'), (7, 'b'), (20, 'c')")
        assert run(dest, "refresh_pgviews", db=db).returncode == 0
        models_py = dest / "shop" / "models.py"
        models_py.write_text(models_py.read_text().replace("sum(price) AS total", "sum(price) * 2 AS total"))
        r = run(dest, "migrate", db=db)
        assert r.returncode == 0, r.stderr
        waiting = _core.derived_name("shop_cheapcount", "_pgvc_pending")
        assert sql(db, f"SELECT to_regclass('{waiting}') IS NOT NULL") == [(True,)]
        assert sql(db, "SELECT total FROM shop_cheapcount") == [(12,)]
        change_price_type(dest)
        assert run(dest, "makemigrations", "shop", db=db).returncode == 0
        r = run(dest, "migrate", db=db)
        assert r.returncode == 0, r.stderr
        assert sql(db, f"SELECT to_regclass('{waiting}') IS NULL") == [(True,)]
        assert sql(db, "SELECT total FROM shop_cheapcount") == [(24,)]
    finally:
        psycopg_compat.drop_database(db)
