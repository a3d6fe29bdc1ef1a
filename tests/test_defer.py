"""Deferred rebuilds (PGVIEWS_DEFER_REBUILD / defer_rebuild): a sync that must rebuild a populated
materialized view creates the new version beside it WITH NO DATA and leaves the old one serving;
refresh_pgviews --pending populates it and swaps it in with the sync's guarded swap."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import override_settings

from django_pgviews_c import _core
from django_pgviews_c.pending import complete_pending
from tests.helpers import ViewSet, catalog_rows, comment, execute, index_names, leftovers, oid, populated

PENDING = _core.derived_name("t_m", "_pgvc_pending")


@pytest.fixture
def src(db):
    execute("CREATE TABLE t_src (id int PRIMARY KEY, v int); INSERT INTO t_src VALUES (1, 10), (2, 20)")


def _declare(vs: ViewSet, sql: str, **attrs):
    return vs.view("M", sql, materialized=True, concurrent_index="id", defer_rebuild=True, **attrs)


def test_changed_populated_matview_waits_beside_the_old_one(src):
    vs = ViewSet()
    _declare(vs, "SELECT id, v FROM t_src")
    vs.sync()
    before = oid("t_m")
    _declare(vs, "SELECT id, v * 2 AS v FROM t_src")
    r = vs.sync()
    assert oid("t_m") == before
    assert catalog_rows("SELECT id, v FROM t_m ORDER BY id") == [(1, 10), (2, 20)]
    assert oid(PENDING) is not None and not populated(PENDING)
    assert "pending=1" in comment(PENDING)
    assert r.states["viewtest.M"] == "pending rebuild"
    assert r.statuses["viewtest.M"] == "EXISTS"
    assert vs.sync().actions == []
    done = complete_pending(models=list(vs.models.values()))
    assert done.swapped == ["viewtest.M"], done
    assert oid(PENDING) is None
    assert oid("t_m") != before
    assert catalog_rows("SELECT id, v FROM t_m ORDER BY id") == [(1, 20), (2, 40)]
    assert index_names("t_m") == ["t_m_id_index"]
    assert leftovers() == []
    r = vs.sync()
    assert r.actions == [] and r.states["viewtest.M"] == "in sync"
