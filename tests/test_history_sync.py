"""The refreshes a sync performs, in the views' history (synchistory.py): a materialized view a
sync builds or rebuilds WITH DATA, re-creates with its data, or populates leaves one record, in
the sync's transaction (rolled back with it), with the sources it was built from; nothing for
views created WITH NO DATA, a rehearsal, PGVIEWS_HISTORY = False or the build of the test
databases. Set-aside views re-populated after migrate, the migration operations and the
dependants --pending re-creates are recorded the same way."""

from __future__ import annotations

import io
import logging
import os
import shutil
import threading
import time
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection, connections
from django.db.migrations.state import ProjectState
from django.forms.models import model_to_dict
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_pgviews_c import _core, freshness, freshstatus, history
from django_pgviews_c.exceptions import PGViewsError
from django_pgviews_c.models import RefreshRecord
from django_pgviews_c.pending import complete_pending
from django_pgviews_c.sync import Syncer
from tests import psycopg_compat
from tests.helpers import Gate, ViewSet, catalog_rows, execute, oid, populated

HERE = Path(__file__).resolve().parent


@pytest.fixture
def src(transactional_db):
    """A table committed for real (the statistics count committed writes only)."""
    execute("CREATE TABLE hs_src (id int PRIMARY KEY, v int)")
    execute("INSERT INTO hs_src VALUES (1, 10), (2, 20)")
    _flush_stats()
    yield
    pending = _core.derived_name("t_hsm", "_pgvc_pending")
    reader_pending = _core.derived_name("t_hsr", "_pgvc_pending")
    for name in ("t_hstop", reader_pending, "t_hsr", "t_hsbad", pending, "t_hsm", "t_hsempty"):
        execute(f"DROP MATERIALIZED VIEW IF EXISTS {name}")
    execute("DROP VIEW IF EXISTS t_hsv")
    execute("DROP TABLE IF EXISTS hs_src")


def _flush_stats() -> None:
    """This session's writes reach the statistics now (PostgreSQL 15), not within a second."""
    execute("SELECT pg_stat_force_next_flush()")
    execute("SELECT 1")


def reasons(model) -> list[str]:
    """The plain_reason of each record of ``model``, newest first."""
    return [r.plain_reason for r in history.records(model)]


def test_a_sync_that_builds_a_populated_matview_records_one_refresh(src):
    vs = ViewSet()
    m = vs.view("HsM", "SELECT id, v FROM hs_src", materialized=True, concurrent_index="id")
    result = vs.sync()
    [rec] = history.records(m)
    assert rec.ok and rec.mode == "plain" and rec.plain_reason == "built by sync"
    assert rec.rows == 2 and rec.sqlstate == "" and rec.message == ""
    # The duration is the executor's own timing, the one its progress reports.
    assert rec.duration == pytest.approx(result.timings["viewtest.HsM"][0])
    assert rec.sources["populated"] is True
    assert {v[3] for v in rec.sources["rels"].values()} == {"hs_src"}
    assert not freshness.freshness([m])[0].stale
    # A warm sync is still one catalog query, and records nothing.
    with CaptureQueriesContext(connection) as ctx:
        assert vs.sync().actions == []
    assert len(ctx.captured_queries) == 1
    assert history.records(m).count() == 1
    # A write after the build makes it stale, as after any refresh.
    psycopg_compat.query(
        connection.settings_dict["NAME"],
        "SELECT pg_stat_force_next_flush(); UPDATE hs_src SET v = 11 WHERE id = 1",
    )
    assert freshness.freshness([m])[0].reasons == ["table hs_src had 1 writes"]


def _counted(dbname: str, table: str) -> int:
    sql = (
        "SELECT pg_stat_clear_snapshot(), (SELECT n_tup_ins + n_tup_upd + n_tup_del "
        f"FROM pg_stat_all_tables WHERE relid = '{table}'::regclass)"
    )
    return psycopg_compat.query(dbname, sql)[0][1] or 0


def test_a_write_committed_while_the_sync_builds_makes_the_view_stale(src):
    """The sources are read after the statements (the view exists only then), from the
    statistics as they were before the first one: a write the build did not see counts."""
    dbname = connection.settings_dict["NAME"]
    vs = ViewSet()
    errors: list[BaseException] = []
    with Gate(dbname, 0x4853) as gate:
        m = vs.view("HsM", f"SELECT id, v FROM hs_src, {gate.sql}", materialized=True)

        def run() -> None:
            try:
                vs.sync()
            except Exception as exc:  # reported below
                errors.append(exc)
            finally:
                connections.close_all()

        worker = threading.Thread(target=run)
        worker.start()
        gate.waiter()  # inside the CREATE: its snapshot is taken
        before = _counted(dbname, "hs_src")
        psycopg_compat.query(
            dbname, "SELECT pg_stat_force_next_flush(); UPDATE hs_src SET v = 11 WHERE id = 1"
        )
        deadline = time.monotonic() + 65  # the statistics bound (docs/freshness.md)
        while _counted(dbname, "hs_src") <= before:
            assert time.monotonic() < deadline, "the update never reached the statistics"
            time.sleep(0.05)
        gate.open()
        worker.join(60)
    assert not worker.is_alive() and not errors, errors
    assert catalog_rows("SELECT v FROM t_hsm ORDER BY id") == [(10,), (20,)]  # built before it
    assert history.records(m).get().plain_reason == "built by sync"
    assert freshness.freshness([m])[0].reasons == ["table hs_src had 1 writes"]


def test_a_rebuild_beside_and_a_chain_record_one_refresh_each(src):
    vs = ViewSet()
    vs.view("HsV", "SELECT id, v FROM hs_src")
    top = vs.view("HsTop", "SELECT sum(v)::int AS total FROM t_hsv", materialized=True,
                  dependencies=("viewtest.HsV",))  # fmt: skip
    m = vs.view("HsM", "SELECT id, v FROM hs_src", materialized=True, concurrent_index="id")
    vs.sync()
    # A changed materialized view: built beside the old one and swapped in.
    m = vs.view("HsM", "SELECT id, v * 2 AS v FROM hs_src", materialized=True, concurrent_index="id")
    result = vs.sync()
    assert {"build", "swap"} <= {a.op for a in result.actions if a.target.startswith("viewtest.HsM ")}
    assert reasons(m) == ["rebuilt by sync", "built by sync"]
    assert history.records(m).first().rows == 2
    assert reasons(top) == ["built by sync"]  # untouched: no record
    # A changed view: the materialized view that reads it is rebuilt in a chain.
    vs.view("HsV", "SELECT id, v + 1 AS v FROM hs_src")
    result = vs.sync()
    assert "viewtest.HsTop" in result.touched
    assert reasons(top) == ["rebuilt by sync", "built by sync"]
    rec = history.records(top).first()
    assert {v[3] for v in rec.sources["rels"].values()} == {"hs_src"}  # through the view
    assert catalog_rows("SELECT total FROM t_hstop") == [(32,)]
    assert not any(f.stale for f in freshness.freshness([top, m]))


def test_a_failing_sync_leaves_no_record(src):
    vs = ViewSet()
    m = vs.view("HsM", "SELECT id, v FROM hs_src", materialized=True)
    # Built after HsM, which it reads: HsM is populated, then the sync fails and rolls back.
    vs.view("HsBad", "SELECT nope FROM t_hsm", materialized=True, dependencies=("viewtest.HsM",))
    with pytest.raises(PGViewsError, match="HsBad"):
        vs.sync()
    assert oid("t_hsm") is None
    assert history.records(m).count() == 0


def test_with_data_false_is_no_refresh_and_a_populating_refresh_is(src):
    vs = ViewSet()
    empty = vs.view("HsEmpty", "SELECT id, v FROM hs_src", materialized=True, with_data=False)
    m = vs.view("HsM", "SELECT id, v FROM hs_src", materialized=True)
    vs.sync()
    assert not populated("t_hsempty")
    assert history.records(empty).count() == 0
    assert reasons(m) == ["built by sync"]
    # Emptied by hand: the sync populates it (refresh-if-unpopulated), and that is a refresh.
    execute("REFRESH MATERIALIZED VIEW t_hsm WITH NO DATA")
    result = vs.sync()
    assert [a.op for a in result.actions if a.decl >= 0] == ["refresh"]
    assert reasons(m) == ["populated by sync", "built by sync"]
    assert history.records(m).first().rows == 2 and history.records(empty).count() == 0
    # Declared WITH DATA now: rebuilt beside, populated, recorded.
    empty = vs.view("HsEmpty", "SELECT id, v FROM hs_src", materialized=True)
    vs.sync()
    assert populated("t_hsempty") and reasons(empty) == ["rebuilt by sync"]


def test_history_off_records_nothing(src):
    vs = ViewSet()
    m = vs.view("HsM", "SELECT id, v FROM hs_src", materialized=True)
    with override_settings(PGVIEWS_HISTORY=False), CaptureQueriesContext(connection) as ctx:
        vs.sync()
    assert populated("t_hsm") and history.records(m).count() == 0
    assert not any("django_pgviews_c_refresh" in q["sql"] for q in ctx.captured_queries)


def test_a_missing_history_table_costs_no_warning(src, caplog):
    vs = ViewSet()
    m = vs.view("HsM", "SELECT id, v FROM hs_src", materialized=True)
    execute("ALTER TABLE django_pgviews_c_refresh RENAME TO hs_moved")
    try:
        vs.sync()
    finally:
        execute("ALTER TABLE hs_moved RENAME TO django_pgviews_c_refresh")
    assert populated("t_hsm") and history.records(m).count() == 0
    assert "not recorded" not in caplog.text


def test_a_rehearsal_records_nothing(src):
    vs = ViewSet()
    m = vs.view("HsM", "SELECT id, v FROM hs_src", materialized=True)
    result = Syncer(connection, [m], {m._meta.label}).run(rehearse=True)
    assert result.error is None and result.actions
    assert oid("t_hsm") is None and history.records(m).count() == 0


def _history_inserts(ctx: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in ctx.captured_queries if "INSERT INTO django_pgviews_c_refresh" in q["sql"]]


def _fields(rec: RefreshRecord) -> dict:
    return model_to_dict(rec, exclude=["id"])


def test_a_sync_records_all_it_populates_in_one_statement(src):
    vs = ViewSet()
    vs.view("HsV", "SELECT id, v FROM hs_src")
    m = vs.view("HsM", "SELECT id, v FROM hs_src", materialized=True, concurrent_index="id")
    top = vs.view("HsTop", "SELECT sum(v)::int AS total FROM t_hsv", materialized=True,
                  dependencies=("viewtest.HsV",))  # fmt: skip
    reader = vs.view("HsR", "SELECT max(v) AS top FROM t_hsm", materialized=True,
                     dependencies=("viewtest.HsM",))  # fmt: skip
    with CaptureQueriesContext(connection) as ctx:
        result = vs.sync()
    assert result.error is None
    assert len(_history_inserts(ctx)) == 1, _history_inserts(ctx)
    recs = {model: history.records(model).get() for model in (m, top, reader)}
    assert {model._meta.label: (r.rows, r.mode, r.plain_reason, r.ok) for model, r in recs.items()} == {
        "viewtest.HsM": (2, "plain", "built by sync", True),
        "viewtest.HsTop": (1, "plain", "built by sync", True),
        "viewtest.HsR": (1, "plain", "built by sync", True),
    }
    assert {v[3] for v in recs[top].sources["rels"].values()} == {"hs_src"}  # through the view
    assert {v[3] for v in recs[reader].sources["rels"].values()} == {"t_hsm"}
    for model, rec in recs.items():
        assert rec.duration == pytest.approx(result.timings[model._meta.label][0])
        # What the single insert (history.record) writes from the same inputs, field by field.
        assert history.record(connection, model, started_at=rec.started_at, duration=rec.duration,
                              concurrent=False, plain_reason=rec.plain_reason, sources=rec.sources)  # fmt: skip
        again = history.records(model).first()
        assert again.id != rec.id and _fields(again) == _fields(rec)
    assert not any(f.stale for f in freshness.freshness([m, top, reader]))


def test_the_one_statement_prunes_each_view_it_records(src):
    vs = ViewSet()
    a = vs.view("HsM", "SELECT id, v FROM hs_src", materialized=True)
    b = vs.view("HsR", "SELECT max(v) AS top FROM hs_src", materialized=True)
    other = vs.view("HsTop", "SELECT sum(v)::int AS total FROM hs_src", materialized=True)
    vs.sync()
    now = timezone.now()
    for reason in ("x1", "x2"):
        for model in (a, other):
            history.record(connection, model, started_at=now, duration=0.1, concurrent=False,
                           plain_reason=reason)  # fmt: skip
    a = vs.view("HsM", "SELECT id, v + 1 AS v FROM hs_src", materialized=True)
    b = vs.view("HsR", "SELECT min(v) AS top FROM hs_src", materialized=True)
    with (
        override_settings(PGVIEWS_HISTORY_KEEP=2, PGVIEWS_HISTORY_COUNT_ROWS_UP_TO=0),
        CaptureQueriesContext(connection) as ctx,
    ):
        vs.sync()
    assert len(_history_inserts(ctx)) == 1
    assert reasons(a) == ["rebuilt by sync", "x2"]
    assert reasons(b) == ["rebuilt by sync", "built by sync"]
    assert reasons(other) == ["x2", "x1", "built by sync"]  # not in this sync: left alone
    # Bigger than the limit (0 bytes): not counted, as for any refresh.
    assert [history.records(m).first().rows for m in (a, b)] == [None, None]


def test_a_failure_to_record_is_a_warning_and_the_sync_stands(src, caplog):
    vs = ViewSet()
    m = vs.view("HsM", "SELECT id, v FROM hs_src", materialized=True)
    r = vs.view("HsR", "SELECT max(v) AS top FROM t_hsm", materialized=True, dependencies=("viewtest.HsM",))
    execute(
        "CREATE FUNCTION hs_refuse() RETURNS trigger LANGUAGE plpgsql AS "
        "$$BEGIN RAISE EXCEPTION 'hs: no records today'; END$$; "
        "CREATE TRIGGER hs_refuse BEFORE INSERT ON django_pgviews_c_refresh "
        "FOR EACH STATEMENT EXECUTE FUNCTION hs_refuse()"
    )
    try:
        with caplog.at_level(logging.WARNING, logger="django_pgviews_c.history"):
            result = vs.sync()
    finally:
        execute("DROP TRIGGER hs_refuse ON django_pgviews_c_refresh; DROP FUNCTION hs_refuse()")
    assert result.error is None
    assert catalog_rows("SELECT top FROM t_hsr") == [(20,)]
    assert history.records(m).count() == 0 and history.records(r).count() == 0
    assert (
        "the refreshes of viewtest.HsM, viewtest.HsR were not recorded in their history "
        "(django_pgviews_c_refresh): hs: no records today"
    ) in caplog.text


SYNCER = "pgvc_hs_syncer" + os.environ.get("PGVIEWS_DB_SUFFIX", "")
_STAT_FUNCTION = "pg_catalog.pg_stat_get_tuples_inserted(oid)"


@pytest.fixture
def syncer_role(src):
    """A role that may sync and record, but not read the statistics the sources are read from
    (the closure's pg_stat_get_tuples_inserted, revoked from PUBLIC in this database only)."""
    execute(f'DROP ROLE IF EXISTS "{SYNCER}"')
    execute(f'CREATE ROLE "{SYNCER}" NOLOGIN')
    execute(f'GRANT CREATE, USAGE ON SCHEMA public TO "{SYNCER}"')
    execute(f'GRANT SELECT ON hs_src TO "{SYNCER}"')
    execute(f'GRANT SELECT, INSERT, DELETE ON django_pgviews_c_refresh TO "{SYNCER}"')
    execute(f'GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO "{SYNCER}"')
    execute(f"REVOKE EXECUTE ON FUNCTION {_STAT_FUNCTION} FROM PUBLIC")
    try:
        yield SYNCER
    finally:
        execute("RESET ROLE")
        execute(f"GRANT EXECUTE ON FUNCTION {_STAT_FUNCTION} TO PUBLIC")
        execute("DROP MATERIALIZED VIEW IF EXISTS t_hsr, t_hsm")
        execute(f'DROP OWNED BY "{SYNCER}"')
        execute(f'DROP ROLE "{SYNCER}"')


def test_sources_that_cannot_be_read_leave_the_sync_and_its_records(syncer_role, caplog):
    vs = ViewSet()
    m = vs.view("HsM", "SELECT id, v FROM hs_src", materialized=True)
    r = vs.view("HsR", "SELECT max(v) AS top FROM t_hsm", materialized=True, dependencies=("viewtest.HsM",))
    execute(f'SET ROLE "{syncer_role}"')
    with caplog.at_level(logging.WARNING, logger="django_pgviews_c.history"):
        result = vs.sync()
    assert catalog_rows("SELECT current_user")[0][0] == syncer_role  # the sync ran as the role
    execute("RESET ROLE")
    assert result.error is None
    assert catalog_rows("SELECT top FROM t_hsr") == [(20,)] and populated("t_hsm")
    assert (
        "could not read the sources of viewtest.HsM, viewtest.HsR for the refresh history: "
        "permission denied for function pg_stat_get_tuples_inserted"
    ) in caplog.text
    # The transaction went on after the failed read: the records were written in it, after it,
    # and committed with the views; without sources, so the views count as stale.
    recs = [history.records(model).get() for model in (m, r)]
    assert [(rec.plain_reason, rec.rows, rec.sources) for rec in recs] == [
        ("built by sync", 2, None), ("built by sync", 1, None),
    ]  # fmt: skip
    assert all(f.stale for f in freshness.freshness([m, r]))


@pytest.mark.django_db
def test_the_test_databases_were_built_without_records():
    from tests.viewtest import models

    # Populated by the sync that built the test database, recorded by none.
    assert populated("viewtest_materializedrelatedview")
    assert history.records(models.MaterializedRelatedView).count() == 0


def test_the_sync_view_operation_records(transactional_db):
    from django_pgviews_c.db.migrations.operations import SyncView
    from tests.viewtest import models

    model = models.MaterializedViewWithIndex
    execute(f"DROP MATERIALIZED VIEW {model._meta.db_table}")
    op = SyncView("viewtest.MaterializedViewWithIndex")
    state = ProjectState()
    with connection.schema_editor(collect_sql=True) as editor:  # sqlmigrate: nothing runs
        op.database_forwards("viewtest", editor, state, state)
    assert history.records(model).count() == 0
    with connection.schema_editor() as editor:
        op.database_forwards("viewtest", editor, state, state)
    [rec] = history.records(model)
    assert rec.ok and rec.plain_reason == "built by sync" and rec.mode == "plain"


def _hsm(vs: ViewSet, changed: bool = False):
    """HsM, a deferred materialized view over hs_src; changed: its second definition (v doubled)."""
    sql = "SELECT id, v * 2 AS v FROM hs_src" if changed else "SELECT id, v FROM hs_src"
    return vs.view("HsM", sql, materialized=True, concurrent_index="id", defer_rebuild=True)


def test_pending_swap_records_the_dependants_that_waited_along(src):
    vs = ViewSet()
    m = _hsm(vs)
    reader = vs.view("HsR", "SELECT max(v) AS top FROM t_hsm", materialized=True,
                     dependencies=("viewtest.HsM",))  # fmt: skip
    vs.sync()
    _hsm(vs, changed=True)
    states = vs.sync().states
    assert states["viewtest.HsM"] == "pending rebuild" and states["viewtest.HsR"] == "pending rebuild"
    assert reasons(reader) == ["built by sync"]
    done = complete_pending(models=list(vs.models.values()))
    assert sorted(done.swapped) == ["viewtest.HsM", "viewtest.HsR"], done
    assert reasons(m) == ["pending rebuild", "built by sync"]
    # Its waiting version populated by --pending, renamed in by the swap.
    assert reasons(reader) == ["pending rebuild", "built by sync"]
    assert catalog_rows("SELECT top FROM t_hsr") == [(40,)]


def test_pending_swap_records_the_dependants_it_re_populates(src):
    """A reader in another schema cannot wait along (its waiting version could not find the
    deferred one's by name): the swap re-creates it against the new version, populated there,
    and records that."""
    execute("CREATE SCHEMA hs_other")
    try:
        vs = ViewSet()
        m = _hsm(vs)
        reader = vs.view("HsR", "SELECT max(v) AS top FROM public.t_hsm", materialized=True,
                         db_table="hs_other.t_hsr", dependencies=("viewtest.HsM",))  # fmt: skip
        vs.sync()
        _hsm(vs, changed=True)
        states = vs.sync().states
        assert states["viewtest.HsM"] == "pending rebuild" and states["viewtest.HsR"] == "in sync"
        done = complete_pending(models=list(vs.models.values()))
        assert done.swapped == ["viewtest.HsM"], done
        assert reasons(m) == ["pending rebuild", "built by sync"]
        # Re-created against the new version, inside the swap: a refresh.
        assert reasons(reader) == ["rebuilt by sync", "built by sync"]
        assert catalog_rows("SELECT top FROM hs_other.t_hsr") == [(40,)]
    finally:
        execute("DROP SCHEMA hs_other CASCADE")


def test_a_changed_reader_that_does_not_defer_waits_along_with_its_new_definition(src):
    """Rebuilt at once, it would read the old version and be re-created in the swap: it waits
    along instead, its waiting version holding its new definition, and a warm sync does nothing."""
    vs = ViewSet()
    _hsm(vs)
    reader = vs.view("HsR", "SELECT max(v) AS top FROM t_hsm", materialized=True,
                     dependencies=("viewtest.HsM",))  # fmt: skip
    vs.sync()
    _hsm(vs, changed=True)
    reader = vs.view("HsR", "SELECT max(v) + 1 AS top FROM t_hsm", materialized=True,
                     dependencies=("viewtest.HsM",))  # fmt: skip
    r = vs.sync()
    assert r.states["viewtest.HsR"] == "pending rebuild", r.reasons
    assert r.reasons["viewtest.HsR"].startswith("definition changed; reads viewtest.HsM"), r.reasons
    assert catalog_rows("SELECT top FROM t_hsr") == [(20,)]
    assert vs.sync().actions == []
    done = complete_pending(models=list(vs.models.values()))
    assert sorted(done.swapped) == ["viewtest.HsM", "viewtest.HsR"], done
    assert reasons(reader) == ["pending rebuild", "built by sync"]
    assert catalog_rows("SELECT top FROM t_hsr") == [(41,)]
    assert vs.sync().actions == []


def test_status_and_stale_after_a_sync_that_built_a_view(transactional_db):
    from tests.viewtest import models

    model = models.MaterializedViewWithIndex
    _flush_stats()
    execute(f"DROP MATERIALIZED VIEW {model._meta.db_table}")
    call_command("sync_pgviews", verbosity=0)
    [rec] = history.records(model)
    out = io.StringIO()
    call_command("pgviews_status", stdout=out)
    line = next(x for x in out.getvalue().splitlines()[1:] if "refreshed " in x and "; fresh" in x)
    assert f"in {rec.duration:.3f}s, 0 rows; fresh" in line
    item = freshstatus.status_report("default")["viewtest.MaterializedViewWithIndex"]
    assert item["last_refresh"] is not None and not item["stale"] and item["rows"] == 0
    call_command("refresh_pgviews", "--stale", verbosity=0)
    # Fresh: left alone by --stale, while views never refreshed were refreshed.
    assert history.records(model).count() == 1
    assert RefreshRecord.objects.filter(view="viewtest.MaterializedRelatedView").count() == 1


# -- migrate: a fresh database, views set aside ------------------------------------------------


@pytest.fixture
def txproj(tmp_path):
    from tests.test_migrate_aside import DB, Project

    path = tmp_path / "txproj"
    shutil.copytree(HERE / "txproj", path, ignore=shutil.ignore_patterns("__pycache__"))
    (path / "shop" / "migrations").mkdir()
    (path / "shop" / "migrations" / "__init__.py").write_text("")
    psycopg_compat.recreate_database(DB)
    try:
        yield Project(path), DB
    finally:
        psycopg_compat.drop_database(DB)


def _records(db: str) -> list[tuple]:
    return psycopg_compat.query(
        db, "SELECT view, plain_reason, ok, rows FROM django_pgviews_c_refresh ORDER BY id"
    )


def test_first_migrate_records_and_a_set_aside_restore_records(txproj):
    project, db = txproj
    project.ok("makemigrations", "shop")
    # The history table is created by the same migrate whose post_migrate builds the views.
    project.ok("migrate", "-v", "0")
    # Names is built WITH DATA; CheapCount (with_data = False) is created empty: no refresh.
    assert _records(db) == [("shop.Names", "built by sync", True, 0)]
    psycopg_compat.query(db, "INSERT INTO shop_item (price, name) VALUES (5, 'a'), (7, 'b'), (20, 'c')")
    project.ok("refresh_pgviews", "-v", "0")
    before = len(_records(db))
    # A retyped column sets Cheap and CheapCount aside; CheapCount held data, so it is
    # re-created empty and re-populated after the migrations: a refresh, in that transaction.
    project.edit_models(
        "price = models.IntegerField()\n    name", "price = models.BigIntegerField()\n    name"
    )
    project.ok("makemigrations", "shop", "-n", "bigger_price")
    done = project.ok("migrate")
    assert "Re-populated 1 materialized view that held data before (" in done.stdout
    new = _records(db)[before:]
    assert new == [("shop.CheapCount", "re-populated after migrate", True, 1)]
    status = project.ok("pgviews_status")
    assert "fresh" in status.stdout
