"""What a refresh says when it fails or is interrupted: the server's DETAIL and HINT, the way out
for a missing unique index, redux's exceptions for redux's callers, and after Ctrl-C which views
were refreshed and which were not."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection, connections

from django_pgviews_c.exceptions import ConcurrentIndexNotDefinedError, PGViewsError, RefreshError
from django_pgviews_c.models import RefreshRecord
from django_pgviews_c.refresh import refresh_views
from tests import processes, psycopg_compat
from tests.helpers import ViewSet, catalog_rows, execute
from tests.viewtest import models as vm

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def dup_source(transactional_db):
    execute("CREATE TABLE t_dupsrc (k int); INSERT INTO t_dupsrc VALUES (1), (2)")
    vs = ViewSet()
    models = [
        vs.view("DupA", "SELECT k FROM t_dupsrc", materialized=True, concurrent_index="k"),
        vs.view("DupB", "SELECT k FROM t_dupsrc", materialized=True, concurrent_index="k"),
    ]
    vs.sync()
    yield models
    execute("DROP TABLE IF EXISTS t_dupsrc CASCADE")


@pytest.mark.parametrize("jobs", [1, 2])
def test_refresh_errors_carry_detail(dup_source, jobs):
    execute("INSERT INTO t_dupsrc VALUES (2)")
    with pytest.raises(RefreshError) as info:
        refresh_views(dup_source, jobs=jobs)
    text = str(info.value)
    assert "could not create unique index" in text
    assert "DETAIL: Key (k)=(2) is duplicated." in text


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_missing_unique_index_says_to_run_sync(dup_source, jobs):
    execute(
        "DROP INDEX t_dupa_k_index"
        if _index("t_dupa") == "t_dupa_k_index"
        else f"DROP INDEX {_index('t_dupa')}"
    )
    with pytest.raises(RefreshError) as info:
        refresh_views(dup_source, jobs=jobs, concurrently=True)
    text = info.value.failures["viewtest.DupA"]
    assert "concurrently" in text and "run sync_pgviews" in text
    assert "HINT: Create a unique index" in text


def _index(table: str) -> str:
    return catalog_rows("SELECT indexname FROM pg_indexes WHERE tablename = %s", [table])[0][0]


def test_a_connection_override_that_gives_none_stops_the_refresh_naming_the_view(transactional_db):
    @classmethod
    def no_refresh_connection(cls, using, restricted_mode=True):
        # Belongs to the database (it is synced there), but names no connection to refresh on.
        return connections[using] if restricted_mode else None

    execute("CREATE TABLE t_noconn_src (k int); INSERT INTO t_noconn_src VALUES (1)")
    try:
        vs = ViewSet()
        model = vs.view(
            "NoConn",
            "SELECT k FROM t_noconn_src",
            materialized=True,
            get_view_connection=no_refresh_connection,
        )
        vs.sync()
        execute("INSERT INTO t_noconn_src VALUES (2)")
        with pytest.raises(PGViewsError) as info:
            refresh_views([model])
        assert not isinstance(info.value, RefreshError)
        assert str(info.value) == (
            "viewtest.NoConn: get_view_connection(restricted_mode=False) returned no connection"
        )
        # Not refreshed, and nothing recorded but the sync that built it.
        assert catalog_rows("SELECT count(*) FROM t_noconn") == [(1,)]
        recorded = RefreshRecord.objects.filter(view="viewtest.NoConn").values_list("plain_reason", flat=True)
        assert list(recorded) == ["built by sync"]
    finally:
        execute("DROP MATERIALIZED VIEW IF EXISTS t_noconn; DROP TABLE IF EXISTS t_noconn_src")


@pytest.mark.django_db(databases=["default", "weather_db"])
def test_model_refresh_on_another_database():
    from tests.multidbtest.models import MonthlyObservation

    # The router sends it to weather_db; using= picks the database, as Django's own API does.
    MonthlyObservation.refresh(using="weather_db")
    with pytest.raises(Exception) as info:
        MonthlyObservation.refresh(using="default")
    assert type(info.value).__name__ == "UndefinedTable"


@pytest.mark.django_db
def test_call_command_strict_raises_what_redux_raised():
    # A row the views would show once refreshed: the refusal comes before any refresh.
    before = vm.MaterializedRelatedViewWithIndex.objects.count()
    vm.TestModel.objects.create(name="unseen")
    with pytest.raises(ConcurrentIndexNotDefinedError, match="viewtest.MaterializedRelatedView"):
        call_command("refresh_pgviews", concurrently=True, strict=True)
    assert vm.MaterializedRelatedViewWithIndex.objects.count() == before
    assert not vm.MaterializedRelatedViewWithIndex.objects.filter(model__name="unseen").exists()


def _env(settings: str = "tests.settings", extra_path: str = "") -> dict:
    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = settings
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in [extra_path, str(ROOT), env.get("PYTHONPATH", "")] if p)
    return env


def test_the_command_line_keeps_one_paragraph_and_exit_1():
    done = subprocess.run(
        [sys.executable, "-m", "django", "refresh_pgviews", "--concurrently", "--strict"],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("CommandError: Cannot refresh viewtest.")


@pytest.fixture
def lock_on_dependant(transactional_db):
    """Another session reads DependantMaterializedView in an open transaction: its plain
    refresh waits (retrying) for as long as the test wants."""
    conn = psycopg_compat._connect(connection.settings_dict["NAME"])
    conn.autocommit = False
    conn.cursor().execute("SELECT count(*) FROM viewtest_dependantmaterializedview")
    yield
    conn.rollback()
    conn.close()


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_ctrl_c_says_what_was_refreshed_and_what_was_not(lock_on_dependant, tmp_path, jobs):
    (tmp_path / "interrupt_settings.py").write_text(
        "from tests.settings import *  # noqa\n"
        f"DATABASES['default'] = dict(DATABASES['default'], NAME={connection.settings_dict['NAME']!r})\n"
        "PGVIEWS_REFRESH_RETRIES = 100000\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-m", "django", "refresh_pgviews", "-v", "2", "--jobs", jobs],
        cwd=ROOT,
        env=_env("interrupt_settings", str(tmp_path)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: list[str] = []

    def refreshed_but_the_locked_one() -> None:
        # Every view but the locked one is refreshed, then the child waits for the lock.
        deadline = time.monotonic() + 60
        while "viewtest.MaterializedRelatedView" not in " ".join(seen):
            assert time.monotonic() < deadline and child.poll() is None, seen
            seen.append(child.stdout.readline())

    out, err = processes.interrupt(child, signal.SIGINT, refreshed_but_the_locked_one, timeout=30)
    assert child.returncode == 128 + signal.SIGINT
    assert "Traceback" not in err
    assert "interrupted by SIGINT: refreshed before the interrupt: " in err
    before, _, after = err.partition("; not refreshed (their refreshes were cancelled): ")
    assert "viewtest.MaterializedRelatedView" in before
    assert (
        "viewtest.DependantMaterializedView" in after and "viewtest.DependantMaterializedView" not in before
    )
    assert "nothing was changed" not in err
