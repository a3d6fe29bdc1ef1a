"""Views declared in a module that only the project's URLconf imports (a hotel reservations
service keeps its models in ``reservations/api/models.py`` beside an app with no models module).
Redux's commands ran Django's system checks, whose URL check imports the URLconf and so
registered those views; the view commands here skip the checks and must still see them."""

from __future__ import annotations

import os

import pytest

from tests import processes, psycopg_compat

SUFFIX = os.environ.get("PGVIEWS_DB_SUFFIX", "") + "_urlconf"
DB = "pgviews_c_urlconf" + SUFFIX
VIEW = "hotel_currentbooking"


def django(*args: str) -> processes.subprocess.CompletedProcess:
    return processes.django(*args, settings="tests.urlconfproj.settings", suffix=SUFFIX)


def rows(sql: str) -> list[tuple]:
    return psycopg_compat.query(DB, sql)


@pytest.fixture(scope="module")
def hotel_db():
    with processes.migrated_database(DB, django):
        yield


def test_commands_see_views_only_the_urlconf_imports(hotel_db):
    # migrate (its checks import the URLconf) built the view, empty: no booking yet.
    assert rows(f"SELECT relispopulated FROM pg_class WHERE relname = '{VIEW}'") == [(True,)]
    oid = rows(f"SELECT '{VIEW}'::regclass::oid::bigint")
    rows("INSERT INTO hotel_booking (room, nights) VALUES ('101', 2), ('102', 1), ('103', 0)")

    done = django("refresh_pgviews", "--concurrently")
    assert done.returncode == 0, done.stderr
    assert "refreshed 1 materialized view" in done.stdout, done.stdout
    assert rows(f"SELECT room FROM {VIEW} ORDER BY room") == [("101",), ("102",)]

    done = django("pgviews_status", "--check")
    assert done.returncode == 0, done.stderr
    assert "1 view, 0 not in sync" in done.stdout, done.stdout

    # A sync with nothing changed keeps the view (same oid, same rows).
    done = django("sync_pgviews")
    assert done.returncode == 0, done.stderr
    assert "no views belong" not in done.stdout
    assert rows(f"SELECT '{VIEW}'::regclass::oid::bigint") == oid
    assert rows(f"SELECT count(*) FROM {VIEW}") == [(2,)]


def test_a_urlconf_that_does_not_import_is_said(hotel_db):
    done = processes.django(
        "refresh_pgviews",
        settings="tests.urlconfproj.settings",
        suffix=SUFFIX,
        DJANGO_SETTINGS_MODULE="tests.urlconfproj.broken_settings",
    )
    assert done.returncode == 0, done.stderr
    assert "ROOT_URLCONF 'tests.urlconfproj.nosuch_urls' does not import (ModuleNotFoundError" in done.stderr
