from typing import Any

from django.core.management.base import CommandError
from django.core.management.commands.migrate import Command as MigrateCommand

from django_pgviews_c import aside
from django_pgviews_c.db.migrations.autodetector import PGViewsAutodetector
from django_pgviews_c.management.base import pgviews_errors


class Command(MigrateCommand):
    """Django's migrate, with the views that read what the migrations drop or retype set aside
    and re-created in one transaction with them (django_pgviews_c.aside)."""

    autodetector = PGViewsAutodetector

    def handle(self, *args: Any, **options: Any) -> None:
        database = options.get("database", "default")
        # A sync that fails in post_migrate ends migrate with a clear message and status 1.
        with pgviews_errors():
            run = None
            try:
                with aside.around_migrate(database, fake=bool(options.get("fake"))) as run:
                    super().handle(*args, **options)
            except KeyboardInterrupt:
                if run is not None and run.in_transaction:
                    raise CommandError(
                        "interrupted: the migrations and the views set aside for them were rolled "
                        "back together, nothing was changed"
                    ) from None
                raise CommandError(
                    "interrupted: migrations that finished before stay applied (showmigrations "
                    "lists them), the one running was rolled back"
                ) from None
