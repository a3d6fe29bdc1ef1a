"""The refresh history's two server-side functions, which a recorded Model.refresh() calls in its
one round trip (django_pgviews_c.historyfn): planned once per server backend instead of on every
refresh. On every database that holds the history table; backwards, they are dropped."""

from django.db import migrations

from django_pgviews_c.historyfn import CreateHistoryFunctions


class Migration(migrations.Migration):
    dependencies = [("django_pgviews_c", "0003_exact_counters")]

    operations = [CreateHistoryFunctions()]
