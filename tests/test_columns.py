"""A declared field that the view's SQL does not produce (or produces with another type) is
reported after the sync creates or adopts the view: a warning by default, an error with
PGVIEWS_STRICT_COLUMNS = True; pgviews_status shows the view as `columns`. A missing column is
reported by every sync, also of a view the sync leaves as it is."""

from __future__ import annotations

import logging

import pytest
from django.db import connection, models

from django_pgviews_c.exceptions import PlanError
from django_pgviews_c.sync import Syncer
from tests.helpers import ViewSet, execute, relkind, snapshot

pytestmark = pytest.mark.django_db


@pytest.fixture
def src():
    execute("CREATE TABLE t_src (id int PRIMARY KEY, price numeric(10, 2))")


def _declare(vs: ViewSet) -> None:
    vs.view(
        "Sales",
        "SELECT id, price, price * 2 AS MyTotal FROM t_src",
        id=models.IntegerField(primary_key=True),
        price=models.IntegerField(),  # numeric in the view: another type family
        margin=models.IntegerField(),  # not selected at all
        total=models.IntegerField(db_column="MyTotal"),  # the SQL did not quote it: "mytotal"
    )


def _dry_run_state(vs: ViewSet):
    models_ = list(vs.models.values())
    return Syncer(connection, models_, {m._meta.label for m in models_}).run(dry_run=True)


def test_missing_and_mistyped_columns_are_warnings_naming_everything(src, caplog):
    vs = ViewSet()
    _declare(vs)
    with caplog.at_level(logging.WARNING, logger="django_pgviews_c"):
        vs.sync()
    assert relkind("t_sales") == "v"
    text = "\n".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert (
        "viewtest.Sales.margin: the view t_sales on database 'default' has no column 'margin' "
        "(its columns: id, price, mytotal); a query that selects the field fails. Add a column "
        "'margin' to the view's SQL, or set db_column on the field to a column it has." in text
    )
    assert "viewtest.Sales.total: the view t_sales on database 'default' has no column 'MyTotal'" in text
    assert "field 'price' (integer) reads column 'price' of type numeric(10,2)" in text
    assert "'id'" not in text
    result = _dry_run_state(vs)
    assert result.states["viewtest.Sales"] == "columns"  # missing columns (types alone: a warning)
    assert {p.field for p in result.column_problems} == {"margin", "total", "price"}
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="django_pgviews_c"):
        assert vs.sync().actions == []  # a warm sync changes nothing
    # and says again only what breaks every query (the missing columns), not the type
    again = "\n".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "Sales.margin:" in again and "Sales.total:" in again and "field 'price'" not in again


def test_strict_columns_makes_it_an_error_and_changes_nothing(src, settings):
    settings.PGVIEWS_STRICT_COLUMNS = True
    before = snapshot()
    vs = ViewSet()
    _declare(vs)
    with pytest.raises(PlanError) as err:
        vs.sync()
    assert "viewtest.Sales.margin: the view t_sales" in str(err.value)
    assert "nothing was changed" in str(err.value)
    assert snapshot() == before


def test_adopted_view_is_checked_too(src, caplog):
    execute("CREATE VIEW t_adopted AS SELECT id FROM t_src")
    vs = ViewSet()
    vs.view(
        "Adopted", "SELECT id FROM t_src", id=models.IntegerField(primary_key=True), extra=models.TextField()
    )
    with caplog.at_level(logging.WARNING, logger="django_pgviews_c"):
        r = vs.sync()
    assert [a.op for a in r.actions] == ["stamp"]
    assert (
        "viewtest.Adopted.extra: the view t_adopted on database 'default' has no column 'extra'"
        in caplog.text
    )


def test_matching_columns_say_nothing(src, caplog):
    vs = ViewSet()
    vs.view(
        "Good",
        "SELECT id, price, 'x'::varchar AS label FROM t_src",
        id=models.IntegerField(primary_key=True),
        price=models.DecimalField(max_digits=10, decimal_places=2),
        label=models.CharField(max_length=10),
    )
    with caplog.at_level(logging.WARNING, logger="django_pgviews_c"):
        vs.sync()
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]
    assert _dry_run_state(vs).states["viewtest.Good"] == "in sync"


def test_another_type_family_alone_is_a_warning_not_a_state(src, caplog):
    vs = ViewSet()
    vs.view(
        "Typed",
        "SELECT id, price FROM t_src",
        id=models.IntegerField(primary_key=True),
        price=models.IntegerField(),
    )
    with caplog.at_level(logging.WARNING, logger="django_pgviews_c"):
        vs.sync()
    assert "field 'price' (integer) reads column 'price' of type numeric(10,2)" in caplog.text
    result = _dry_run_state(vs)
    assert result.states["viewtest.Typed"] == "in sync"
    assert [p.field for p in result.column_problems] == ["price"]


def _with_a_field_added_later(vs: ViewSet, **extra: models.Field) -> None:
    vs.view(
        "Later",
        "SELECT id, price FROM t_src",
        materialized=True,
        id=models.IntegerField(primary_key=True),
        price=models.DecimalField(max_digits=10, decimal_places=2),
        **extra,
    )


def test_a_field_added_to_an_unchanged_view_is_said_by_the_sync(src, caplog):
    """A field added to the model with the SQL left as it was (ncpollbook's VoterView): the view
    is unchanged, so the sync has nothing to do, but every query of the model now fails. The
    sync says so on every run until it is fixed (it said '0 changed' and nothing else)."""
    vs = ViewSet()
    _with_a_field_added_later(vs)
    vs.sync()
    _with_a_field_added_later(vs, registration_month=models.SmallIntegerField(null=True))
    for _ in range(2):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="django_pgviews_c"):
            assert vs.sync().actions == []
        assert (
            "viewtest.Later.registration_month: the view t_later on database 'default' has no "
            "column 'registration_month' (its columns: id, price)" in caplog.text
        ), caplog.text


def test_strict_columns_fails_the_sync_of_an_unchanged_view(src, settings):
    vs = ViewSet()
    _with_a_field_added_later(vs)
    vs.sync()
    before = snapshot()
    _with_a_field_added_later(vs, registration_month=models.SmallIntegerField(null=True))
    settings.PGVIEWS_STRICT_COLUMNS = True
    with pytest.raises(PlanError) as err:
        vs.sync()
    assert "Later.registration_month: the view" in str(err.value) and "nothing was changed" in str(err.value)
    assert snapshot() == before
