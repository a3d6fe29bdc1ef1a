"""Names the sync derives are checked before planning, so a sync never loops rebuilding; and a
db_table in a schema that does not exist is an error unless PGVIEWS_CREATE_SCHEMAS allows it."""

from __future__ import annotations

import pytest
from django.db import models

from django_pgviews_c.exceptions import PlanError
from tests.helpers import ViewSet, catalog_rows, relkind, snapshot

pytestmark = pytest.mark.django_db


def test_db_table_in_a_missing_schema_is_an_error_naming_it():
    before = snapshot()
    vs = ViewSet()
    vs.view("A", "SELECT 1 AS id", db_table="reportng.a")  # a typo of "reporting"
    with pytest.raises(PlanError) as err:
        vs.sync()
    text = str(err.value)
    assert "viewtest.A" in text and "'reportng'" in text and "PGVIEWS_CREATE_SCHEMAS" in text
    assert catalog_rows("SELECT count(*) FROM pg_namespace WHERE nspname = 'reportng'") == [(0,)]
    assert snapshot() == before


def test_create_schemas_setting_creates_it(settings):
    settings.PGVIEWS_CREATE_SCHEMAS = True
    vs = ViewSet()
    vs.view("A", "SELECT 1 AS id", db_table="reporting.a")
    r = vs.sync()
    assert "create_schema" in {a.op for a in r.actions}
    assert relkind("reporting.a") == "v"
    assert vs.sync().actions == []


def test_index_name_over_63_bytes_is_refused_before_planning():
    before = snapshot()
    long_name = "m_" + "x" * 62
    vs = ViewSet()
    vs.view(
        "M",
        "SELECT 1 AS id",
        materialized=True,
        id=models.IntegerField(primary_key=True),
        indexes=[models.Index(fields=["id"], name=long_name)],
    )
    with pytest.raises(PlanError) as err:
        vs.sync()
    assert "viewtest.M" in str(err.value) and long_name in str(err.value) and "63" in str(err.value)
    assert snapshot() == before


def test_db_table_over_63_bytes_is_refused_naming_the_view():
    vs = ViewSet()
    vs.view("A", "SELECT 1 AS id", db_table="a" * 64)
    with pytest.raises(PlanError) as err:
        vs.sync()
    assert "viewtest.A" in str(err.value) and "63 bytes" in str(err.value)
