"""The refresh history table, on every database that holds views (history.CreateHistoryModel)."""

from django.db import migrations, models

from django_pgviews_c.history import CreateHistoryModel


class Migration(migrations.Migration):
    initial = True

    dependencies = []

    operations = [
        CreateHistoryModel(
            name="RefreshRecord",
            fields=[
                (
                    "id",
                    models.AutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID"),
                ),
                ("view", models.CharField(help_text="app_label.ModelName", max_length=255)),
                ("db_table", models.CharField(max_length=255)),
                ("started_at", models.DateTimeField()),
                ("duration", models.FloatField(help_text="seconds")),
                ("rows", models.BigIntegerField(blank=True, null=True)),
                ("concurrent", models.BooleanField(default=False)),
                (
                    "plain_reason",
                    models.CharField(
                        blank=True,
                        default="",
                        help_text="why plain when concurrent was asked",
                        max_length=255,
                    ),
                ),
                ("ok", models.BooleanField(default=True)),
                ("sqlstate", models.CharField(blank=True, default="", max_length=5)),
                ("message", models.TextField(blank=True, default="")),
                ("sources", models.JSONField(blank=True, null=True)),
            ],
            options={
                "verbose_name": "materialized view refresh",
                "db_table": "django_pgviews_c_refresh",
                "indexes": [models.Index(fields=["view", "-id"], name="pgviews_c_refresh_view")],
            },
        ),
    ]
