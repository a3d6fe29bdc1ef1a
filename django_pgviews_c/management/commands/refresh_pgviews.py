from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from django_pgviews_c.exceptions import ConcurrentIndexNotDefinedError
from django_pgviews_c.freshness import add_refresh_arguments, run_refresh_command
from django_pgviews_c.management.base import (
    add_database_argument,
    check_database,
    pgviews_errors,
    views_elsewhere,
)
from django_pgviews_c.refresh import RefreshInterrupted, refresh_views
from django_pgviews_c.wording import plural


class Command(BaseCommand):
    help = "Refresh materialized Postgres views for all installed apps, in dependency order."
    # Django's system checks cover every model of the project and cost as much as the start-up;
    # a view command needs none of them (the views' declarations are checked by the C graph
    # before anything reaches the database). `manage.py check` runs them all.
    requires_system_checks = []

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "-C",
            "--concurrently",
            action="store_true",
            dest="concurrently",
            help="Refresh concurrently if the materialized view supports it.",
        )
        parser.add_argument(
            "--strict",
            action="store_true",
            dest="strict",
            help="Raise error if concurrently refreshing materialized without a concurrent index.",
        )
        parser.add_argument(
            "-j",
            "--jobs",
            type=int,
            default=1,
            help="Refresh up to N views at once, each as soon as the views it reads are done "
            "(own connections, so not inside a transaction). Default 1.",
        )
        add_database_argument(parser)
        add_refresh_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        check_database(options["database"])
        if options["jobs"] < 1:
            raise CommandError("--jobs must be at least 1")
        verbosity = options["verbosity"]
        try:
            with pgviews_errors():
                try:
                    if run_refresh_command(self.stdout, options):
                        return
                    result = refresh_views(
                        using=options["database"],
                        concurrently=options["concurrently"],
                        strict=options["strict"],
                        jobs=options["jobs"],
                        progress=self.stdout.write if verbosity >= 2 else None,
                        waits=self.stdout.write if verbosity >= 1 else None,
                    )
                except RefreshInterrupted as exc:
                    # Says which views were refreshed before the signal and which were not.
                    raise CommandError(exc.summary(), returncode=128 + exc.signum) from None
        except CommandError as exc:
            # call_command() gets the exception django-pgviews-redux raised; the command line
            # keeps the one-paragraph message and exit status 1.
            if isinstance(exc.__cause__, ConcurrentIndexNotDefinedError) and not getattr(
                self, "_called_from_command_line", False
            ):
                raise exc.__cause__ from None
            raise
        if verbosity >= 1:
            n = result.count
            self.stdout.write(f"refreshed {plural(n, 'materialized view')} in {result.wall:.2f}s")
        elsewhere = views_elsewhere(options["database"], materialized=True) if result.count == 0 else None
        if elsewhere:
            self.stderr.write(f"warning: {elsewhere}")
