from django.core.management.commands.migrate import Command as MigrateCommand

from django_pgviews_c import aside
from django_pgviews_c.db.migrations.autodetector import PGViewsAutodetector
from django_pgviews_c.management.base import pgviews_errors


class Command(MigrateCommand):
    autodetector = PGViewsAutodetector

    def handle(self, *args, **options):
        database = options.get("database", "default")
        aside.set_aside.pop(database, None)
        # A sync that fails in post_migrate ends migrate with a clear message and status 1.
        with pgviews_errors():
            try:
                return super().handle(*args, **options)
            except BaseException:
                # Views set aside before a migration that then failed: put them back.
                if aside.set_aside.pop(database, None):
                    from django_pgviews_c.sync import sync_pgviews

                    try:
                        sync_pgviews(database, force=True, send_signals=False)
                    except Exception as exc:  # report both, the migration's error first
                        self.stderr.write(f"could not restore the views set aside: {exc}")
                raise
            finally:
                aside.set_aside.pop(database, None)
