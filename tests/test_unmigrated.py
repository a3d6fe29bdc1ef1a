"""A database where the app's own migrations are not applied (its refresh history table is
missing), as a user meets it (tests/deferproject, real processes): the warning about the history
is given once per command, and pgviews_status --check advises migrate, which creates the table
and syncs the views, not sync_pgviews, which does neither for the table."""

from __future__ import annotations

import json

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
        assert "manage.py migrate django_pgviews_c" in done.stderr, done.stderr


def test_check_advises_migrate_where_the_apps_migrations_are_not_applied(defer_db):  # noqa: F811
    _unmigrate()
    # The code changed (DEFER_FACTOR=2): deferapp.Totals is not in sync.
    for extra in ((), ("--json",)):
        done = django("pgviews_status", "--check", *extra, factor=2)
        assert done.returncode == 1, done
        assert "run manage.py migrate, which creates the table and syncs the views (deferapp.Totals)" in (
            done.stderr
        ), done.stderr
        assert "sync_pgviews (deferapp.Totals)" not in done.stderr, done.stderr
        if extra:
            assert {r["label"]: r["state"] for r in json.loads(done.stdout)}["deferapp.Totals"] == "changed"
    # Once migrated, the same change is one for sync_pgviews (or migrate) as before.
    done = django("migrate", "django_pgviews_c", "-v", "0")
    assert done.returncode == 0, done.stderr
    done = django("pgviews_status", "--check", factor=2)
    assert done.returncode == 1 and "run sync_pgviews (deferapp.Totals)" in done.stderr, done.stderr


def test_the_migrate_advice_names_a_database_other_than_default():
    from django_pgviews_c.history import migrate_command

    assert migrate_command("default") == "manage.py migrate"
    assert migrate_command("other") == "manage.py migrate --database other"
