from django.core.management.commands.migrate import Command as MigrateCommand

from django_pgviews_c.db.migrations.autodetector import PGViewsAutodetector
from django_pgviews_c.management.base import pgviews_errors


class Command(MigrateCommand):
    autodetector = PGViewsAutodetector

    def handle(self, *args, **options):
        # A sync that fails in post_migrate ends migrate with a clear message and status 1.
        with pgviews_errors():
            return super().handle(*args, **options)
