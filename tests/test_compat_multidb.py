"""django-pgviews-redux 1.3 parity: several databases (router allow_migrate decides where a view
lives), `--database` on every command, get_view_connection overrides, schemas and search_path."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.management import call_command
from django.db import DEFAULT_DB_ALIAS, connections

from django_pgviews_c import sync as sync_module
from django_pgviews_c.signals import all_views_synced, view_synced
from tests.helpers import ViewSet
from tests.multidbtest.models import MonthlyObservation, Observation, WeatherPinnedView
from tests.schemadbtest.models import (
    SchemaMonthlyObservationMaterializedView,
    SchemaMonthlyObservationView,
    SchemaObservation,
)
from tests.viewtest.models import MaterializedRelatedView, RelatedView, TestModel

ALL = [DEFAULT_DB_ALIAS, "weather_db", "schema_db"]


def rows(alias: str, sql: str, params=None) -> list[tuple]:
    with connections[alias].cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall()


def view_names(alias: str) -> set[tuple[str, str, str]]:
    """(schema, name, kind) of every view and materialized view outside the system schemas."""
    return set(
        rows(
            alias,
            """
        SELECT n.nspname::text, c.relname::text, c.relkind::text FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('v', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema')""",
        )
    )


class Recorder:
    def __init__(self):
        self.views: list[tuple[type, dict]] = []
        self.finished: list[dict] = []

    def __enter__(self):
        view_synced.connect(self.on_view, weak=False)
        all_views_synced.connect(self.on_all, weak=False)
        return self

    def __exit__(self, *exc):
        view_synced.disconnect(self.on_view)
        all_views_synced.disconnect(self.on_all)

    def on_view(self, sender, **kwargs):
        self.views.append((sender, kwargs))

    def on_all(self, sender, **kwargs):
        self.finished.append({"sender": sender, **kwargs})

    @property
    def senders(self) -> set[type]:
        return {s for s, _ in self.views}


# -- get_view_connection ----------------------------------------------------------------------------


class TestViewConnection:
    @pytest.mark.parametrize(
        ("model", "owner"),
        [
            (MonthlyObservation, "weather_db"),
            (WeatherPinnedView, "weather_db"),
            (SchemaMonthlyObservationView, "schema_db"),
            (SchemaMonthlyObservationMaterializedView, "schema_db"),
            (RelatedView, DEFAULT_DB_ALIAS),
        ],
    )
    def test_connection_only_where_migrations_are_allowed(self, model, owner):
        for alias in ALL:
            got = model.get_view_connection(using=alias)
            if alias == owner:
                assert got is connections[alias]
            else:
                assert got is None

    def test_unrestricted_mode_always_answers(self):
        assert (
            MonthlyObservation.get_view_connection(using=DEFAULT_DB_ALIAS, restricted_mode=False)
            is (connections[DEFAULT_DB_ALIAS])
        )


# -- where views live ---------------------------------------------------------------------------------


@pytest.mark.django_db(databases=ALL)
class TestPlacement:
    def test_weather_db_holds_only_multidbtest_views(self):
        assert view_names("weather_db") == {
            ("public", "multidbtest_weatherpinnedview", "v"),
            ("public", "multidbtest_monthlyobservation", "m"),
        }

    def test_schema_db_views_live_in_search_path_schema(self):
        assert view_names("schema_db") == {
            ("other", "schemadbtest_schemamonthlyobservationview", "v"),
            ("other", "schemadbtest_schemamonthlyobservationmaterializedview", "m"),
        }
        assert rows(
            "schema_db", "SELECT schemaname FROM pg_tables WHERE tablename = 'schemadbtest_schemaobservation'"
        ) == [("other",)]

    def test_default_holds_no_view_of_other_apps(self):
        names = {n for _, n, _ in view_names(DEFAULT_DB_ALIAS)}
        assert not {n for n in names if n.startswith(("multidbtest_", "schemadbtest_"))}
        assert "viewtest_relatedview" in names

    def test_schema_db_matview_indexes(self):
        got = {
            r[0]
            for r in rows(
                "schema_db",
                "SELECT indexname FROM pg_indexes WHERE schemaname = 'other' AND tablename = %s",
                ["schemadbtest_schemamonthlyobservationmaterializedview"],
            )
        }
        meta_index = SchemaMonthlyObservationMaterializedView._meta.indexes[0].name
        assert got == {meta_index, "schemadbtest_schemamonthlyobservationmaterializedview_id_index"}

    def test_weather_concurrent_index_name(self):
        got = {
            r[0]
            for r in rows(
                "weather_db",
                "SELECT indexname FROM pg_indexes WHERE tablename = %s",
                ["multidbtest_monthlyobservation"],
            )
        }
        assert got == {"multidbtest_monthlyobservation_date_index"}


# -- refresh picks the model's database -------------------------------------------------------------


@pytest.mark.django_db(databases=ALL)
class TestRefreshRouting:
    def test_weather_refresh(self):
        Observation.objects.create(date=dt.date(2022, 1, 1), temperature=10)
        Observation.objects.create(date=dt.date(2022, 1, 3), temperature=20)
        assert MonthlyObservation.objects.count() == 0
        MonthlyObservation.refresh()
        got = MonthlyObservation.objects.get()
        assert (got.date, got.minimum, got.maximum) == (dt.date(2022, 1, 1), 10, 20)
        Observation.objects.create(date=dt.date(2022, 2, 3), temperature=5)
        MonthlyObservation.refresh(concurrently=True, strict=True)
        assert MonthlyObservation.objects.count() == 2
        assert WeatherPinnedView.objects.count() == 3

    def test_schema_view_and_refresh(self):
        SchemaObservation.objects.create(date=dt.date(2022, 1, 1), temperature=10)
        SchemaObservation.objects.create(date=dt.date(2022, 1, 3), temperature=20)
        assert SchemaMonthlyObservationView.objects.count() == 2
        assert SchemaMonthlyObservationMaterializedView.objects.count() == 0
        SchemaMonthlyObservationMaterializedView.refresh()
        assert SchemaMonthlyObservationMaterializedView.objects.count() == 2
        SchemaObservation.objects.create(date=dt.date(2022, 1, 4), temperature=20)
        SchemaMonthlyObservationMaterializedView.refresh(concurrently=True, strict=True)
        assert SchemaMonthlyObservationMaterializedView.objects.count() == 3


# -- commands with --database -----------------------------------------------------------------------


@pytest.mark.django_db(databases=ALL)
class TestDatabaseOption:
    @pytest.mark.parametrize("alias", ALL)
    def test_sync_pgviews_syncs_only_that_database(self, alias):
        owners = {DEFAULT_DB_ALIAS: "viewtest", "weather_db": "multidbtest", "schema_db": "schemadbtest"}
        with Recorder() as rec:
            call_command("sync_pgviews", database=alias, verbosity=0)
        assert rec.senders
        assert {s._meta.app_label for s in rec.senders} == {owners[alias]}
        assert {kw["using"] for _, kw in rec.views} == {alias}
        assert rec.finished == [{"sender": None, "signal": all_views_synced, "using": alias}]

    def test_schema_db_sync_reports_exists(self):
        with Recorder() as rec:
            call_command("sync_pgviews", database="schema_db", update=False, verbosity=0)
        got = dict(rec.views)
        for model in (SchemaMonthlyObservationView, SchemaMonthlyObservationMaterializedView):
            assert got[model] == {
                "signal": view_synced,
                "status": "EXISTS",
                "has_changed": False,
                "update": False,
                "force": False,
                "using": "schema_db",
            }

    @pytest.mark.parametrize("alias", [DEFAULT_DB_ALIAS, "weather_db"])
    def test_migrate_syncs_only_the_migrated_database(self, alias):
        with Recorder() as rec:
            call_command("migrate", database=alias, verbosity=0)
        if alias == "weather_db":
            assert MonthlyObservation in rec.senders and RelatedView not in rec.senders
        else:
            assert RelatedView in rec.senders and MonthlyObservation not in rec.senders
        assert {kw["using"] for _, kw in rec.views} == {alias}

    def test_refresh_pgviews_database(self):
        Observation.objects.create(date=dt.date(2022, 1, 1), temperature=10)
        TestModel.objects.create(name="Bob")
        call_command("refresh_pgviews", database=DEFAULT_DB_ALIAS, verbosity=0)
        assert MonthlyObservation.objects.count() == 0
        assert MaterializedRelatedView.objects.count() == 1
        call_command("refresh_pgviews", database="weather_db", verbosity=0)
        assert MonthlyObservation.objects.count() == 1

    def test_clear_pgviews_database(self):
        before_default = view_names(DEFAULT_DB_ALIAS)
        call_command("clear_pgviews", database="weather_db", verbosity=0)
        assert view_names("weather_db") == set()
        assert view_names(DEFAULT_DB_ALIAS) == before_default
        assert len(view_names("schema_db")) == 2
        call_command("sync_pgviews", database="weather_db", verbosity=0)
        assert len(view_names("weather_db")) == 2


# -- get_view_connection overridden on a model -----------------------------------------------------


@pytest.mark.django_db(databases=ALL)
class TestOverriddenConnection:
    def _declare(self, target):
        vs = ViewSet()

        @classmethod
        def get_view_connection(cls, using, restricted_mode=True):
            return connections[target] if target else None

        vs.view(
            "Pinned",
            "SELECT 1 AS id, 'pinned'::text AS name",
            db_table="pinned_override_view",
            get_view_connection=get_view_connection,
        )
        return vs.models["Pinned"]

    def test_override_sends_view_to_another_database(self, monkeypatch):
        model = self._declare("weather_db")
        project = sync_module.view_models()
        monkeypatch.setattr(sync_module, "view_models", lambda: project + [model])
        with Recorder() as rec:
            call_command("sync_pgviews", database=DEFAULT_DB_ALIAS, verbosity=0)
        assert ("public", "pinned_override_view", "v") in view_names("weather_db")
        assert "pinned_override_view" not in {n for _, n, _ in view_names(DEFAULT_DB_ALIAS)}
        statuses = {s: kw["status"] for s, kw in rec.views}
        assert statuses[model] == "CREATED"
        assert rows("weather_db", "SELECT name FROM pinned_override_view") == [("pinned",)]

    def test_override_returning_none_skips_the_view(self, monkeypatch):
        model = self._declare(None)
        project = sync_module.view_models()
        monkeypatch.setattr(sync_module, "view_models", lambda: project + [model])
        with Recorder() as rec:
            call_command("sync_pgviews", database=DEFAULT_DB_ALIAS, verbosity=0)
        assert model not in rec.senders
        for alias in ALL:
            assert "pinned_override_view" not in {n for _, n, _ in view_names(alias)}


# -- MATERIALIZED_VIEWS_CHECK_SQL_CHANGED on the schema database (search_path=other) --------------


@pytest.mark.django_db(databases=ALL)
class TestSchemaDbCheckSqlChanged:
    @pytest.fixture(autouse=True)
    def check_off(self, settings):
        settings.MATERIALIZED_VIEWS_CHECK_SQL_CHANGED = False

    def test_no_update_rebuilds_the_matview_only(self):
        SchemaObservation.objects.create(date=dt.date(2022, 1, 1), temperature=10)
        with Recorder() as rec:
            call_command("sync_pgviews", database="schema_db", update=False, verbosity=0)
        got = dict(rec.views)
        assert got[SchemaMonthlyObservationView] == {
            "signal": view_synced,
            "status": "EXISTS",
            "has_changed": False,
            "update": False,
            "force": False,
            "using": "schema_db",
        }
        assert got[SchemaMonthlyObservationMaterializedView] == {
            "signal": view_synced,
            "status": "UPDATED",
            "has_changed": True,
            "update": False,
            "force": False,
            "using": "schema_db",
        }
        assert SchemaMonthlyObservationMaterializedView.objects.count() == 1
        assert view_names("schema_db") == {
            ("other", "schemadbtest_schemamonthlyobservationview", "v"),
            ("other", "schemadbtest_schemamonthlyobservationmaterializedview", "m"),
        }

    def test_check_on_rebuilds_only_what_differs(self):
        SchemaObservation.objects.create(date=dt.date(2022, 1, 1), temperature=10)
        call_command("sync_pgviews", database="schema_db", update=False, verbosity=0)
        assert SchemaMonthlyObservationMaterializedView.objects.count() == 1
        SchemaObservation.objects.create(date=dt.date(2022, 2, 3), temperature=20)
        call_command(
            "sync_pgviews",
            database="schema_db",
            update=False,
            materialized_views_check_sql_changed=True,
            verbosity=0,
        )
        assert SchemaMonthlyObservationMaterializedView.objects.count() == 1  # same SQL: left alone
        table = SchemaMonthlyObservationMaterializedView._meta.db_table
        with connections["schema_db"].cursor() as cur:
            cur.execute(f"DROP MATERIALIZED VIEW {table} CASCADE")
            cur.execute(
                f"CREATE MATERIALIZED VIEW {table} AS SELECT date, temperature, id "
                f"FROM schemadbtest_schemaobservation WHERE false"
            )
        assert ("other", table, "m") in view_names("schema_db")
        # --no-update leaves it (documented: redux re-created it regardless) ...
        with Recorder() as rec:
            call_command(
                "sync_pgviews",
                database="schema_db",
                update=False,
                materialized_views_check_sql_changed=True,
                verbosity=0,
            )
        assert dict(rec.views)[SchemaMonthlyObservationMaterializedView]["status"] == "EXISTS"
        assert SchemaMonthlyObservationMaterializedView.objects.count() == 0
        # ... a plain sync rebuilds it from the declaration, in schema other, populated.
        with Recorder() as rec:
            call_command(
                "sync_pgviews", database="schema_db", materialized_views_check_sql_changed=True, verbosity=0
            )
        assert dict(rec.views)[SchemaMonthlyObservationMaterializedView]["status"] == "UPDATED"
        assert SchemaMonthlyObservationMaterializedView.objects.count() == 2
        assert rows("schema_db", "SELECT schemaname FROM pg_matviews WHERE matviewname = %s", [table]) == [
            ("other",)
        ]
        assert {
            r[0] for r in rows("schema_db", "SELECT indexname FROM pg_indexes WHERE tablename = %s", [table])
        } == {SchemaMonthlyObservationMaterializedView._meta.indexes[0].name, f"{table}_id_index"}

    def test_migrate_rebuilds_with_check_off(self):
        SchemaObservation.objects.create(date=dt.date(2022, 1, 1), temperature=10)
        call_command("migrate", database="schema_db", verbosity=0)
        assert SchemaMonthlyObservationMaterializedView.objects.count() == 1
