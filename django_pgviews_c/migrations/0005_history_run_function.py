"""The refresh history's function that writes the records of a refresh_views() run in one call
(django_pgviews_c.runhistory): planned once per server backend, the rows counted, the records
inserted and the history pruned in one statement. On every database that holds the history
table; backwards, it is dropped."""

from django.db import migrations

from django_pgviews_c.historyfn import CreateHistoryRunFunction


class Migration(migrations.Migration):
    dependencies = [("django_pgviews_c", "0004_history_functions")]

    operations = [CreateHistoryRunFunction()]
