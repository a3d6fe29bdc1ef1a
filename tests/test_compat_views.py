"""django-pgviews-redux 1.3 parity: the public API on the test project's views (default database).

Every view here was created by the post_migrate sync that pytest-django's test database
creation runs; nothing below creates them by hand unless the test says so.
"""

from __future__ import annotations

import logging

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import DEFAULT_DB_ALIAS, connection, transaction
from django.db.utils import OperationalError, ProgrammingError
from django.dispatch import receiver

from django_pgviews_c import view as pg
from django_pgviews_c.db.fields import get_fields_by_name
from django_pgviews_c.exceptions import ConcurrentIndexNotDefinedError, PGViewsError, SQLNotDefinedError
from django_pgviews_c.signals import all_views_synced, view_synced
from tests.helpers import catalog_rows, execute, populated, relkind
from tests.viewtest import models

VIEWTEST_VIEWS = {
    "viewtest_superusers",
    "viewtest_simpleuser",
    "viewtest_relatedview",
    "viewtest_dependantview",
    "viewtest_parametrizedview",
}
VIEWTEST_MATVIEWS = {
    "viewtest_materializedrelatedview",
    "viewtest_dependantmaterializedview",
    "viewtest_materializedrelatedviewwithindex",
    "viewtest_materializedviewwithindex",
    "viewtest_materializedviewwithnodata",
}


def indexes_of(schema: str, table: str) -> set[str]:
    rows = catalog_rows(
        "SELECT indexname FROM pg_indexes WHERE schemaname = %s AND tablename = %s", [schema, table]
    )
    return {r[0] for r in rows}


# -- views exist after migrate --------------------------------------------------------------------


@pytest.mark.django_db
class TestCreatedByMigrate:
    def test_plain_views_exist_in_pg_views(self):
        rows = catalog_rows(
            "SELECT viewname FROM pg_views WHERE schemaname = 'public' AND viewname LIKE 'viewtest\\_%%'"
        )
        assert {r[0] for r in rows} == VIEWTEST_VIEWS

    def test_materialized_views_exist_in_pg_matviews(self):
        rows = catalog_rows(
            "SELECT matviewname FROM pg_matviews WHERE schemaname = 'public' AND matviewname LIKE 'viewtest\\_%%'"
        )
        assert {r[0] for r in rows} == VIEWTEST_MATVIEWS

    def test_quoted_name_view_exists(self):
        rows = catalog_rows(
            "SELECT viewname FROM pg_views WHERE schemaname = 'public' AND viewname = %s",
            ['Mixed Case "quoted" select'],
        )
        assert rows == [('Mixed Case "quoted" select',)]

    def test_custom_schema_created_with_view(self):
        rows = catalog_rows(
            "SELECT table_name FROM information_schema.views WHERE table_schema = 'test_schema'"
        )
        assert rows == [("my_custom_view",)]
        assert catalog_rows("SELECT count(*) FROM pg_namespace WHERE nspname = 'test_schema'") == [(1,)]

    def test_views_of_other_databases_are_not_on_default(self):
        rows = catalog_rows(
            "SELECT relname FROM pg_class WHERE relname LIKE 'multidbtest\\_%%' OR relname LIKE 'schemadbtest\\_%%'"
        )
        assert rows == []

    def test_with_data_true_views_are_populated(self):
        assert populated("viewtest_materializedrelatedview") is True
        assert populated("viewtest_materializedrelatedviewwithindex") is True


# -- querying through the ORM -----------------------------------------------------------------------


@pytest.mark.django_db
class TestQueries:
    def test_wildcard_projection_copies_every_user_field(self):
        user_fields = {f.name for f in User._meta.fields}
        view_fields = {f.name for f in models.Superusers._meta.fields}
        assert user_fields <= view_fields
        user = User.objects.create(username="foo", is_superuser=True)
        user.set_password("blah")
        user.save()
        User.objects.create(username="plain", is_superuser=False)
        got = models.Superusers.objects.get(username="foo")
        assert got.id == user.id
        assert got.password == user.password
        assert got.date_joined == user.date_joined
        assert list(models.Superusers.objects.values_list("username", flat=True)) == ["foo"]

    def test_limited_projection_copies_named_fields_only(self):
        user = User.objects.create(username="foo", is_superuser=True)
        user.set_password("blah")
        user.save()
        names = {f.name for f in models.SimpleUser._meta.fields}
        assert names == {"id", "username", "password"}
        got = models.SimpleUser.objects.get(username="foo")
        assert (got.username, got.password) == (user.username, user.password)
        assert not hasattr(got, "date_joined")

    def test_projection_copies_the_current_field_definition(self):
        assert (
            models.SimpleUser._meta.get_field("username").max_length
            == User._meta.get_field("username").max_length
        )

    def test_related_view_follows_foreign_key(self):
        bob = models.TestModel.objects.create(name="Bob")
        got = models.RelatedView.objects.get(model=bob)
        assert got.model.name == "Bob"
        assert got.model_id == bob.id
        assert models.DependantView.objects.count() == 1

    def test_deleting_a_model_row_a_view_reads_works(self):
        bob = models.TestModel.objects.create(name="Bob")
        assert models.RelatedView.objects.count() == 1
        bob.delete()
        assert models.RelatedView.objects.count() == 0

    def test_parametrized_view_parameter_round_trips(self):
        hidden = "it's \\ $$ hidden"
        models.TestModel.objects.create(name=hidden)
        models.TestModel.objects.create(name="shown")
        models.TestModel.objects.create(name="it's")
        assert sorted(models.ParametrizedView.objects.values_list("name", flat=True)) == ["it's", "shown"]
        definition = catalog_rows(
            "SELECT definition FROM pg_views WHERE viewname = 'viewtest_parametrizedview'"
        )[0][0]
        assert "hidden" in definition and "$$" in definition

    def test_quoted_name_view_queryable(self):
        models.TestModel.objects.create(name="x")
        rows = list(models.QuotedNameView.objects.all())
        assert len(rows) == 1
        with connection.cursor() as cur:
            cur.execute('SELECT "Weird Column" FROM "Mixed Case ""quoted"" select"')
            assert cur.fetchall() == [("x",)]

    def test_custom_schema_view_queryable(self):
        # Django quotes a dotted db_table as one identifier (as with redux), so read it with SQL.
        bob = models.TestModel.objects.create(name="Bob")
        assert catalog_rows("SELECT model_id FROM test_schema.my_custom_view") == [(bob.id,)]


# -- read-only managers -----------------------------------------------------------------------------


@pytest.mark.django_db
class TestReadOnly:
    @pytest.mark.parametrize("model", [models.RelatedView, models.MaterializedRelatedView])
    def test_writes_refused(self, model):
        models.TestModel.objects.create(name="Bob")
        with pytest.raises(NotImplementedError):
            model.objects.create(id=99, model_id=1)
        with pytest.raises(NotImplementedError):
            model.objects.all().update(id=5)
        with pytest.raises(NotImplementedError):
            model.objects.all().delete()
        with pytest.raises(NotImplementedError):
            model.objects.bulk_create([model(id=5, model_id=1)])
        with pytest.raises(NotImplementedError):
            model.objects.update_or_create(id=5, defaults={"model_id": 1})

    def test_plain_view_manager_is_ordinary(self):
        # View (not ReadOnlyView) keeps Django's manager: a write reaches PostgreSQL, which
        # refuses to update a non-updatable view.
        from django.db import DatabaseError

        with pytest.raises(DatabaseError) as info, transaction.atomic():
            models.SimpleUser.objects.create(id=1, username="x", password="y")
        assert "cannot insert into view" in str(info.value)


# -- materialized views -----------------------------------------------------------------------------


@pytest.mark.django_db
class TestMaterializedViews:
    def test_refresh_picks_up_new_rows(self):
        assert models.MaterializedRelatedView.objects.count() == 0
        models.TestModel.objects.create(name="Bob")
        assert models.MaterializedRelatedView.objects.count() == 0
        models.MaterializedRelatedView.refresh()
        assert models.MaterializedRelatedView.objects.count() == 1

    def test_refresh_concurrently_with_index(self):
        models.TestModel.objects.create(name="Bob")
        models.MaterializedRelatedViewWithIndex.refresh(concurrently=True, strict=True)
        assert models.MaterializedRelatedViewWithIndex.objects.count() == 1
        models.TestModel.objects.create(name="Ann")
        models.MaterializedRelatedViewWithIndex.refresh(concurrently=True)
        assert models.MaterializedRelatedViewWithIndex.objects.count() == 2

    def test_refresh_concurrently_without_index_warns_and_refreshes(self, caplog):
        models.TestModel.objects.create(name="Bob")
        with caplog.at_level(logging.WARNING):
            models.MaterializedRelatedView.refresh(concurrently=True)
        assert models.MaterializedRelatedView.objects.count() == 1
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert warnings, "no warning logged"
        assert any(
            "viewtest.MaterializedRelatedView" in r.getMessage() and "concurrent" in r.getMessage()
            for r in warnings
        )

    def test_refresh_concurrently_strict_raises(self):
        models.TestModel.objects.create(name="Bob")
        with pytest.raises(ConcurrentIndexNotDefinedError) as info:
            models.MaterializedRelatedView.refresh(concurrently=True, strict=True)
        assert "concurrent_index" in str(info.value)
        assert isinstance(info.value, PGViewsError)
        assert models.MaterializedRelatedView.objects.count() == 0

    def test_refresh_sees_rows_of_open_transaction(self):
        with transaction.atomic():
            models.TestModel.objects.create(name="uncommitted")
            models.MaterializedRelatedView.refresh()
            assert models.MaterializedRelatedView.objects.count() == 1
            models.MaterializedRelatedViewWithIndex.refresh(concurrently=True)
            assert models.MaterializedRelatedViewWithIndex.objects.count() == 1

    def test_refresh_of_dropped_view_raises_undefined_table(self):
        execute("DROP MATERIALIZED VIEW viewtest_materializedrelatedview CASCADE")
        # The driver's own exception, as django-pgviews-redux lets it through.
        with pytest.raises(Exception) as info:
            models.MaterializedRelatedView.refresh()
        assert type(info.value).__name__ == "UndefinedTable"
        assert type(info.value).__module__.startswith(("psycopg.", "psycopg2."))
        assert getattr(info.value, "sqlstate", getattr(info.value, "pgcode", None)) == "42P01"

    def test_with_data_false_unpopulated_until_refresh(self):
        assert populated("viewtest_materializedviewwithnodata") is False
        models.TestModel.objects.create(name="Bob")
        with pytest.raises((OperationalError, ProgrammingError)) as info, transaction.atomic():
            models.MaterializedViewWithNoData.objects.count()
        assert "has not been populated" in str(info.value)
        models.MaterializedViewWithNoData.refresh()
        assert populated("viewtest_materializedviewwithnodata") is True
        assert models.MaterializedViewWithNoData.objects.count() == 1

    def test_concurrent_refresh_of_unpopulated_view_falls_back(self):
        models.TestModel.objects.create(name="Bob")
        execute("REFRESH MATERIALIZED VIEW viewtest_materializedrelatedviewwithindex WITH NO DATA")
        assert populated("viewtest_materializedrelatedviewwithindex") is False
        models.MaterializedRelatedViewWithIndex.refresh(concurrently=True)
        assert models.MaterializedRelatedViewWithIndex.objects.count() == 1
        # The same through refresh_pgviews --concurrently.
        execute("REFRESH MATERIALIZED VIEW viewtest_materializedrelatedviewwithindex WITH NO DATA")
        call_command("refresh_pgviews", concurrently=True, verbosity=0)
        assert populated("viewtest_materializedrelatedviewwithindex") is True
        assert models.MaterializedRelatedViewWithIndex.objects.count() == 1

    def test_concurrent_index_named_like_redux(self):
        assert "viewtest_materializedrelatedviewwithindex_id_index" in indexes_of(
            "public", "viewtest_materializedrelatedviewwithindex"
        )
        definition = catalog_rows(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'viewtest_materializedrelatedviewwithindex_id_index'"
        )[0][0]
        assert definition.startswith("CREATE UNIQUE INDEX")
        assert definition.endswith("(id)")

    def test_meta_indexes_exist_with_their_names(self):
        names = indexes_of("public", "viewtest_materializedviewwithindex")
        assert "viewtest_mvwi_name" in names
        expected_auto = models.MaterializedViewWithIndex._meta.indexes[0].name
        assert expected_auto in names
        assert len(names) == 2

    def test_sync_restores_dropped_and_removes_foreign_indexes(self):
        table = "viewtest_materializedrelatedviewwithindex"
        original = indexes_of("public", table)
        for name in original:
            execute(f"DROP INDEX {name}")
        execute(f"CREATE UNIQUE INDEX {table}_concurrent_idx ON {table} (id)")
        execute(f"CREATE INDEX {table}_some_idx ON {table} (model_id)")
        call_command("sync_pgviews", materialized_views_check_sql_changed=True, verbosity=0)
        assert indexes_of("public", table) == original

    def test_get_fields_by_name(self):
        fields = get_fields_by_name(User, "username", "password")
        assert set(fields) == {"username", "password"}
        assert fields["username"] is User._meta.get_field("username")
        everything = get_fields_by_name(User, "*")
        assert set(everything) == {f.name for f in User._meta.fields}


# -- declarations without SQL ----------------------------------------------------------------------


def test_get_sql_without_sql_raises():
    from tests.helpers import ViewSet

    vs = ViewSet()
    model = vs.view("NoSql", None)
    with pytest.raises(SQLNotDefinedError):
        model.get_sql()


def test_view_sql_is_a_named_tuple():
    sql = pg.ViewSQL("SELECT %s", [1])
    assert sql.query == "SELECT %s" and sql.params == [1]
    assert tuple(sql) == ("SELECT %s", [1])


def test_unrecognized_projection_raises():
    with pytest.raises(TypeError):

        class Bad(pg.View):  # noqa: F841
            projection = ["not-a-spec"]

            class Meta:
                app_label = "viewtest"
                managed = False
                abstract = True


def test_a_projection_of_a_reverse_relation_raises_naming_the_view():
    from django.db.models.fields.reverse_related import ForeignObjectRel

    from tests.helpers import ViewSet

    # TestModel is read by RelatedView's foreign key: "relatedview" is its reverse relation.
    assert isinstance(models.TestModel._meta.get_field("relatedview"), ForeignObjectRel)
    vs = ViewSet()
    with pytest.raises(TypeError) as info:
        vs.view(
            "ProjectsReverse",
            "SELECT id FROM viewtest_testmodel",
            projection=["viewtest.TestModel.relatedview"],
        )
    assert str(info.value) == (
        "ProjectsReverse: projection viewtest.TestModel.relatedview is a reverse relation, not a "
        "field of viewtest.TestModel: a view can project only fields"
    )
    # Nothing is left waiting to be projected when TestModel is prepared again.
    assert ("viewtest", "testmodel") not in pg._DEFERRED_PROJECTIONS
    # A field of the same model is projected as before.
    ok = vs.view(
        "ProjectsName", "SELECT id, name FROM viewtest_testmodel", projection=["viewtest.TestModel.name"]
    )
    assert ok._meta.get_field("name").max_length == models.TestModel._meta.get_field("name").max_length


# -- signals ----------------------------------------------------------------------------------------


def _view_models():
    from django_pgviews_c.sync import view_models

    return view_models()


@pytest.mark.django_db
class TestSignals:
    def test_view_synced_and_all_views_synced(self, settings):
        settings.MATERIALIZED_VIEWS_CHECK_SQL_CHANGED = True
        synced: dict[type, dict] = {}
        finished: list[dict] = []

        @receiver(view_synced, weak=False)
        def on_view(sender, **kwargs):
            synced[sender] = kwargs

        @receiver(all_views_synced, weak=False)
        def on_all(sender, **kwargs):
            finished.append({"sender": sender, **kwargs})

        try:
            call_command("sync_pgviews", update=False, verbosity=0)
        finally:
            view_synced.disconnect(on_view)
            all_views_synced.disconnect(on_all)

        default_views = {m for m in _view_models() if m._meta.app_label == "viewtest"}
        assert set(synced) == default_views
        assert len(synced) == 12
        for kwargs in synced.values():
            assert kwargs == {
                "signal": view_synced,
                "update": False,
                "force": False,
                "status": "EXISTS",
                "has_changed": False,
                "using": DEFAULT_DB_ALIAS,
            }
        assert finished == [{"sender": None, "signal": all_views_synced, "using": DEFAULT_DB_ALIAS}]

    def test_changed_view_reports_status(self):
        execute("DROP MATERIALIZED VIEW viewtest_materializedrelatedview CASCADE")
        execute("DROP VIEW viewtest_superusers")
        seen: dict[type, dict] = {}

        def on_view(sender, **kwargs):
            seen[sender] = kwargs

        view_synced.connect(on_view, weak=False)
        try:
            call_command("sync_pgviews", force=True, verbosity=0)
        finally:
            view_synced.disconnect(on_view)
        assert seen[models.MaterializedRelatedView]["status"] == "CREATED"
        assert seen[models.MaterializedRelatedView]["has_changed"] is True
        assert seen[models.MaterializedRelatedView]["force"] is True
        assert seen[models.MaterializedRelatedView]["update"] is True
        assert seen[models.Superusers]["status"] == "CREATED"
        # The dependant went down with its dependency and came back.
        assert seen[models.DependantMaterializedView]["has_changed"] is True
        assert seen[models.RelatedView]["status"] == "EXISTS"
        assert relkind("viewtest_dependantmaterializedview") == "m"
        assert relkind("viewtest_superusers") == "v"


# -- sync semantics redux tests ---------------------------------------------------------------------


@pytest.mark.django_db
class TestReduxSyncBehaviour:
    def test_force_replaces_hand_made_incompatible_views(self):
        execute("DROP VIEW viewtest_relatedview CASCADE")
        execute("CREATE VIEW viewtest_relatedview AS SELECT id AS model_id, name FROM viewtest_testmodel")
        execute("CREATE VIEW viewtest_dependantview AS SELECT name FROM viewtest_relatedview")
        call_command("sync_pgviews", "--force", verbosity=0)
        names = {
            r[0]
            for r in catalog_rows(
                "SELECT viewname FROM pg_views WHERE schemaname='public' AND viewname LIKE 'viewtest\\_%%'"
            )
        }
        assert names == VIEWTEST_VIEWS
        cols = catalog_rows(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_name = 'viewtest_relatedview' ORDER BY ordinal_position"
        )
        assert cols == [("model_id",), ("id",)]
        cols = catalog_rows(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_name = 'viewtest_dependantview' ORDER BY ordinal_position"
        )
        assert cols == [("model_id",)]

    def test_force_replaces_hand_made_materialized_views(self):
        execute("DROP MATERIALIZED VIEW viewtest_materializedrelatedview CASCADE")
        execute(
            "CREATE MATERIALIZED VIEW viewtest_materializedrelatedview AS "
            "SELECT id AS model_id, name FROM viewtest_testmodel"
        )
        execute(
            "CREATE MATERIALIZED VIEW viewtest_dependantmaterializedview AS "
            "SELECT name FROM viewtest_materializedrelatedview"
        )
        call_command("sync_pgviews", "--force", verbosity=0)
        for table, expected in (
            ("viewtest_materializedrelatedview", ["model_id", "id"]),
            ("viewtest_dependantmaterializedview", ["model_id"]),
        ):
            cols = catalog_rows(
                "SELECT a.attname FROM pg_attribute a WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 "
                "AND NOT a.attisdropped ORDER BY a.attnum",
                [table],
            )
            assert [c[0] for c in cols] == expected

    def test_check_sql_changed_off_rebuilds_even_without_update(self, settings):
        settings.MATERIALIZED_VIEWS_CHECK_SQL_CHANGED = False
        models.TestModel.objects.create(name="Test")
        call_command("sync_pgviews", update=False, verbosity=0)
        assert models.MaterializedRelatedView.objects.count() == 1

    def test_check_sql_changed_recreates_only_changed_matview(self, settings):
        settings.MATERIALIZED_VIEWS_CHECK_SQL_CHANGED = False
        models.TestModel.objects.create(name="Test")
        call_command("sync_pgviews", verbosity=0)
        # check_sql_changed off: re-created, so the new row shows.
        assert models.MaterializedRelatedView.objects.count() == 1
        models.TestModel.objects.create(name="Test 2")
        call_command("sync_pgviews", update=False, materialized_views_check_sql_changed=True, verbosity=0)
        assert models.MaterializedRelatedView.objects.count() == 1
        execute("DROP MATERIALIZED VIEW viewtest_materializedrelatedview CASCADE")
        execute(
            "CREATE MATERIALIZED VIEW viewtest_materializedrelatedview AS "
            "SELECT id AS model_id, id FROM viewtest_testmodel ORDER BY name"
        )
        call_command("sync_pgviews", update=False, materialized_views_check_sql_changed=True, verbosity=0)
        assert models.MaterializedRelatedView.objects.count() == 2

    def test_migrate_refreshes_unpopulated_matview(self, settings):
        settings.MATERIALIZED_VIEWS_CHECK_SQL_CHANGED = True
        models.TestModel.objects.create(name="Test")
        call_command("migrate", verbosity=0)
        assert models.MaterializedRelatedView.objects.count() == 0
        execute("DROP MATERIALIZED VIEW viewtest_materializedrelatedview CASCADE")
        execute(
            "CREATE MATERIALIZED VIEW viewtest_materializedrelatedview AS "
            "SELECT id AS model_id, id FROM viewtest_testmodel WITH NO DATA"
        )
        call_command("migrate", verbosity=0)
        assert models.MaterializedRelatedView.objects.count() == 1

    def test_migrate_recreates_changed_matview(self, settings):
        settings.MATERIALIZED_VIEWS_CHECK_SQL_CHANGED = True
        models.TestModel.objects.create(name="Test")
        execute("DROP MATERIALIZED VIEW viewtest_materializedrelatedview CASCADE")
        execute(
            "CREATE MATERIALIZED VIEW viewtest_materializedrelatedview AS "
            "SELECT id AS model_id, id FROM viewtest_testmodel ORDER BY name"
        )
        call_command("migrate", verbosity=0)
        assert models.MaterializedRelatedView.objects.count() == 1
        assert models.DependantMaterializedView.objects.count() == 1

    def test_disable_sync_on_migrate(self, settings):
        from django.apps import apps
        from django.db.models.signals import post_migrate, pre_migrate

        saved_post, saved_pre = list(post_migrate.receivers), list(pre_migrate.receivers)
        try:
            post_migrate.disconnect(dispatch_uid="django_pgviews_c.sync_pgviews")
            pre_migrate.disconnect(dispatch_uid="django_pgviews_c.set_views_aside")
            settings.MATERIALIZED_VIEWS_DISABLE_SYNC_ON_MIGRATE = True
            apps.get_app_config("django_pgviews_c").ready()
            execute("DROP MATERIALIZED VIEW viewtest_materializedrelatedview CASCADE")
            call_command("migrate", verbosity=0)
            assert relkind("viewtest_materializedrelatedview") is None
            call_command("sync_pgviews", verbosity=0)
            assert relkind("viewtest_materializedrelatedview") == "m"
        finally:
            post_migrate.receivers[:] = saved_post
            pre_migrate.receivers[:] = saved_pre
            post_migrate.sender_receivers_cache.clear()
            pre_migrate.sender_receivers_cache.clear()


def test_view_attributes_come_from_an_abstract_base():
    """concurrent_index, its tablespace and dependencies declared on an abstract base hold for
    the subclasses that do not declare their own (redux gave them none); None opts out."""

    class Window(pg.MaterializedView):
        concurrent_index = "id"
        concurrent_index_tablespace = "fast"
        dependencies = ["viewtest.Source"]

        class Meta:
            app_label = "viewtest"
            managed = False
            abstract = True

    class Recent(Window):
        class Meta:
            app_label = "viewtest"
            managed = False
            abstract = True

    class Plain(Window):
        concurrent_index = None
        dependencies = []

        class Meta:
            app_label = "viewtest"
            managed = False
            abstract = True

    assert (Recent._concurrent_index, Recent._concurrent_index_tablespace) == ("id", "fast")
    assert Recent._dependencies == ["viewtest.Source"]
    assert Recent._dependencies is not Window._dependencies
    assert (Plain._concurrent_index, Plain._dependencies) == (None, [])
