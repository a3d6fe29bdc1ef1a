"""What the commands share: the --database option and turning our errors into CommandError."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from django.core.management.base import CommandError
from django.db import Error as DjangoDBError

from django_pgviews_c.dberrors import connect_failed_error, ensure_connected, is_connect_failure
from django_pgviews_c.exceptions import PGViewsError


@contextlib.contextmanager
def pgviews_errors(database: str | None = None) -> Iterator[None]:
    """Report a PGViewsError, a database that cannot be reached, or Ctrl-C as a one-paragraph
    error, not a traceback."""
    try:
        yield
    except PGViewsError as exc:
        raise CommandError(str(exc)) from exc
    except DjangoDBError as exc:
        if not is_connect_failure(exc):
            raise
        raise CommandError(str(connect_failed_error(_alias_of(exc, database), exc))) from exc
    except KeyboardInterrupt:
        raise CommandError("interrupted: the open transaction was rolled back, nothing was changed") from None


def _alias_of(exc: BaseException, default: str | None) -> str:
    """The alias of the connection whose opening raised ``exc``."""
    tb = exc.__traceback__
    while tb is not None:
        wrapper = tb.tb_frame.f_locals.get("self")
        alias = getattr(wrapper, "alias", None)
        if isinstance(alias, str) and tb.tb_frame.f_code.co_name in ("connect", "ensure_connection"):
            return alias
        tb = tb.tb_next
    return default or "default"


def check_database(alias: str) -> None:
    """An unknown --database is an error, as it is for Django's own commands; one that cannot be
    reached is reported with the driver's reason before any work starts."""
    from django.db import connections

    if alias not in connections:
        raise CommandError(f"unknown database {alias!r}: it is not in settings.DATABASES")
    try:
        ensure_connected(connections[alias])
    except PGViewsError as exc:
        raise CommandError(str(exc)) from exc


def add_database_argument(parser) -> None:
    parser.add_argument(
        "--database",
        default="default",
        help='Nominates a database to synchronize. Defaults to the "default" database.',
    )
