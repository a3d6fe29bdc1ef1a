"""psycopg 3 with OPTIONS = {"server_side_binding": True}: every statement the package sends
works (the catalog query and the batches send several statements in one string, which the
extended protocol refuses). The "server_binding" alias is the default database through it."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connections

from django_pgviews_c.sync import sync_pgviews
from tests.helpers import catalog_rows, execute

psycopg = pytest.importorskip("psycopg")

ALIAS = "server_binding"
pytestmark = pytest.mark.django_db(transaction=True, databases=["default", ALIAS])


@pytest.fixture(autouse=True)
def _views_back():
    yield
    sync_pgviews("default", send_signals=False)


def test_the_alias_binds_server_side():
    with connections[ALIAS].cursor() as cursor:
        assert not isinstance(cursor.cursor, psycopg.ClientCursor)
        with pytest.raises(Exception, match="multiple commands"):
            cursor.execute("SELECT %s; SELECT 2", [1])


def _call(*args: str) -> str:
    out = StringIO()
    call_command(*args, "--database", ALIAS, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_sync_through_server_side_binding():
    execute("DROP MATERIALIZED VIEW viewtest_materializedrelatedview CASCADE")
    execute("DROP VIEW viewtest_dependantview")
    out = _call("sync_pgviews")
    assert "on 'server_binding': 3 changed" in out, out
    assert catalog_rows("SELECT to_regclass('viewtest_materializedrelatedview') IS NOT NULL") == [(True,)]
    assert "0 changed" in _call("sync_pgviews")  # the warm sync: the catalog query alone
    execute("DROP VIEW viewtest_dependantview")
    assert "the sync would succeed" in _call("sync_pgviews", "--plan")


def test_refresh_through_server_side_binding():
    execute("INSERT INTO viewtest_testmodel (name) VALUES ('a'), ('b')")
    assert "refreshed 5 materialized views" in _call("refresh_pgviews")
    assert catalog_rows("SELECT count(*) FROM viewtest_materializedrelatedview") == [(2,)]
    assert "refreshed 5 materialized views" in _call("refresh_pgviews", "--concurrently")
    assert "refreshed 5 materialized views" in _call("refresh_pgviews", "--jobs", "2")


def test_status_through_server_side_binding():
    execute("DROP VIEW viewtest_dependantview")
    out = _call("pgviews_status")
    line = next(line for line in out.splitlines() if line.startswith("viewtest.DependantView "))
    assert "missing" in line
    assert "1 not in sync" in out


def test_clear_through_server_side_binding():
    out = _call("clear_pgviews", "--no-input")
    assert "dropped viewtest.RelatedView" in out
    assert catalog_rows("SELECT count(*) FROM pg_views WHERE viewname LIKE 'viewtest\\_%%'") == [(0,)]


def test_adoption_through_server_side_binding():
    # Made by hand as redux makes it (no fingerprint): the sync compares and adopts it.
    execute("DROP VIEW viewtest_dependantview")
    execute("CREATE VIEW viewtest_dependantview AS SELECT model_id FROM viewtest_relatedview")
    before = catalog_rows("SELECT to_regclass('viewtest_dependantview')::oid::bigint")
    _call("sync_pgviews")
    assert catalog_rows("SELECT to_regclass('viewtest_dependantview')::oid::bigint") == before
    assert catalog_rows("SELECT obj_description('viewtest_dependantview'::regclass, 'pg_class')")[0][0]
