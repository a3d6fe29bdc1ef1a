"""The management commands: sync_pgviews, refresh_pgviews, clear_pgviews (redux's options and
ours), through call_command inside the test transaction and as real `python -m django`
processes against databases of their own."""

from __future__ import annotations

import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from django_pgviews_c.exceptions import ConcurrentIndexNotDefinedError
from django_pgviews_c.signals import view_synced
from tests import processes, psycopg_compat
from tests.helpers import catalog_rows, execute, populated, relkind
from tests.viewtest import models

ROOT = Path(__file__).resolve().parent.parent
VIEWTEST_COUNT = 12


def run(*args: str, check: bool = True) -> tuple[int, str, str]:
    out, err = StringIO(), StringIO()
    try:
        call_command(*args, stdout=out, stderr=err)
        code = 0
    except CommandError:
        if check:
            raise
        code = 1
    return code, out.getvalue(), err.getvalue()


# -- sync_pgviews through call_command --------------------------------------------------------------


@pytest.mark.django_db
class TestSyncCommand:
    def test_warm_sync_reports_nothing_changed(self):
        _, out, _ = run("sync_pgviews")
        assert f"{VIEWTEST_COUNT} views on 'default': 0 changed, {VIEWTEST_COUNT} unchanged" in out

    def test_verbose_lists_each_status(self):
        execute("DROP VIEW viewtest_dependantview")
        _, out, _ = run("sync_pgviews", "-v", "2")
        lines = {tuple(line.split()[:2]) for line in out.splitlines() if line.startswith("  ")}
        assert ("CREATED", "viewtest.DependantView") in lines
        assert ("EXISTS", "viewtest.RelatedView") in lines
        assert relkind("viewtest_dependantview") == "v"

    def test_incompatible_change_needs_force(self):
        execute("DROP VIEW viewtest_relatedview CASCADE")
        execute("CREATE VIEW viewtest_relatedview AS SELECT id AS model_id, name, id FROM viewtest_testmodel")
        execute("CREATE VIEW viewtest_dependantview AS SELECT model_id FROM viewtest_relatedview")
        with pytest.raises(CommandError) as info:
            run("sync_pgviews")
        assert "--force" in str(info.value)
        assert "viewtest.RelatedView" in str(info.value)
        # Nothing changed: the hand-made column is still there.
        assert catalog_rows(
            "SELECT count(*) FROM information_schema.columns "
            "WHERE table_name = 'viewtest_relatedview' AND column_name = 'name'"
        ) == [(1,)]
        seen = {}

        def on_view(sender, **kwargs):
            seen[sender] = kwargs["status"]

        view_synced.connect(on_view, weak=False)
        try:
            run("sync_pgviews", "--force")
        finally:
            view_synced.disconnect(on_view)
        assert seen[models.RelatedView] in ("FORCED", "UPDATED")
        assert catalog_rows(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_name = 'viewtest_relatedview' ORDER BY ordinal_position"
        ) == [("model_id",), ("id",)]
        assert relkind("viewtest_dependantview") == "v"

    def test_no_update_leaves_existing_views(self):
        models.TestModel.objects.create(name="Bob")
        execute(
            "CREATE OR REPLACE VIEW viewtest_relatedview AS "
            "SELECT id AS model_id, id FROM viewtest_testmodel WHERE false"
        )
        run("sync_pgviews", "--no-update")
        assert models.RelatedView.objects.count() == 0
        execute("DROP VIEW viewtest_superusers")
        run("sync_pgviews", "--no-update")
        assert relkind("viewtest_superusers") == "v"  # missing views are still created
        run("sync_pgviews")
        assert models.RelatedView.objects.count() == 1

    def test_check_sql_changed_flags(self):
        models.TestModel.objects.create(name="Bob")
        run("sync_pgviews", "-E")
        assert models.MaterializedRelatedView.objects.count() == 0  # unchanged: not rebuilt
        run("sync_pgviews", "-D")
        assert models.MaterializedRelatedView.objects.count() == 1  # rebuilt, so re-populated
        assert models.DependantMaterializedView.objects.count() == 1
        models.TestModel.objects.create(name="Ann")
        run("sync_pgviews", "--enable-materialized-views-check-sql-changed")
        assert models.MaterializedRelatedView.objects.count() == 1
        run("sync_pgviews", "--disable-materialized-views-check-sql-changed")
        assert models.MaterializedRelatedView.objects.count() == 2

    def test_plan_prints_actions_and_changes_nothing(self):
        execute("DROP MATERIALIZED VIEW viewtest_materializedrelatedview CASCADE")
        before = catalog_rows(
            "SELECT relname, relkind FROM pg_class WHERE relname LIKE 'viewtest%%' ORDER BY 1"
        )
        fired = []

        def on_view(sender, **kwargs):
            fired.append(sender)

        view_synced.connect(on_view, weak=False)
        try:
            _, out, _ = run("sync_pgviews", "--plan")
        finally:
            view_synced.disconnect(on_view)
        assert "default: " in out and "actions" in out
        assert "viewtest_materializedrelatedview" in out
        assert "viewtest_dependantmaterializedview" in out
        assert "lock:" in out
        assert fired == []
        assert relkind("viewtest_materializedrelatedview") is None
        assert (
            catalog_rows("SELECT relname, relkind FROM pg_class WHERE relname LIKE 'viewtest%%' ORDER BY 1")
            == before
        )

    def test_plan_with_nothing_to_do(self):
        _, out, _ = run("sync_pgviews", "--plan")
        assert out.strip() == "default: nothing to do"

    @pytest.mark.django_db(databases=["default", "weather_db"])
    def test_database_option(self):
        _, out, _ = run("sync_pgviews", "--database", "weather_db")
        assert "2 views on 'weather_db': 0 changed, 2 unchanged" in out


# -- refresh_pgviews through call_command -----------------------------------------------------------


@pytest.mark.django_db
class TestRefreshCommand:
    def test_refresh_all_in_dependency_order(self):
        models.TestModel.objects.create(name="Test")
        _, out, _ = run("refresh_pgviews")
        assert "refreshed 5 materialized views" in out
        for model in (
            models.MaterializedRelatedView,
            models.DependantMaterializedView,
            models.MaterializedRelatedViewWithIndex,
            models.MaterializedViewWithNoData,
            models.MaterializedViewWithIndex,
        ):
            assert model.objects.count() == 1, model
        assert models.DependantView.objects.count() == 1

    def test_refresh_concurrently(self):
        models.TestModel.objects.create(name="Test")
        run("refresh_pgviews")
        models.TestModel.objects.create(name="Test 2")
        _, out, _ = run("refresh_pgviews", "--concurrently", "-v", "2")
        assert "refreshed viewtest.MaterializedRelatedViewWithIndex" in out
        assert models.MaterializedRelatedViewWithIndex.objects.count() == 2
        assert models.MaterializedRelatedView.objects.count() == 2
        assert models.DependantMaterializedView.objects.count() == 2
        assert models.MaterializedViewWithNoData.objects.count() == 2

    def test_refresh_concurrently_strict_fails_with_the_view_named(self):
        models.TestModel.objects.create(name="Test")
        # call_command raises what django-pgviews-redux raised (the command line: exit 1).
        with pytest.raises(ConcurrentIndexNotDefinedError) as info:
            run("refresh_pgviews", "--concurrently", "--strict")
        assert "concurrent_index" in str(info.value)
        assert "viewtest." in str(info.value)
        # Refused before anything ran.
        assert models.MaterializedRelatedViewWithIndex.objects.count() == 0

    def test_jobs_inside_a_transaction_is_refused(self):
        with pytest.raises(CommandError) as info:
            run("refresh_pgviews", "--jobs", "2")
        assert "transaction" in str(info.value)

    def test_jobs_must_be_positive(self):
        with pytest.raises(CommandError):
            run("refresh_pgviews", "--jobs", "0")


# -- clear_pgviews ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_clear_pgviews_drops_every_view_of_the_database():
    _, out, _ = run("clear_pgviews", "-v", "2")
    assert catalog_rows("SELECT count(*) FROM pg_views WHERE viewname LIKE 'viewtest\\_%%'") == [(0,)]
    assert catalog_rows("SELECT count(*) FROM pg_matviews WHERE matviewname LIKE 'viewtest\\_%%'") == [(0,)]
    assert catalog_rows(
        "SELECT count(*) FROM information_schema.views WHERE table_schema = 'test_schema'"
    ) == [(0,)]
    assert relkind('"Mixed Case ""quoted"" select"') is None
    assert "dropped viewtest.RelatedView" in out
    # Tables stay.
    assert relkind("viewtest_testmodel") == "r"
    run("sync_pgviews")
    assert catalog_rows("SELECT count(*) FROM pg_views WHERE viewname LIKE 'viewtest\\_%%'") == [(5,)]


# -- pgviews_status ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_pgviews_status_check():
    _, out, _ = run("pgviews_status", "--check")
    assert f"{VIEWTEST_COUNT} views, 0 not in sync" in out
    execute("DROP VIEW viewtest_dependantview")
    code, out, _ = run("pgviews_status", "--check", check=False)
    assert code == 1
    line = next(line for line in out.splitlines() if line.startswith("viewtest.DependantView "))
    assert "missing" in line
    assert relkind("viewtest_dependantview") is None


@pytest.mark.django_db
def test_pgviews_status_json_gives_null_rows_where_the_server_has_no_estimate():
    import json

    # Created WITH NO DATA, and created WITH DATA but without an index and never analyzed (a
    # REFRESH of it keeps it so; a few rows are far below autovacuum's analyze threshold):
    # reltuples is -1, the server's "no estimate". Made certain before the assertion.
    names = ["viewtest_materializedviewwithnodata", "viewtest_materializedrelatedview"]
    execute("REFRESH MATERIALIZED VIEW viewtest_materializedrelatedview")
    reltuples = "SELECT relname::text, reltuples::int FROM pg_class WHERE relname = ANY(%s) ORDER BY 1"
    assert catalog_rows(reltuples, [names]) == sorted((n, -1) for n in names)
    _, out, _ = run("pgviews_status", "--json")
    rows = {r["label"]: r for r in json.loads(out)}
    for label in ("viewtest.MaterializedViewWithNoData", "viewtest.MaterializedRelatedView"):
        assert rows[label]["kind"] == "mat" and rows[label]["rows"] is None, rows[label]
    _, out, _ = run("pgviews_status")
    line = next(line for line in out.splitlines() if line.startswith("viewtest.MaterializedRelatedView "))
    assert " -1 " not in line, line


@pytest.mark.django_db
def test_pgviews_status_rows_are_the_recorded_count_the_estimate_only_without_one():
    import json

    # Refreshed by the command: its record keeps the row count, while the server still has no
    # estimate (no index, never analyzed: reltuples stays -1 after the REFRESH). Made certain first.
    run("refresh_pgviews", "viewtest.MaterializedRelatedView")
    reltuples = "SELECT reltuples::int FROM pg_class WHERE relname = 'viewtest_materializedrelatedview'"
    assert catalog_rows(reltuples) == [(-1,)]
    count = catalog_rows("SELECT count(*)::int FROM viewtest_materializedrelatedview")[0][0]
    _, out, _ = run("pgviews_status", "--json")
    rows = {r["label"]: r for r in json.loads(out)}
    got = rows["viewtest.MaterializedRelatedView"]
    assert got["freshness"]["rows"] == count, got
    assert (got["rows"], got["rows_source"]) == (count, "history"), got
    # Never refreshed: no record, no estimate.
    nodata = rows["viewtest.MaterializedViewWithNoData"]
    assert (nodata["rows"], nodata["rows_source"]) == (None, None), nodata
    _, out, _ = run("pgviews_status")
    line = next(line for line in out.splitlines() if line.startswith("viewtest.MaterializedRelatedView "))
    assert f" {count} " in line, line
    # The recorded count wins over the server's estimate, which lags: a plain refresh of a view
    # with an index leaves the exact count in reltuples, a concurrent one after a write does not.
    indexed, table = "viewtest.MaterializedRelatedViewWithIndex", "viewtest_materializedrelatedviewwithindex"
    execute("INSERT INTO viewtest_testmodel (name) SELECT 'row ' || i FROM generate_series(1, 3) i")
    run("refresh_pgviews", indexed)
    execute("INSERT INTO viewtest_testmodel (name) VALUES ('one more')")
    run("refresh_pgviews", "--concurrently", indexed)
    now = catalog_rows(f"SELECT count(*)::int FROM {table}")[0][0]
    assert catalog_rows(f"SELECT reltuples::int FROM pg_class WHERE relname = '{table}'") == [(now - 1,)]
    _, out, _ = run("pgviews_status", "--json")
    got = next(r for r in json.loads(out) if r["label"] == indexed)
    assert (got["rows"], got["rows_source"]) == (now, "history"), got
    # A view no refresh of the package recorded shows the server's estimate, said to be one.
    execute("TRUNCATE django_pgviews_c_refresh")
    _, out, _ = run("pgviews_status", "--json")
    got = next(r for r in json.loads(out) if r["label"] == indexed)
    assert (got["rows"], got["rows_source"]) == (now - 1, "estimate"), got


@pytest.mark.django_db
def test_refresh_pgviews_naming_a_plain_view_says_why_nothing_was_refreshed():
    _, out, _ = run("refresh_pgviews", "viewtest.RelatedView")
    assert (
        "skipped   viewtest.RelatedView: a plain view holds no data (it reads its tables when "
        "queried): nothing to refresh" in out
    ), out
    assert "refreshed 0 materialized views" in out
    # Named with a materialized view: that one is refreshed, the plain one said as skipped.
    _, out, _ = run("refresh_pgviews", "viewtest.RelatedView", "viewtest.MaterializedRelatedView")
    assert "refreshed viewtest.MaterializedRelatedView" in out and "skipped   viewtest.RelatedView" in out
    assert "refreshed 1 materialized view in " in out, out


@pytest.mark.django_db
def test_refresh_pgviews_stale_pass_of_one_view_says_view_not_views():
    # Never refreshed since the sync created it: stale, so the pass refreshes it.
    execute("REFRESH MATERIALIZED VIEW viewtest_materializedrelatedview")
    _, out, _ = run("refresh_pgviews", "--stale", "viewtest.MaterializedRelatedView")
    assert "refreshed viewtest.MaterializedRelatedView" in out, out
    assert "refreshed 1 materialized view in " in out, out


@pytest.mark.django_db
def test_refresh_pgviews_stale_says_what_creates_a_view_that_does_not_exist():
    execute("DROP MATERIALIZED VIEW viewtest_materializedviewwithnodata")
    _, out, _ = run("refresh_pgviews", "--stale", "viewtest.MaterializedViewWithNoData")
    assert (
        "skipped   viewtest.MaterializedViewWithNoData: does not exist: migrate (or sync_pgviews) "
        "creates it" in out
    ), out


@pytest.mark.django_db
def test_refresh_pgviews_pending_with_nothing_pending_says_so_and_why():
    _, out, _ = run("refresh_pgviews", "--pending")
    assert "nothing pending: no deferred rebuild waits (a sync that changes a view with defer_rebuild" in out
    assert "completed 0 pending rebuilds" in out


# -- real processes ---------------------------------------------------------------------------------

CMD_SUFFIX = os.environ.get("PGVIEWS_DB_SUFFIX", "") + "_cmd"


def _env() -> dict[str, str]:
    return processes.django_env(suffix=CMD_SUFFIX)


def django(*args: str, settings: str = "tests.settings") -> subprocess.CompletedProcess:
    return processes.django(*args, settings=settings, suffix=CMD_SUFFIX)


def _admin(sql: str) -> None:
    psycopg_compat.query("postgres", sql)


def proc_rows(alias_db: str, sql: str) -> list[tuple]:
    return psycopg_compat.query(alias_db + CMD_SUFFIX, sql)


VIEWS_AND_MATVIEWS = (
    "SELECT c.oid::bigint, c.relname::text, c.relkind::text, c.relispopulated FROM pg_class c "
    "WHERE c.relkind IN ('v', 'm') ORDER BY 2"
)

DBS = {"default": "pgviews_c", "weather_db": "pgviews_c_weather", "schema_db": "pgviews_c_schema"}


@pytest.fixture(scope="module")
def process_dbs():
    for name in DBS.values():
        _admin(f'DROP DATABASE IF EXISTS "{name}{CMD_SUFFIX}" WITH (FORCE)')
        _admin(f'CREATE DATABASE "{name}{CMD_SUFFIX}"')
    try:
        for alias in DBS:
            done = django("migrate", "--run-syncdb", "--database", alias, "-v", "0")
            assert done.returncode == 0, done.stderr
        yield
    finally:
        for name in DBS.values():
            _admin(f'DROP DATABASE IF EXISTS "{name}{CMD_SUFFIX}" WITH (FORCE)')


@pytest.mark.usefixtures("process_dbs")
class TestProcesses:
    def test_migrate_created_the_views(self):
        assert proc_rows("pgviews_c", "SELECT count(*) FROM pg_views WHERE viewname LIKE 'viewtest\\_%'") == [
            (5,)
        ]
        assert proc_rows("pgviews_c_weather", "SELECT matviewname FROM pg_matviews") == [
            ("multidbtest_monthlyobservation",)
        ]
        assert proc_rows(
            "pgviews_c_schema", "SELECT schemaname, viewname FROM pg_views WHERE schemaname = 'other'"
        ) == [("other", "schemadbtest_schemamonthlyobservationview")]

    def test_sync_pgviews_exit_status_and_output(self):
        done = django("sync_pgviews", "-v", "2")
        assert done.returncode == 0, done.stderr
        assert "EXISTS   viewtest.RelatedView" in done.stdout
        assert f"{VIEWTEST_COUNT} views on 'default': 0 changed" in done.stdout

    def test_sync_pgviews_plan_in_a_process(self):
        proc_rows("pgviews_c", "DROP VIEW viewtest_dependantview")
        try:
            done = django("sync_pgviews", "--plan")
            assert done.returncode == 0, done.stderr
            assert "viewtest_dependantview" in done.stdout
            assert proc_rows("pgviews_c", "SELECT to_regclass('viewtest_dependantview') IS NULL") == [(True,)]
        finally:
            assert django("sync_pgviews", "-v", "0").returncode == 0
        assert proc_rows("pgviews_c", "SELECT to_regclass('viewtest_dependantview') IS NULL") == [(False,)]

    def test_refresh_strict_exits_1_with_the_missing_index(self):
        done = django("refresh_pgviews", "--concurrently", "--strict")
        assert done.returncode == 1
        assert "CommandError" in done.stderr
        assert "concurrent_index" in done.stderr
        assert "Traceback" not in done.stderr

    def test_refresh_jobs_2_refreshes_everything(self):
        proc_rows("pgviews_c", "INSERT INTO viewtest_testmodel (name) VALUES ('a'), ('b')")
        try:
            done = django("refresh_pgviews", "--jobs", "2", "-v", "2")
            assert done.returncode == 0, done.stderr
            assert "refreshed 5 materialized views" in done.stdout
            for table in (
                "viewtest_materializedrelatedview",
                "viewtest_dependantmaterializedview",
                "viewtest_materializedviewwithnodata",
                "viewtest_materializedrelatedviewwithindex",
            ):
                assert proc_rows("pgviews_c", f"SELECT count(*) FROM {table}") == [(2,)], table
            done = django("refresh_pgviews", "--concurrently", "--jobs", "2")
            assert done.returncode == 0, done.stderr
        finally:
            proc_rows("pgviews_c", "DELETE FROM viewtest_testmodel")

    def test_refresh_database_option(self):
        proc_rows(
            "pgviews_c_weather",
            "INSERT INTO multidbtest_observation (date, temperature) VALUES ('2022-01-01', 3)",
        )
        done = django("refresh_pgviews", "--database", "default")
        assert done.returncode == 0, done.stderr
        assert proc_rows("pgviews_c_weather", "SELECT count(*) FROM multidbtest_monthlyobservation") == [(0,)]
        done = django("refresh_pgviews", "--database", "weather_db", "--concurrently", "--strict")
        assert done.returncode == 0, done.stderr
        assert "refreshed 1 materialized view in " in done.stdout
        assert proc_rows("pgviews_c_weather", "SELECT count(*) FROM multidbtest_monthlyobservation") == [(1,)]

    def test_clear_pgviews_then_sync(self):
        done = django("clear_pgviews", "--database", "schema_db")
        assert done.returncode == 0, done.stderr
        assert proc_rows(
            "pgviews_c_schema",
            "SELECT count(*) FROM pg_class WHERE relkind IN ('v', 'm') "
            "AND relnamespace = 'other'::regnamespace",
        ) == [(0,)]
        assert proc_rows("pgviews_c", "SELECT count(*) FROM pg_views WHERE viewname LIKE 'viewtest\\_%'") == [
            (5,)
        ]
        done = django("sync_pgviews", "--database", "schema_db")
        assert done.returncode == 0, done.stderr
        assert "2 views on 'schema_db': 2 changed" in done.stdout
        assert proc_rows(
            "pgviews_c_schema",
            "SELECT count(*) FROM pg_class WHERE relkind IN ('v', 'm') "
            "AND relnamespace = 'other'::regnamespace",
        ) == [(2,)]

    def test_unknown_database_is_an_error(self):
        done = django("sync_pgviews", "--database", "nope")
        assert done.returncode == 1
        assert "unknown database 'nope'" in done.stderr

    def test_database_without_views(self):
        # As in redux, an alias that no view belongs to (the router allows nothing there) is
        # not an error: there is nothing to sync, refresh or clear on it.
        before = proc_rows("pgviews_c", VIEWS_AND_MATVIEWS)
        for command in ("sync_pgviews", "refresh_pgviews", "clear_pgviews"):
            done = django(command, "--database", "spare", settings="tests.cmdproject.settings")
            assert done.returncode == 0, (command, done.stderr)
        done = django("sync_pgviews", "--database", "spare", settings="tests.cmdproject.settings")
        assert "no views belong to database 'spare'" in done.stdout
        # "spare" is the default database under another name: nothing there was touched.
        assert proc_rows("pgviews_c", VIEWS_AND_MATVIEWS) == before

    def test_pgviews_status_check_exit_status(self):
        done = django("pgviews_status", "--check")
        assert done.returncode == 0, done.stderr
        assert f"{VIEWTEST_COUNT} views, 0 not in sync" in done.stdout
        proc_rows("pgviews_c", "DROP VIEW viewtest_dependantview")
        try:
            done = django("pgviews_status", "--check")
            assert done.returncode == 1
            line = next(
                line for line in done.stdout.splitlines() if line.startswith("viewtest.DependantView ")
            )
            assert "missing" in line
            assert f"{VIEWTEST_COUNT} views, 1 not in sync" in done.stdout
            assert "not in sync: run sync_pgviews" in done.stderr
            # Without --check it reports the same and succeeds; it changed nothing.
            done = django("pgviews_status")
            assert done.returncode == 0, done.stderr
            assert proc_rows("pgviews_c", "SELECT to_regclass('viewtest_dependantview') IS NULL") == [(True,)]
            done = django("pgviews_status", "--check", "--database", "weather_db")
            assert done.returncode == 0, done.stderr
            assert "2 views, 0 not in sync" in done.stdout
        finally:
            assert django("sync_pgviews", "-v", "0").returncode == 0
        assert django("pgviews_status", "--check").returncode == 0

    def test_sync_force_and_no_update_in_a_process(self):
        proc_rows(
            "pgviews_c",
            "CREATE OR REPLACE VIEW viewtest_relatedview AS "
            "SELECT id AS model_id, id FROM viewtest_testmodel WHERE false",
        )
        try:
            done = django("sync_pgviews", "--no-update", "-v", "2")
            assert done.returncode == 0, done.stderr
            assert "EXISTS   viewtest.RelatedView" in done.stdout
            assert (
                "WHERE false" in proc_rows("pgviews_c", "SELECT pg_get_viewdef('viewtest_relatedview')")[0][0]
            )
            done = django("sync_pgviews", "--force", "-v", "2")
            assert done.returncode == 0, done.stderr
            assert "viewtest.RelatedView" in done.stdout
            assert (
                "false" not in proc_rows("pgviews_c", "SELECT pg_get_viewdef('viewtest_relatedview')")[0][0]
            )
        finally:
            assert django("sync_pgviews", "-v", "0").returncode == 0

    def test_projection_in_a_process_without_migrate(self):
        code = (
            "import django; django.setup(); from tests.viewtest.models import SimpleUser; "
            "print(sorted(f.name for f in SimpleUser._meta.fields))"
        )
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "['id', 'password', 'username']"


@pytest.mark.django_db
def test_with_data_false_view_stays_empty_after_sync():
    run("sync_pgviews")
    assert populated("viewtest_materializedviewwithnodata") is False
