"""A database where the app's own migrations are not applied (its refresh history table is
missing), as a user meets it (tests/deferproject, real processes): the warning about the history
is given once per command, and pgviews_status --check advises migrate, which creates the table
and syncs the views, not sync_pgviews, which does neither for the table."""

from __future__ import annotations

import json
import os

from tests.test_defer import defer_db, django, q  # noqa: F401 (defer_db is a fixture)

WARNING = "could not read the refresh history (django_pgviews_c_refresh)"


def _unmigrate() -> None:
    done = django("migrate", "django_pgviews_c", "zero", "-v", "0")
    assert done.returncode == 0, done.stderr
    assert q("SELECT to_regclass('django_pgviews_c_refresh') IS NULL") == [(True,)]


def test_the_missing_history_is_said_once_per_command(defer_db):  # noqa: F811
    _unmigrate()
    for args in (("refresh_pgviews", "--due"), ("refresh_pgviews", "--stale"), ("pgviews_status",)):
        done = django(*args)
        assert done.returncode == 0, done.stderr
        assert done.stderr.count(WARNING) == 1, (args, done.stderr)
        assert "(run manage.py migrate)" in done.stderr, done.stderr


def test_check_advises_migrate_where_the_apps_migrations_are_not_applied(defer_db):  # noqa: F811
    _unmigrate()
    # The code changed (DEFER_FACTOR=2): deferapp.Totals is not in sync.
    for extra in ((), ("--json",)):
        done = django("pgviews_status", "--check", *extra, factor=2)
        assert done.returncode == 1, done
        assert "run manage.py migrate, which creates the table and syncs the views (deferapp.Totals)" in (
            done.stderr
        ), done.stderr
        assert "1 view is not in sync and the refresh history table (django_pgviews_c_refresh) is " in (
            done.stderr
        ), done.stderr
        assert "sync_pgviews (deferapp.Totals)" not in done.stderr, done.stderr
        if extra:
            assert {r["label"]: r["state"] for r in json.loads(done.stdout)}["deferapp.Totals"] == "changed"
    # Once migrated, the same change is one for sync_pgviews (or migrate) as before.
    done = django("migrate", "django_pgviews_c", "-v", "0")
    assert done.returncode == 0, done.stderr
    done = django("pgviews_status", "--check", factor=2)
    assert done.returncode == 1, done.stderr
    assert "1 view is not in sync: run sync_pgviews (deferapp.Totals)" in done.stderr, done.stderr


def test_the_missing_history_is_explained_in_one_place():
    """pgviews_refresher, the Celery task and pgviews_status --check explain the missing history
    with history.missing_history's words: no other module writes them."""
    from pathlib import Path

    import django_pgviews_c
    from django_pgviews_c.history import missing_history

    assert missing_history("other") == (
        "the refresh history table (django_pgviews_c_refresh) is missing on database 'other' (the "
        "app's migrations are not applied); without it every view counts as stale and would be "
        "refreshed on every pass"
    )
    assert missing_history("other", stale=False).endswith("(the app's migrations are not applied)")
    package = Path(django_pgviews_c.__file__).parent
    saying = sorted(
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if any(
            words in path.read_text()
            for words in ("is missing on database", "history table ({", "table {history.")
        )
    )
    assert saying == ["history.py"], saying


def test_the_migrate_advice_names_a_database_other_than_default():
    from django_pgviews_c.history import migrate_command

    assert migrate_command("default") == "manage.py migrate"
    assert migrate_command("other") == "manage.py migrate --database other"


def test_the_refresher_waits_for_migrate_instead_of_refreshing_every_pass():
    """Without the history no refresh is recorded, so every view stays stale: a refresher that
    went on would refresh each due view every poll. It says why it waits, and starts once the
    app's migrations are applied."""
    import signal
    import subprocess
    import sys

    from django_pgviews_c.history import missing_history
    from tests import processes, psycopg_compat
    from tests.processes import Reader
    from tests.test_refresher import ROOT, SETTINGS

    suffix = os.environ.get("PGVIEWS_DB_SUFFIX", "") + "_unmigrated"
    db = "pgviews_c_fresh" + suffix

    def run(*args: str) -> subprocess.CompletedProcess:
        return processes.django(*args, settings=SETTINGS, suffix=suffix)

    with processes.migrated_database(db, run):
        assert run("migrate", "django_pgviews_c", "zero", "-v", "0").returncode == 0
        proc = subprocess.Popen(
            [sys.executable, "-u", "-m", "django", "pgviews_refresher", "--poll", "0.3"],
            cwd=ROOT, env=processes.django_env(SETTINGS, suffix), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        reader = Reader(proc)
        try:
            reader.wait_for("active: refreshing due views of database 'default'")
            line = reader.wait_for(
                "waiting: the refresh history table (django_pgviews_c_refresh)", timeout=30
            )
            assert f"waiting: {missing_history('default')}. Run manage.py migrate: refreshing starts" in line
            assert "Run manage.py migrate: refreshing starts once it has." in line, line
            assert not any("refreshed" in seen for seen in reader.seen), reader.seen
            # Never refreshed by it: freshapp.DueEveryTime (refresh_interval 0) is due.
            assert run("migrate", "django_pgviews_c", "-v", "0").returncode == 0
            reader.wait_for("the refresh history table is there now on database 'default': refreshing")
            reader.wait_for("refreshed freshapp.DueEveryTime")
            counted = "SELECT count(*) FROM django_pgviews_c_refresh WHERE view = 'freshapp.DueEveryTime'"
            assert psycopg_compat.query(db, counted)[0][0] >= 1
            proc.send_signal(signal.SIGTERM)
            reader.wait_for("stopped")
            assert proc.wait(timeout=60) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_refreshes_on_another_database_advise_the_same_migrate():
    """refresh_pgviews --database and Model.refresh(using=...) on a database where the app's
    migrations are not applied warn that the history was not read or written, with the one
    advice every command gives (history.migrate_command): the database named, no app label."""
    from tests import processes, psycopg_compat

    suffix = os.environ.get("PGVIEWS_DB_SUFFIX", "") + "_hint"
    db = "pgviews_c_weather" + suffix

    def run(*args: str):
        return processes.django(*args, suffix=suffix)

    psycopg_compat.recreate_database(db)
    try:
        done = run("migrate", "--run-syncdb", "--database", "weather_db", "-v", "0")
        assert done.returncode == 0, done.stderr
        done = run("migrate", "django_pgviews_c", "zero", "--database", "weather_db", "-v", "0")
        assert done.returncode == 0, done.stderr
        advice = "(run manage.py migrate --database weather_db)"
        done = run("refresh_pgviews", "--database", "weather_db")
        assert done.returncode == 0, done.stderr
        assert "refreshed 1 materialized view" in done.stdout, done.stdout
        assert "not recorded in their history (django_pgviews_c_refresh)" in done.stderr, done.stderr
        assert advice in done.stderr, done.stderr
        code = (
            "from tests.multidbtest.models import MonthlyObservation as M; "
            "M.refresh(using='weather_db'); print('refreshed')"
        )
        done = run("shell", "-c", code)
        assert done.returncode == 0 and "refreshed" in done.stdout, done.stderr
        assert "not recorded in its history (django_pgviews_c_refresh)" in done.stderr, done.stderr
        assert advice in done.stderr, done.stderr
        assert "migrate django_pgviews_c" not in done.stderr, done.stderr
    finally:
        psycopg_compat.drop_database(db)
