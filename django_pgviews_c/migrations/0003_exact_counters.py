"""The counters of the exact staleness mode, beside the refresh history on every database that
holds views (history.CreateHistoryModel). The sync creates the trigger function and the
triggers, only where a view asks for exact staleness (django_pgviews_c.exact); backwards, the
triggers and the function go first (a trigger left calling the function would fail every write
to its table once the counter table is gone)."""

from django.db import migrations, models

from django_pgviews_c.exact import RemoveExactTriggers
from django_pgviews_c.history import CreateHistoryModel


class Migration(migrations.Migration):
    dependencies = [("django_pgviews_c", "0002_refresh_permission_views_page")]

    operations = [
        CreateHistoryModel(
            name="ExactCounter",
            fields=[
                (
                    "rel",
                    models.BigIntegerField(help_text="oid of the table", primary_key=True, serialize=False),
                ),
                ("writes", models.BigIntegerField(default=0, help_text="statements committed on it")),
            ],
            options={
                "verbose_name": "exact staleness counter",
                "db_table": "django_pgviews_c_exact",
                "default_permissions": (),
            },
        ),
        RemoveExactTriggers(),
    ]
