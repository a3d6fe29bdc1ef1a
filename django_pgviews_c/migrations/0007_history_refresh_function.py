"""The refresh history's function that does a whole Model.refresh() in one call: lock_timeout
guarded, the sources captured, the REFRESH, the record (django_pgviews_c.refreshfn); with the
history off, the same call without capture and record. On every database that holds the history
table; backwards, it is dropped (with the capture and record it nests), and Model.refresh()
goes back to the one round trip of 0004's functions."""

from django.db import migrations

from django_pgviews_c.historyfn import CreateHistoryRefreshFunction


class Migration(migrations.Migration):
    dependencies = [("django_pgviews_c", "0006_history_functions_by_index")]

    operations = [CreateHistoryRefreshFunction()]
