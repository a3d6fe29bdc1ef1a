"""The capture and record functions of migration 0004 re-created with this version's text: the
capture looks each catalog row up by its index (its plan hashed the whole of pg_class and
pg_rewrite before, a cost growing with every relation of the database) and marks a capture
taken in a REPEATABLE READ or SERIALIZABLE transaction. On every database that holds the
history table; backwards, they are left as they are."""

from django.db import migrations

from django_pgviews_c.historyfn import ReplaceHistoryFunctions


class Migration(migrations.Migration):
    dependencies = [("django_pgviews_c", "0005_history_run_function")]

    operations = [ReplaceHistoryFunctions()]
