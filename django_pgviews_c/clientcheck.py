"""The refresher's sessions check that their client is still there while a statement runs.

PostgreSQL notices a client that went away (a refresher killed with SIGKILL, its machine gone)
only when it next reads from or writes to the socket: a REFRESH that runs for an hour keeps
running, and keeps the refresher's advisory lock, for that hour, so no standby can take over.
With ``client_connection_check_interval`` (PostgreSQL 14+) the server checks the socket every
so often while a statement runs and ends the session of a client that is gone: its transaction
rolls back and its locks, the advisory lock included, are released. ``pgviews_refresher`` and
the Celery task set it on Django's connection and, through :func:`loop_session`, on the
connections of the parallel loop (``--jobs N``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

from django.db.backends.base.base import BaseDatabaseWrapper

from django_pgviews_c import _core
from django_pgviews_c.declarations import setting

__all__ = ["DEFAULT_CHECK_MS", "checking_client", "loop_session"]

#: PGVIEWS_REFRESHER_CLIENT_CHECK_MS's default: how often (ms) the server checks, while a
#: refresher's statement runs, that the refresher is still there. 0 turns the check off.
DEFAULT_CHECK_MS = 1000

_CHECK_SQL = _core.query_sql("client_check")
_MIN_VERSION = 140000  # client_connection_check_interval came with PostgreSQL 14

_loop_settings: ContextVar[tuple[tuple[str, str], ...]] = ContextVar("pgviews_c_client_check", default=())


def check_ms() -> int:
    """The interval the refresher asks for (PGVIEWS_REFRESHER_CLIENT_CHECK_MS); 0: none."""
    return max(int(setting("PGVIEWS_REFRESHER_CLIENT_CHECK_MS", DEFAULT_CHECK_MS)), 0)


def set_client_check(connection: BaseDatabaseWrapper) -> None:
    """Set the check on ``connection``'s session (again after each reconnect: the caller runs it
    before it takes the refresher's lock). Nothing on a server before 14, or with the setting 0."""
    ms = check_ms()
    if ms:
        with connection.cursor() as cursor:
            cursor.execute(_CHECK_SQL, [str(ms)])


@contextlib.contextmanager
def checking_client(connection: BaseDatabaseWrapper) -> Iterator[None]:
    """Within the block, the parallel loop's connections to ``connection``'s database get the
    check too (:func:`loop_session`)."""
    ms = check_ms()
    connection.ensure_connection()
    version = int(getattr(connection, "pg_version", 0) or 0)
    pairs = (("client_connection_check_interval", str(ms)),) if ms and version >= _MIN_VERSION else ()
    token = _loop_settings.set(pairs)
    try:
        yield
    finally:
        _loop_settings.reset(token)


def loop_session() -> dict[str, str]:
    """The settings the loop's connections get besides Django's own, inside checking_client()."""
    return dict(_loop_settings.get())
