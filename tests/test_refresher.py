"""refresh_pgviews by name, --stale and --due, the pgviews_refresher loop and the Celery task,
each in real processes against a database of their own (tests/freshproject)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import processes, psycopg_compat

ROOT = Path(__file__).resolve().parent.parent
SUFFIX = os.environ.get("PGVIEWS_DB_SUFFIX", "") + "_refresher"
DB = "pgviews_c_fresh" + SUFFIX
SETTINGS = "tests.freshproject.settings"
WAIT = 120.0  # seconds a process may take to do what a test waits for


def env() -> dict[str, str]:
    return processes.django_env(SETTINGS, SUFFIX)


def django(*args: str) -> subprocess.CompletedProcess:
    return processes.django(*args, settings=SETTINGS, suffix=SUFFIX)


def rows(sql: str) -> list[tuple]:
    return psycopg_compat.query(DB, sql)


def write(sql: str) -> None:
    """A committed write whose statistics are flushed when it ends."""
    rows("SELECT pg_stat_force_next_flush(); " + sql)


def records(view: str) -> int:
    return rows(f"SELECT count(*) FROM django_pgviews_c_refresh WHERE view = 'freshapp.{view}' AND ok")[0][0]


@pytest.fixture(scope="module")
def fresh_db():
    psycopg_compat.query("postgres", f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
    psycopg_compat.query("postgres", f'CREATE DATABASE "{DB}"')
    try:
        done = django("migrate", "--run-syncdb", "-v", "0")
        assert done.returncode == 0, done.stderr
        yield
    finally:
        psycopg_compat.query("postgres", f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')


@pytest.fixture
def clean(fresh_db):
    rows("DELETE FROM django_pgviews_c_refresh")
    yield


def lines_of(out: str, prefix: str) -> list[str]:
    return sorted(line.split()[1].rstrip(":") for line in out.splitlines() if line.startswith(prefix))


ALL = ["freshapp.DueEveryTime", "freshapp.DueHourly", "freshapp.ReadsDue", "freshapp.Unscheduled"]


@pytest.mark.usefixtures("clean")
class TestRefreshCommand:
    def test_stale_refreshes_stale_views_and_skips_fresh_ones(self):
        done = django("refresh_pgviews", "--stale")
        assert done.returncode == 0, done.stderr
        assert lines_of(done.stdout, "refreshed freshapp") == ALL  # never refreshed by the app: stale
        done = django("refresh_pgviews", "--stale")
        assert lines_of(done.stdout, "refreshed freshapp") == []
        assert "refreshed 0 materialized views" in done.stdout
        assert lines_of(done.stdout, "skipped   freshapp") == ALL
        assert "skipped   freshapp.ReadsDue: fresh" in done.stdout
        # One view refreshed by name makes the one that reads it stale, and only that one.
        done = django("refresh_pgviews", "freshapp.DueEveryTime")
        assert done.returncode == 0, done.stderr
        assert "refreshed freshapp.DueEveryTime" in done.stdout
        done = django("refresh_pgviews", "--stale", "--jobs", "2")
        assert done.returncode == 0, done.stderr
        assert lines_of(done.stdout, "refreshed freshapp") == ["freshapp.ReadsDue"]
        assert "freshapp.DueEveryTime: fresh" in done.stdout

    def test_a_write_makes_its_readers_stale(self):
        assert django("refresh_pgviews", "--stale").returncode == 0
        write("INSERT INTO freshapp_reading (value) VALUES (7)")
        done = django("refresh_pgviews", "--stale")
        # Every view reads the table, ReadsDue through DueEveryTime, refreshed first.
        assert lines_of(done.stdout, "refreshed freshapp") == ALL
        order = [
            line.split()[1] for line in done.stdout.splitlines() if line.startswith("refreshed freshapp")
        ]
        assert order.index("freshapp.DueEveryTime") < order.index("freshapp.ReadsDue")
        assert rows("SELECT n, total FROM freshapp_dueeverytime") == [(1, 7)]

    def test_due_refreshes_stale_views_whose_interval_passed(self):
        assert django("refresh_pgviews", "--stale").returncode == 0
        write("INSERT INTO freshapp_reading (value) VALUES (1)")
        done = django("refresh_pgviews", "--due")
        assert done.returncode == 0, done.stderr
        assert lines_of(done.stdout, "refreshed freshapp") == [
            "freshapp.DueEveryTime",
            "freshapp.ReadsDue",
        ]
        assert (
            "skipped   freshapp.Unscheduled: stale (table freshapp_reading had 1 writes) but has no refresh_interval"
            in done.stdout
        )
        assert (
            "skipped   freshapp.DueHourly: stale (table freshapp_reading had 1 writes), due at "
            in done.stdout
        )

    def test_names_with_dependants_and_dependencies(self):
        done = django("refresh_pgviews", "freshapp.DueEveryTime", "--with-dependants")
        assert lines_of(done.stdout, "refreshed freshapp") == ["freshapp.DueEveryTime", "freshapp.ReadsDue"]
        done = django("refresh_pgviews", "freshapp.ReadsDue", "--with-dependencies")
        assert lines_of(done.stdout, "refreshed freshapp") == ["freshapp.DueEveryTime", "freshapp.ReadsDue"]
        done = django("refresh_pgviews", "freshapp")
        assert lines_of(done.stdout, "refreshed freshapp") == ALL

    def test_unknown_names_are_errors(self):
        for name, message in (
            ("freshapp.Nope", "freshapp.Nope: no such model"),
            ("freshapp.Reading", "freshapp.Reading is not a view or materialized view"),
            ("nope", "nope: no installed app with that label"),
        ):
            done = django("refresh_pgviews", name)
            assert done.returncode == 1
            assert message in done.stderr and "Traceback" not in done.stderr
        assert rows("SELECT count(*) FROM django_pgviews_c_refresh") == [(0,)]


def refresher() -> processes.Reader:
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", "django", "pgviews_refresher", "--poll", "0.3"],
        cwd=ROOT,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return processes.Reader(proc)


def wait_until(check, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@pytest.mark.usefixtures("clean")
def test_one_refresher_works_the_other_stands_by_and_takes_over():
    first = refresher()
    second = None
    try:
        first.wait_for("active: refreshing due views of database 'default'")
        second = refresher()
        second.wait_for("standby: another refresher works on database 'default'")
        # The due views (never refreshed) are refreshed; the unscheduled one is left alone.
        first.wait_for("refreshed freshapp.ReadsDue")
        assert records("DueEveryTime") == 1 and records("Unscheduled") == 0 and records("DueHourly") == 1
        count = rows("SELECT count(*) FROM freshapp_reading")[0][0]
        first.seen.clear()  # lines of the first pass
        write("INSERT INTO freshapp_reading (value) VALUES (3)")
        first.wait_for("refreshed freshapp.DueEveryTime")
        wait_until(lambda: rows("SELECT n FROM freshapp_dueeverytime") == [(count + 1,)])
        assert records("DueHourly") == 1  # stale, not due for an hour
        first.stop(signal.SIGTERM, timeout=WAIT)
        first.wait_for("SIGTERM: stopping")
        second.wait_for("active: refreshing due views of database 'default'")
        write("INSERT INTO freshapp_reading (value) VALUES (4)")
        second.wait_for("refreshed freshapp.DueEveryTime")
        wait_until(lambda: rows("SELECT n FROM freshapp_dueeverytime") == [(count + 2,)])
        second.stop(signal.SIGINT, timeout=WAIT)
    finally:
        processes.kill_running(first, second)


@pytest.mark.usefixtures("clean")
def test_a_signal_between_passes_does_not_speak_of_a_running_refresh():
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", "django", "pgviews_refresher", "--poll", "60"],
        cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    out = processes.Reader(proc)
    try:
        # The first pass refreshes the due views (never refreshed); the next check is a poll away.
        out.wait_for("refreshed freshapp.ReadsDue")
        proc.send_signal(signal.SIGTERM)
        line = out.wait_for("SIGTERM: stopping")
        assert line.endswith("SIGTERM: stopping (no refresh was running)"), line
        out.wait_for("stopped")
        assert proc.wait(timeout=WAIT) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.usefixtures("clean")
def test_the_refresher_names_a_view_that_does_not_exist_once():
    rows("DROP MATERIALIZED VIEW freshapp_unscheduled")  # as a DROP ... CASCADE of its table would
    out = refresher()
    try:
        line = out.wait_for("skipped   freshapp.Unscheduled")
        assert line.endswith("freshapp.Unscheduled: does not exist: migrate (or sync_pgviews) creates it"), (
            line
        )
        out.wait_for("refreshed freshapp.ReadsDue")  # the first pass
        write("INSERT INTO freshapp_reading (value) VALUES (5)")
        out.wait_for("refreshed freshapp.DueEveryTime")  # a later pass: said once, not every pass
        out.stop(signal.SIGTERM, timeout=WAIT)
        while not out.lines.empty():
            out.seen.append(out.lines.get())
        assert not any("freshapp.Unscheduled" in seen for seen in out.seen), out.seen
    finally:
        processes.kill_running(out)
        assert django("sync_pgviews", "-v", "0").returncode == 0


# -- Celery ------------------------------------------------------------------------------------


@pytest.mark.usefixtures("clean")
def test_celery_task_refreshes_due_views_in_a_real_worker():
    from django_pgviews_c.history import missing_history

    celery = pytest.importorskip(
        "celery", reason="celery is not installed in this venv (the `test` extra has it)"
    )
    broker = os.environ.get("PGVIEWS_CELERY_BROKER", "redis://127.0.0.1:6379/0")
    queue_name = "pgviews_c" + SUFFIX  # apart from anyone else's workers on the same Redis
    worker_env = env()
    worker_env["PGVIEWS_CELERY_BROKER"] = broker
    worker = processes.Reader(
        processes.celery_worker("tests.freshproject.celery_app", queue_name, worker_env)
    )
    client = celery.Celery(broker=broker, backend=broker)
    try:
        worker.wait_for("ready.")
        assert "django_pgviews_c.tasks.refresh_due" in "\n".join(worker.seen)  # registered
        outcome = client.send_task("django_pgviews_c.tasks.refresh_due", queue=queue_name).get(timeout=WAIT)
        assert outcome["standby"] is False and outcome["failed"] == {}
        assert sorted(outcome["refreshed"]) == [
            "freshapp.DueEveryTime",
            "freshapp.DueHourly",
            "freshapp.ReadsDue",
        ]
        assert outcome["skipped"] == {
            "freshapp.Unscheduled": "stale (no successful refresh recorded) but has no refresh_interval"
        }
        assert records("DueEveryTime") == 1 and records("Unscheduled") == 0
        # Nothing is stale now: the next run refreshes nothing.
        outcome = client.send_task("django_pgviews_c.tasks.refresh_due", queue=queue_name).get(timeout=WAIT)
        assert outcome["refreshed"] == [] and outcome["waiting"] is None
        # Without the app's migrations (no history table) nothing could be recorded: every view
        # would stay stale and be refreshed on every beat. The task refreshes nothing, says why.
        assert django("migrate", "django_pgviews_c", "zero", "-v", "0").returncode == 0
        try:
            outcome = client.send_task("django_pgviews_c.tasks.refresh_due", queue=queue_name).get(
                timeout=WAIT
            )
            assert outcome["refreshed"] == [] and outcome["standby"] is False, outcome
            assert outcome["waiting"].startswith(missing_history("default") + ". "), outcome
            assert "run manage.py migrate." in outcome["waiting"], outcome
        finally:
            done = django("migrate", "django_pgviews_c", "-v", "0")
            assert done.returncode == 0, done.stderr
    finally:
        processes.stop(worker.proc)
        client.close()


@pytest.mark.usefixtures("clean")
def test_pgviews_status_shows_last_refresh_and_staleness_and_json():
    import json

    assert django("refresh_pgviews", "freshapp.DueEveryTime", "freshapp.DueHourly").returncode == 0
    write("INSERT INTO freshapp_reading (value) VALUES (5)")
    done = django("pgviews_status")
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert "never refreshed; stale: no successful refresh recorded" in text  # ReadsDue, Unscheduled
    assert "stale: table freshapp_reading had 1 writes" in text
    assert " ago in " in text and " rows" in text
    done = django("pgviews_status", "--json")
    assert done.returncode == 0, done.stderr
    items = {item["label"]: item for item in json.loads(done.stdout)}
    due = items["freshapp.DueEveryTime"]["freshness"]
    assert due["stale"] and due["why"] == ["table freshapp_reading had 1 writes"] and due["due"]
    assert (
        due["last_refresh"] and due["age_seconds"] >= 0 and due["rows"] == 1 and due["last_failure"] is None
    )
    assert items["freshapp.Unscheduled"]["freshness"]["last_refresh"] is None
    assert items["freshapp.Unscheduled"]["freshness"]["refresh_interval"] is None
