from django.db import connections, models
from django.db.models import signals
from django.dispatch import receiver

from django_pgviews_c import view as pg


class TestModel(models.Model):
    __test__ = False  # a model, not a pytest test class
    name = models.CharField(max_length=100)


class Superusers(pg.View):
    projection = ["auth.User.*"]
    sql = "SELECT * FROM auth_user WHERE is_superuser = TRUE;"


class SimpleUser(pg.View):
    projection = ["auth.User.username", "auth.User.password"]
    # The row_number() call is needed for the ordering.
    sql = "SELECT username, password, row_number() OVER () AS id FROM auth_user"


class RelatedView(pg.ReadOnlyView):
    sql = "SELECT id AS model_id, id FROM viewtest_testmodel"
    model = models.ForeignKey(TestModel, on_delete=models.DO_NOTHING)


class MaterializedRelatedView(pg.ReadOnlyMaterializedView):
    sql = "SELECT id AS model_id, id FROM viewtest_testmodel"
    model = models.ForeignKey(TestModel, on_delete=models.DO_NOTHING)


class DependantView(pg.ReadOnlyView):
    dependencies = ("viewtest.RelatedView",)
    sql = "SELECT model_id FROM viewtest_relatedview;"


class DependantMaterializedView(pg.ReadOnlyMaterializedView):
    dependencies = ("viewtest.MaterializedRelatedView",)
    sql = "SELECT model_id FROM viewtest_materializedrelatedview;"


class MaterializedRelatedViewWithIndex(pg.ReadOnlyMaterializedView):
    concurrent_index = "id"
    sql = "SELECT id AS model_id, id FROM viewtest_testmodel"
    model = models.ForeignKey(TestModel, on_delete=models.DO_NOTHING)


class CustomSchemaView(pg.ReadOnlyView):
    sql = "SELECT id AS model_id, id FROM viewtest_testmodel"
    model = models.ForeignKey(TestModel, on_delete=models.DO_NOTHING)

    class Meta:
        managed = False
        db_table = "test_schema.my_custom_view"


class MaterializedViewWithIndex(pg.ReadOnlyMaterializedView):
    sql = "SELECT id AS model_id, id, name FROM viewtest_testmodel"
    model = models.ForeignKey(TestModel, on_delete=models.DO_NOTHING)
    name = models.CharField(max_length=100)

    class Meta:
        managed = False
        indexes = [models.Index(fields=["model"]), models.Index(fields=["name"], name="viewtest_mvwi_name")]


class MaterializedViewWithNoData(pg.ReadOnlyMaterializedView):
    sql = "SELECT id AS model_id, id FROM viewtest_testmodel"
    with_data = False
    model = models.ForeignKey(TestModel, on_delete=models.DO_NOTHING)


class ParametrizedView(pg.ReadOnlyView):
    name = models.CharField(max_length=100)

    @classmethod
    def get_sql(cls):
        return pg.ViewSQL("SELECT id, name FROM viewtest_testmodel WHERE name <> %s", ["it's \\ $$ hidden"])


class QuotedNameView(pg.ReadOnlyView):
    sql = 'SELECT id, name AS "Weird Column" FROM viewtest_testmodel'

    class Meta:
        managed = False
        db_table = '"Mixed Case ""quoted"" select"'


@receiver(signals.pre_migrate, dispatch_uid="tests.viewtest.create_test_schema")
def create_test_schema(sender, app_config, using, **kwargs):
    """CustomSchemaView's schema: a sync never creates one unless PGVIEWS_CREATE_SCHEMAS is set
    (redux's own test project creates it the same way)."""
    with connections[using].cursor() as cursor:
        cursor.execute("CREATE SCHEMA IF NOT EXISTS test_schema")
