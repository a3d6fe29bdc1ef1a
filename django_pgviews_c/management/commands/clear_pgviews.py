from __future__ import annotations

import logging
import sys
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand

from django_pgviews_c.clear import Doomed, clear_views
from django_pgviews_c.exact import TRIGGER
from django_pgviews_c.management.base import add_database_argument, check_database, pgviews_errors
from django_pgviews_c.wording import plural

logger = logging.getLogger("django_pgviews_c.sync_pgviews")


class Command(BaseCommand):
    help = (
        "Drop the views of a database (dependants first, in one transaction). Refuses when a view "
        "this app does not manage reads one of them, unless --cascade."
    )
    requires_system_checks = []

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--cascade",
            action="store_true",
            help="Also drop the views this app does not manage that read one of its views "
            "(each is named before it is dropped).",
        )
        parser.add_argument(
            "--noinput",
            "--no-input",
            action="store_false",
            dest="interactive",
            help="Do NOT prompt the user for input of any kind.",
        )
        add_database_argument(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        database = options["database"]
        check_database(database)
        with pgviews_errors(database, nothing_changed=True):  # Ctrl-C while connecting is an interrupt
            check_database(database, connect=True)
        verbosity = options["verbosity"]
        # As Django's flush: ask when a person can answer (a terminal), unless --no-input.
        interactive = options.get("interactive", True) and sys.stdin.isatty()

        def progress(d: Doomed) -> None:
            logger.info("%s: dropped", d.describe())
            if verbosity >= 1:
                self.stdout.write(f"  dropped {d.describe()}")

        def untriggered(table: str) -> None:
            logger.info("%s: trigger %s dropped", table, TRIGGER)
            if verbosity >= 1:
                self.stdout.write(f"  dropped trigger {TRIGGER} from {table} (exact staleness)")

        with pgviews_errors(database, nothing_changed=True):
            dropped = clear_views(
                database,
                cascade=options["cascade"],
                confirm=self._confirm if interactive else None,
                progress=progress,
                untriggered=untriggered,
            )
        if dropped is None:
            self.stdout.write("Clear cancelled.")
        elif verbosity >= 1:
            self.stdout.write(f"dropped {plural(len(dropped), 'view')} of database {database!r}")

    def _confirm(self, alias: str, drop: list[Doomed]) -> bool:
        listing = "\n".join(f"  {d.describe()}" for d in drop)
        answer = input(
            f"You have requested to drop {plural(len(drop), 'view')} of database {alias!r}:\n{listing}\n"
            "Are you sure you want to do this?\n\n    Type 'yes' to continue, or 'no' to cancel: "
        )
        return answer.strip() == "yes"
