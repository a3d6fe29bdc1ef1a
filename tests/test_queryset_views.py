"""Views declared as QuerySets: compiled by the connection, parameters bound by the driver."""

from __future__ import annotations

import datetime
import json
from decimal import Decimal

import pytest
from django.contrib.postgres.fields import ArrayField
from django.db import connection, models
from django.db.models import Count, F, OuterRef, Subquery, Sum, Window
from django.db.models.functions import RowNumber

from django_pgviews_c.exceptions import QuerySetViewError
from django_pgviews_c.view import declared_dependencies
from tests.helpers import ViewSet, catalog_rows, relkind

pytestmark = pytest.mark.django_db

TRICKY_NAMES = ["O'Brien", "50% off", 'say "hi"', "back\\slash", "$$dollar$$", "%s"]


def _tables(vs: ViewSet) -> tuple[type[models.Model], type[models.Model]]:
    meta = {"app_label": "viewtest", "apps": vs.apps}
    customer = type(
        "QsCustomer",
        (models.Model,),
        {
            "__module__": "tests.viewtest.models",
            "Meta": type("Meta", (), {**meta, "db_table": "t_qs_customer"}),
            "name": models.CharField(max_length=50),
            "is_preferred": models.BooleanField(default=False),
        },
    )
    order = type(
        "QsOrder",
        (models.Model,),
        {
            "__module__": "tests.viewtest.models",
            "Meta": type("Meta", (), {**meta, "db_table": "t_qs_order"}),
            "customer": models.ForeignKey(customer, on_delete=models.CASCADE, related_name="orders"),
            "name": models.CharField(max_length=50),
            "placed": models.DateField(),
            "at": models.DateTimeField(),
            "tags": ArrayField(models.CharField(max_length=20), default=list),
            "data": models.JSONField(default=dict),
            "amount": models.DecimalField(max_digits=10, decimal_places=2),
        },
    )
    with connection.schema_editor() as editor:
        editor.create_model(customer)
        editor.create_model(order)
    ann = customer.objects.create(name="Ann O'Hara", is_preferred=True)
    bob = customer.objects.create(name="Bob", is_preferred=False)
    for i, name in enumerate(TRICKY_NAMES * 2):
        order.objects.create(
            customer=ann if i % 2 else bob,
            name=name,
            placed=datetime.date(2024, 1, 1) + datetime.timedelta(days=40 * i),
            at=datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc) + datetime.timedelta(hours=7 * i),
            tags=["a'b", "c"] if i % 3 == 0 else ["c"],
            data={"k": "v'x", "n": i} if i % 4 == 0 else {"k": "other"},
            amount=Decimal("10.50") + i,
        )
    return customer, order


def test_tricky_parameters_come_out_as_the_queryset_reads_them():
    vs = ViewSet()
    customer, order = _tables(vs)

    def tricky():
        return (
            order.objects.filter(
                name__in=TRICKY_NAMES,
                placed__gte=datetime.date(2024, 2, 1),
                at__lt=datetime.datetime(2024, 1, 4, 3, tzinfo=datetime.timezone.utc),
                amount__gte=Decimal("11.50"),
            )
            .exclude(name__contains="%")
            .filter(models.Q(tags__contains=["a'b"]) | models.Q(data__contains={"k": "v'x"}))
            .values("id", "name", "placed", "amount", "tags", "data")
        )

    vs.view("Tricky", tricky)
    assert vs.sync().statuses == {"viewtest.Tricky": "CREATED"}
    expected = [tuple(r.values()) for r in tricky().order_by("id")]
    assert expected  # the filters keep some rows, so the comparison means something
    got = catalog_rows("SELECT id, name, placed, amount, tags, data::text FROM t_tricky ORDER BY id")
    assert [(*row[:5], json.loads(row[5])) for row in got] == expected


def test_annotations_aggregates_subquery_window_and_joins():
    vs = ViewSet()
    customer, order = _tables(vs)

    def summary():
        latest = order.objects.filter(customer=OuterRef("pk")).order_by("-placed").values("placed")[:1]
        return customer.objects.annotate(
            total=Sum("orders__amount"),
            n=Count("orders"),
            latest=Subquery(latest),
            rank=Window(RowNumber(), order_by=F("name").asc()),
            twice=F("id") * 2,
        ).values("id", "name", "total", "n", "latest", "rank", "twice")

    vs.view("Summary", summary, materialized=True)
    vs.view(
        "Preferred",
        lambda: order.objects.filter(customer__is_preferred=True, amount__gt=Decimal("0.5")).values(
            "id", "amount", customer_name=F("customer__name")
        ),
    )
    vs.sync()
    assert relkind("t_summary") == "m"
    assert catalog_rows("SELECT id, name, total, n, latest, rank, twice FROM t_summary ORDER BY id") == [
        tuple(r.values()) for r in summary().order_by("id")
    ]
    assert catalog_rows("SELECT id, customer_name, amount FROM t_preferred ORDER BY id") == [
        (o.id, "Ann O'Hara", o.amount)
        for o in order.objects.filter(customer__is_preferred=True).order_by("id")
    ]


def test_a_queryset_over_a_view_model_depends_on_it_undeclared():
    vs = ViewSet()
    customer, _ = _tables(vs)
    # Declared first, it reads a view declared after it: the dependency comes from the QuerySet.
    top = vs.view("Top", lambda: vs.models["Base"].objects.filter(is_preferred=True).values("id", "name"))
    base = vs.view("Base", "SELECT id, name, is_preferred FROM t_qs_customer")
    base.add_to_class("name", models.CharField(max_length=50))
    base.add_to_class("is_preferred", models.BooleanField())
    assert declared_dependencies(top) == ["viewtest.Base"]
    vs.sync()
    assert catalog_rows("SELECT name FROM t_top") == [("Ann O'Hara",)]


def test_a_changed_filter_value_is_a_changed_definition():
    vs = ViewSet()
    customer, _ = _tables(vs)
    wanted = {"preferred": True}
    vs.view("Pick", lambda: customer.objects.filter(is_preferred=wanted["preferred"]).values("id", "name"))
    vs.sync()
    assert catalog_rows("SELECT name FROM t_pick") == [("Ann O'Hara",)]
    assert vs.sync().actions == []  # the same text: nothing to do
    wanted["preferred"] = False
    r = vs.sync()
    assert r.statuses["viewtest.Pick"] == "UPDATED"
    assert catalog_rows("SELECT name FROM t_pick") == [("Bob",)]


def test_sql_may_be_a_callable_taking_the_class_and_get_sql_a_classmethod():
    vs = ViewSet()
    customer, _ = _tables(vs)
    vs.view("ByClass", lambda cls: customer.objects.filter(name__startswith="B").values("id", "name"))
    vs.view(
        "ByGetSql",
        None,
        get_sql=classmethod(lambda cls: customer.objects.filter(name__startswith="A").values("name")),
    )
    vs.view("Limited", lambda: customer.objects.order_by("name").values("name")[:1])
    vs.view(
        "Both",
        lambda: (
            customer.objects.filter(name="Bob")
            .values("name")
            .union(customer.objects.filter(is_preferred=True).values("name"))
        ),
    )
    vs.sync()
    assert sorted(catalog_rows("SELECT name FROM t_both")) == [("Ann O'Hara",), ("Bob",)]
    assert catalog_rows("SELECT name FROM t_byclass") == [("Bob",)]
    assert catalog_rows("SELECT name FROM t_bygetsql") == [("Ann O'Hara",)]
    assert catalog_rows("SELECT name FROM t_limited") == [("Ann O'Hara",)]


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda c: c.objects.none(), "is empty (.none())"),
        (lambda c: c.objects.order_by("id")[1:3], "sliced with an offset ([1:...])"),
        (lambda c: c.objects.select_for_update(), "FOR UPDATE"),
    ],
    ids=["none", "offset", "for-update"],
)
def test_a_queryset_that_cannot_be_a_view_is_refused_naming_it(make, words):
    vs = ViewSet()
    customer, _ = _tables(vs)
    vs.view("Fine", "SELECT 1 AS id")
    vs.view("Bad", lambda: make(customer))
    with pytest.raises(QuerySetViewError) as info:
        vs.sync()
    assert str(info.value).startswith("viewtest.Bad: ")
    assert words in str(info.value)
    assert relkind("t_fine") is None and relkind("t_bad") is None  # nothing was created


def test_dependencies_accept_model_classes_and_labels_in_any_case():
    vs = ViewSet()
    base = vs.view("Base", "SELECT 1 AS id")
    a = vs.view("ByClass", "SELECT id FROM t_base", dependencies=(base,))
    b = vs.view("ByLabel", "SELECT id FROM t_base", dependencies=("VIEWTEST.base",))
    c = vs.view("Unknown", "SELECT 1 AS id", dependencies=("viewtest.Nowhere",))
    assert declared_dependencies(a) == declared_dependencies(b) == ["viewtest.Base"]
    assert declared_dependencies(c) == ["viewtest.Nowhere"]  # left for the graph to report


def test_the_documented_event_aggregation():
    """docs/querysets.md: the newsletter's events as a QuerySet view, and a materialized view
    over it that declares no dependency."""
    vs = ViewSet()
    event = type(
        "QsEvent",
        (models.Model,),
        {
            "__module__": "tests.viewtest.models",
            "Meta": type("Meta", (), {"app_label": "viewtest", "apps": vs.apps, "db_table": "t_qs_event"}),
            "event": models.CharField(max_length=100),
            "count": models.IntegerField(),
            "happened_at": models.DateTimeField(),
        },
    )
    with connection.schema_editor() as editor:
        editor.create_model(event)
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    for name, count in [("signup", 2), ("signup", 3), ("login", 7)]:
        event.objects.create(event=name, count=count, happened_at=now)

    def fields():
        return {
            "event": models.CharField(max_length=100, primary_key=True),
            "total": models.BigIntegerField(),
        }

    summary = vs.view(
        "EventSummary",
        None,
        materialized=True,
        concurrent_index="event",
        get_sql=classmethod(
            lambda cls: vs.models["EventView"].objects.filter(total__gt=0).values("event", "total")
        ),
        **fields(),
    )
    view = vs.view(
        "EventView", lambda: event.objects.values("event").annotate(total=Sum("count")), **fields()
    )
    assert declared_dependencies(summary) == ["viewtest.EventView"]
    vs.sync()
    assert sorted(view.objects.values_list("event", "total")) == [("login", 7), ("signup", 5)]
    event.objects.create(event="login", count=1, happened_at=now)
    summary.refresh(concurrently=True)
    assert sorted(summary.objects.values_list("event", "total")) == [("login", 8), ("signup", 5)]
