from __future__ import annotations

import logging
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand
from django.db import transaction

from django_pgviews_c.db.migrations.operations import drop_view_sql
from django_pgviews_c.dependencies import view_graph
from django_pgviews_c.management.base import add_database_argument, check_database, pgviews_errors
from django_pgviews_c.view import MaterializedView

logger = logging.getLogger("django_pgviews_c.sync_pgviews")


class Command(BaseCommand):
    help = "Clear Postgres views. Use this before running a migration"

    def add_arguments(self, parser: ArgumentParser) -> None:
        add_database_argument(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        check_database(options["database"])
        database = options["database"]
        with pgviews_errors():
            graph, nodes = view_graph()
            # Dependants first, all in one transaction.
            with transaction.atomic(using=database):
                for index in reversed(graph.order()):
                    model = nodes[index]
                    connection = model.get_view_connection(using=database, restricted_mode=True)
                    if connection is None:
                        continue
                    with connection.cursor() as cursor:
                        cursor.execute(
                            drop_view_sql(model._meta.db_table, issubclass(model, MaterializedView))
                        )
                    logger.info("%s (%s): dropped", model._meta.label, model._meta.db_table)
                    if options["verbosity"] >= 2:
                        self.stdout.write(f"  dropped {model._meta.label} ({model._meta.db_table})")
