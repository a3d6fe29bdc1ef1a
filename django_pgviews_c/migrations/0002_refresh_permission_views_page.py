"""The permission to refresh materialized views from the admin, and the proxy its Views page is
registered under. Neither touches the database's tables."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("django_pgviews_c", "0001_refresh_history")]

    operations = [
        migrations.AlterModelOptions(
            name="refreshrecord",
            options={
                "permissions": [
                    ("refresh_materializedview", "Can refresh materialized views from the admin")
                ],
                "verbose_name": "materialized view refresh",
                "verbose_name_plural": "materialized view refreshes",
            },
        ),
        migrations.CreateModel(
            name="DatabaseView",
            fields=[],
            options={
                "verbose_name": "view",
                "verbose_name_plural": "views",
                "proxy": True,
                "default_permissions": (),
                "indexes": [],
                "constraints": [],
            },
            bases=("django_pgviews_c.refreshrecord",),
        ),
    ]
