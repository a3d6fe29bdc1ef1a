"""One materialized view whose refresh_interval is not a timedelta of 0 or more (FRESH_BAD_INTERVAL:
freshapp.DueHourly's is 15) is reported as misconfigured, naming it, its value and what is
expected; pgviews_status shows every other view, and refresh_pgviews --stale / --due refresh
them as usual; the exit status says it. Real processes against a database of their own
(tests/freshproject)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests import processes, psycopg_compat

SUFFIX = os.environ.get("PGVIEWS_DB_SUFFIX", "") + "_misconf"
DB = "pgviews_c_fresh" + SUFFIX
SETTINGS = "tests.freshproject.settings"
SAID = (
    "freshapp.DueHourly.refresh_interval is 15: it must be a datetime.timedelta of 0 or more "
    "(datetime.timedelta(minutes=15), say)"
)
OTHERS = ["freshapp.DueEveryTime", "freshapp.ReadsDue", "freshapp.Unscheduled"]


def django(*args: str) -> subprocess.CompletedProcess:
    return processes.django(*args, settings=SETTINGS, suffix=SUFFIX, FRESH_BAD_INTERVAL="1")


def refreshed(out: str) -> list[str]:
    return sorted(line.split()[1] for line in out.splitlines() if line.startswith("refreshed freshapp"))


@pytest.fixture
def project():
    def migrate(*args: str) -> subprocess.CompletedProcess:
        # The system checks refuse the bad interval (E007): the database is made without them.
        return django(*args, "--skip-checks")

    with processes.migrated_database(DB, migrate):
        yield


@pytest.mark.usefixtures("project")
def test_a_bad_refresh_interval_is_that_views_problem_only():
    checked = django("check")
    assert checked.returncode == 1 and "django_pgviews_c.E007" in checked.stderr, checked.stderr
    assert "freshapp.DueHourly.refresh_interval is 15" in checked.stderr

    # A committed write (its statistics flushed as it ends): every view is stale, DueEveryTime due.
    psycopg_compat.query(
        DB, "SELECT pg_stat_force_next_flush(); INSERT INTO freshapp_reading (value) VALUES (1)"
    )
    status = django("pgviews_status")
    assert status.returncode == 0, status.stderr
    assert f"misconfigured: {SAID}" in status.stdout, status.stdout
    for label in OTHERS:
        assert label in status.stdout
    failed = django("pgviews_status", "--check")
    assert failed.returncode == 1 and SAID in failed.stderr, failed.stderr
    shown = {
        item["label"]: item["freshness"] for item in json.loads(django("pgviews_status", "--json").stdout)
    }
    assert SAID in shown["freshapp.DueHourly"]["misconfigured"]
    assert shown["freshapp.DueEveryTime"]["misconfigured"] is None and shown["freshapp.DueEveryTime"]["due"]

    due = django("refresh_pgviews", "--due")
    assert due.returncode == 1, due.stdout + due.stderr
    assert refreshed(due.stdout) == ["freshapp.DueEveryTime", "freshapp.ReadsDue"], due.stdout
    assert f"skipped   freshapp.DueHourly: misconfigured: {SAID}" in due.stdout, due.stdout
    assert SAID in due.stderr, due.stderr
    # --stale does not read the interval: the view is refreshed, and the status still says it.
    stale = django("refresh_pgviews", "--stale")
    assert refreshed(stale.stdout) == ["freshapp.DueHourly", "freshapp.Unscheduled"], stale.stdout
    assert stale.returncode == 1 and SAID in stale.stderr, stale.stderr
    assert psycopg_compat.query(DB, "SELECT count(*) FROM freshapp_duehourly") == [(1,)]


@pytest.mark.usefixtures("project")
def test_the_refresher_names_the_misconfigured_view_once_and_refreshes_the_others():
    psycopg_compat.query(
        DB, "SELECT pg_stat_force_next_flush(); INSERT INTO freshapp_reading (value) VALUES (1)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", "django", "pgviews_refresher", "--poll", "0.3"],
        cwd=processes.ROOT,
        env=processes.django_env(SETTINGS, SUFFIX, FRESH_BAD_INTERVAL="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    out = processes.Reader(proc)
    try:
        line = out.wait_for("skipped   freshapp.DueHourly")
        assert line.endswith(
            f"freshapp.DueHourly: misconfigured: {SAID}, or None (refreshed by --stale or by hand)"
        )
        out.wait_for("refreshed freshapp.ReadsDue")  # the first pass
        psycopg_compat.query(
            DB, "SELECT pg_stat_force_next_flush(); INSERT INTO freshapp_reading (value) VALUES (2)"
        )
        out.wait_for("refreshed freshapp.DueEveryTime")  # a later pass: said once, not every pass
        out.stop()
        while not out.lines.empty():
            out.seen.append(out.lines.get())
        assert not any("freshapp.DueHourly" in seen for seen in out.seen), out.seen
    finally:
        processes.kill_running(out)
