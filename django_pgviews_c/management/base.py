"""What the commands share: the --database option and turning our errors into CommandError."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from django.core.management.base import CommandError

from django_pgviews_c.exceptions import PGViewsError


@contextlib.contextmanager
def pgviews_errors() -> Iterator[None]:
    """Report a PGViewsError or Ctrl-C as a one-paragraph error, not a traceback."""
    try:
        yield
    except PGViewsError as exc:
        raise CommandError(str(exc)) from exc
    except KeyboardInterrupt:
        raise CommandError("interrupted: the open transaction was rolled back, nothing was changed") from None


def check_database(alias: str) -> None:
    """An unknown --database is an error, as it is for Django's own commands."""
    from django.db import connections

    if alias not in connections:
        raise CommandError(f"unknown database {alias!r}: it is not in settings.DATABASES")


def add_database_argument(parser) -> None:
    parser.add_argument(
        "--database",
        default="default",
        help='Nominates a database to synchronize. Defaults to the "default" database.',
    )
