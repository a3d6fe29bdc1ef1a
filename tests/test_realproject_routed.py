"""A project switched from django-pgviews-redux whose views live on a second database, sent there
by a router: two `with_data = False` materialized views with several indexes, created by
`migrate --database state`, populated by redux's `refresh_pgviews`. Each step is a real
`python -m django` process of a small project written to a temporary folder, first with redux,
then with the one-line change to django_pgviews_c; then the newcomer's two mistakes on it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from tests import psycopg_compat

pytest.importorskip("django_pgviews", reason="django-pgviews-redux 1.3 (the test extra) needs Python 3.11+")

ROOT = Path(__file__).resolve().parent.parent
SUFFIX = os.environ.get("PGVIEWS_DB_SUFFIX", "")
MAIN_DB = "pgviews_c_rproute_main" + SUFFIX
STATE_DB = "pgviews_c_rproute_state" + SUFFIX

SETTINGS = """
import os

PGVIEWS_PKG = os.environ["PGVIEWS_PKG"]
_db = dict(
    ENGINE="django.db.backends.postgresql",
    USER=os.environ.get("PGUSER", "postgres"),
    PASSWORD=os.environ.get("PGPASSWORD", ""),
    HOST=os.environ.get("PGHOST", "127.0.0.1"),
    PORT=os.environ.get("PGPORT", "5432"),
)
DATABASES = {
    "default": dict(_db, NAME=os.environ["RP_MAIN_DB"]),
    "state": dict(_db, NAME=os.environ["RP_STATE_DB"]),
}
DATABASE_ROUTERS = ["routers.StateRouter"]
MATERIALIZED_VIEWS_CHECK_SQL_CHANGED = True
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", PGVIEWS_PKG, "state"]
SECRET_KEY = "rproute"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
"""

ROUTERS = """
class StateRouter:
    # The app named like a database alias lives there, and only there.
    def db_for_read(self, model, **hints):
        return "state" if model._meta.app_label == "state" else "default"

    db_for_write = db_for_read

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        return db == ("state" if app_label == "state" else "default")
"""

MODELS = """
import importlib
import os

from django.conf import settings
from django.db import models

pg = importlib.import_module(settings.PGVIEWS_PKG + ".view")


class Stop(models.Model):
    agency = models.IntegerField()
    date = models.DateTimeField()
    arrest = models.BooleanField()


SUMMARY_SQL = '''
    SELECT ROW_NUMBER() OVER () AS id, agency,
           DATE_TRUNC('month', date AT TIME ZONE 'UTC')::date AS date,
           "state_stop"."arrest", count(*)::int AS count
    FROM state_stop GROUP BY 2, 3, 4
'''
if os.environ.get("RP_TYPO"):
    SUMMARY_SQL = SUMMARY_SQL.replace('"state_stop"."arrest"', '"state_stop"."arest"')


class StopSummary(pg.ReadOnlyMaterializedView):
    sql = SUMMARY_SQL
    with_data = False

    id = models.PositiveIntegerField(primary_key=True)
    agency = models.IntegerField()
    date = models.DateField()
    arrest = models.BooleanField()
    count = models.IntegerField()
    if os.environ.get("RP_EXTRA_FIELD"):
        gender = models.CharField(max_length=8)

    class Meta:
        managed = False
        indexes = [
            models.Index(fields=["agency"]),
            models.Index(fields=["date"]),
            models.Index(fields=["agency", "date"]),
        ]


class ArrestSummary(pg.ReadOnlyMaterializedView):
    sql = "SELECT agency AS id, count(*)::int AS arrests FROM state_stop WHERE arrest GROUP BY agency"
    with_data = False

    id = models.IntegerField(primary_key=True)
    arrests = models.IntegerField()

    class Meta:
        managed = False
        indexes = [models.Index(fields=["arrests"])]
"""

MIGRATION = """
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    dependencies = []
    operations = [
        migrations.CreateModel(
            name="Stop",
            fields=[
                ("id", models.AutoField(primary_key=True, serialize=False)),
                ("agency", models.IntegerField()),
                ("date", models.DateTimeField()),
                ("arrest", models.BooleanField()),
            ],
        ),
    ]
"""

VIEWS = ("state_stopsummary", "state_arrestsummary")


def q(sql: str, params=None) -> list[tuple]:
    return psycopg_compat.query(STATE_DB, sql, params)


def django(path: Path, package: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    environ = dict(
        os.environ,
        DJANGO_SETTINGS_MODULE="settings",
        RP_MAIN_DB=MAIN_DB,
        RP_STATE_DB=STATE_DB,
        PGVIEWS_PKG=package,
        PYTHONPATH=os.pathsep.join([str(path), str(ROOT)]),
        **env,
    )
    environ.pop("PGVIEWS_DB_SUFFIX", None)
    return subprocess.run(
        [sys.executable, "-m", "django", *args],
        cwd=path,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
    )


def ok(path: Path, package: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    done = django(path, package, *args, **env)
    assert done.returncode == 0, f"{package} {args}: {done.stdout}\n{done.stderr}"
    return done


def catalog() -> list[tuple]:
    """What a user of the state database sees: each view's oid, populated flag, definition,
    indexes and rows."""
    out = []
    for name in VIEWS:
        rows = q(
            "SELECT c.oid::bigint, c.relispopulated, pg_get_viewdef(c.oid), "
            "(SELECT array_agg(indexname::text ORDER BY indexname) FROM pg_indexes i WHERE i.tablename = c.relname) "
            "FROM pg_class c WHERE c.relname = %s AND c.relkind = 'm'",
            [name],
        )
        assert rows, f"{name} does not exist"
        # The rows without their id: the project numbers them with row_number() OVER (), whose
        # order a refresh may change (PostgreSQL 18 planned it differently from the first build).
        out.append((name, *rows[0], sorted(r[1:] for r in q(f"SELECT * FROM {name}"))))
    return out


@pytest.fixture
def redux_project(tmp_path):
    """Both databases built by redux (`migrate` on each alias, as the project's deploy does)
    and the views populated by redux's refresh_pgviews."""
    for name in (MAIN_DB, STATE_DB):
        psycopg_compat.recreate_database(name)
    path = tmp_path / "rproute"
    (path / "state" / "migrations").mkdir(parents=True)
    (path / "settings.py").write_text(textwrap.dedent(SETTINGS))
    (path / "routers.py").write_text(textwrap.dedent(ROUTERS))
    (path / "state" / "__init__.py").write_text("")
    (path / "state" / "models.py").write_text(textwrap.dedent(MODELS))
    (path / "state" / "migrations" / "__init__.py").write_text("")
    (path / "state" / "migrations" / "0001_initial.py").write_text(textwrap.dedent(MIGRATION))
    ok(path, "django_pgviews", "migrate", "-v", "0")
    ok(path, "django_pgviews", "migrate", "-v", "0", "--database", "state")
    q(
        "INSERT INTO state_stop (agency, date, arrest) SELECT i % 3, "
        "timestamptz '2024-01-01' + (i % 5) * interval '40 days', i % 4 = 0 FROM generate_series(1, 60) i"
    )
    ok(path, "django_pgviews", "refresh_pgviews", "--database", "state")
    assert all(row[2] for row in catalog()), "redux's refresh_pgviews populated the views"
    assert q("SELECT count(*) FROM state_stopsummary") != [(0,)]
    yield path
    for name in (MAIN_DB, STATE_DB):
        psycopg_compat.drop_database(name)


class Reader(threading.Thread):
    """Reads both views in a loop until stopped; keeps every error it meets."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.errors: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                q(
                    "SELECT (SELECT count(*) FROM state_stopsummary) + (SELECT count(*) FROM state_arrestsummary)"
                )
            except Exception as exc:  # every failure is a finding
                self.errors.append(str(exc).splitlines()[0])


def test_switch_keeps_routed_views_and_their_data(redux_project):
    before = catalog()
    reader = Reader()
    reader.start()
    try:
        ok(redux_project, "django_pgviews_c", "migrate")
        ok(redux_project, "django_pgviews_c", "migrate", "--database", "state")
    finally:
        reader.stop.set()
        reader.join()
    assert reader.errors == [], "queries failed while migrate switched the project"
    assert catalog() == before, "an unchanged view was rebuilt, emptied or lost an index"

    # The views are on the state database only; the default one has none and says so.
    status = ok(redux_project, "django_pgviews_c", "pgviews_status", "--check", "--database", "state")
    assert "state.StopSummary" in status.stdout and "2 views, 0 not in sync" in status.stdout
    plan = ok(redux_project, "django_pgviews_c", "sync_pgviews", "--plan", "--database", "state")
    assert "state: nothing to do" in plan.stdout
    plan = ok(redux_project, "django_pgviews_c", "sync_pgviews", "--plan")
    assert "no views belong to database 'default'" in plan.stdout

    # No concurrent_index: the refresh says why it is not concurrent, and refreshes.
    done = ok(
        redux_project,
        "django_pgviews_c",
        "refresh_pgviews",
        "--concurrently",
        "--jobs",
        "2",
        "--database",
        "state",
    )
    assert "refreshed 2 materialized views" in done.stdout
    assert "Cannot refresh state.StopSummary concurrently: it has no concurrent_index" in done.stderr
    assert catalog() == before


def test_sql_typo_fails_the_deploy_naming_the_view_and_changes_nothing(redux_project):
    before = catalog()
    done = django(redux_project, "django_pgviews_c", "migrate", "--database", "state", RP_TYPO="1")
    assert done.returncode == 1
    assert "state.StopSummary" in done.stderr
    assert "column state_stop.arest does not exist" in done.stderr
    assert 'Perhaps you meant to reference the column "state_stop.arrest"' in done.stderr
    assert "Traceback" not in done.stderr
    assert catalog() == before
    plan = django(
        redux_project, "django_pgviews_c", "sync_pgviews", "--plan", "--database", "state", RP_TYPO="1"
    )
    assert plan.returncode == 1
    assert "the sync would FAIL" in plan.stdout and "state_stop.arest" in plan.stderr
    assert catalog() == before
    # sync_pgviews is one transaction: its error says that nothing was changed, and it is true.
    done = django(redux_project, "django_pgviews_c", "sync_pgviews", "--database", "state", RP_TYPO="1")
    assert done.returncode == 1 and "state_stop.arest" in done.stderr, done.stderr
    assert "The transaction was rolled back: nothing was changed." in done.stderr, done.stderr
    assert catalog() == before


def test_field_the_sql_lacks_is_named_and_not_sent_to_sync(redux_project):
    """A field the view's SQL does not produce: the deploy warns and changes nothing, and
    pgviews_status --check names the view and the fix, which is in the code: sync_pgviews has
    nothing to change (its plan says so), so --check must not send the user there."""
    ok(redux_project, "django_pgviews_c", "migrate", "--database", "state")
    before = catalog()
    done = ok(redux_project, "django_pgviews_c", "migrate", "--database", "state", RP_EXTRA_FIELD="1")
    # Said once, by the sync after the migrations (the checks before them leave it to the sync).
    said = done.stdout + done.stderr
    assert said.count("state.StopSummary.gender: the view") == 1 and "has no column 'gender'" in said
    assert catalog() == before

    status = django(
        redux_project,
        "django_pgviews_c",
        "pgviews_status",
        "--check",
        "--database",
        "state",
        RP_EXTRA_FIELD="1",
    )
    assert status.returncode == 1
    line = next(line for line in status.stdout.splitlines() if line.startswith("state.StopSummary "))
    assert "columns" in line and "field 'gender' reads column 'gender'" in line
    assert "state.StopSummary" in status.stderr
    assert "add the column to the SQL or fix the field" in status.stderr
    assert "run sync_pgviews" not in status.stderr
    plan = ok(
        redux_project, "django_pgviews_c", "sync_pgviews", "--plan", "--database", "state", RP_EXTRA_FIELD="1"
    )
    assert "state: nothing to do" in plan.stdout
    assert catalog() == before
