"""The capture and record functions, and 0007's refresh function that nests a capture,
re-created with this version's text: a capture keeps the database's identity (its oid and its
cluster's system identifier), so that a database restored from a dump, whose relations a new
cluster may give the oids the recorded sources are keyed by, judges its views stale. On every
database that holds the history table; backwards, they are left as they are."""

from django.db import migrations

from django_pgviews_c.historyfn import ReplaceHistoryFunctions, ReplaceHistoryRefreshFunction


class Migration(migrations.Migration):
    dependencies = [("django_pgviews_c", "0007_history_refresh_function")]

    operations = [ReplaceHistoryFunctions(), ReplaceHistoryRefreshFunction()]
