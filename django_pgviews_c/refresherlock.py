"""The lock that lets one refresher work while the others stand by (pgviews_refresher and the
Celery task refresh_due).

It is a transaction-level advisory lock held in a transaction left open, on a connection of its
own: not a session-level lock on Django's connection. Behind PgBouncer's transaction pooling a
session-level lock stays on whichever server connection ran it: the next statement may go to
another one, a second refresher lent that same server connection takes the lock again
(advisory locks are re-entrant within a session) and works too, and a refresher killed outright
leaves the lock held on a pooled server connection for good. An open transaction keeps its
server connection bound to its client in every pooling mode, and ends (lock released) when the
client goes away: PostgreSQL, or PgBouncer, closes a server connection whose client vanished in
the middle of a transaction. The transaction only takes the lock: it writes nothing and holds no
snapshot between statements, so it holds back no vacuum.
"""

from __future__ import annotations

import contextlib

from django.db import Error as DjangoDBError
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper

from django_pgviews_c import _core

__all__ = ["REFRESHER_LOCK_KEY", "RefresherLock"]

#: Key of the working refresher's advisory lock (advisory locks are per database).
REFRESHER_LOCK_KEY = 0x7067766372667368  # "pgvcrfsh"

# The open transaction must outlive idle_in_transaction_session_timeout, should the server or
# the role set one: the query lifts it for this transaction only.
_TAKE_SQL = _core.query_sql("refresher_lock_take")


class RefresherLock:
    """The refresher lock of one database: :meth:`take` tries it, :meth:`held` says whether the
    connection holding it is still there, :meth:`release` lets it go."""

    def __init__(self, alias: str) -> None:
        self.alias = alias
        self.connection: BaseDatabaseWrapper | None = None

    def take(self) -> bool:
        """Try the lock, without waiting; True when this process now holds it. Raises Django's
        database errors (no connection, say)."""
        if self.connection is not None:
            return True
        connection = connections.create_connection(self.alias)  # not the thread's shared one
        try:
            connection.set_autocommit(False)  # the transaction stays open while the lock is held
            with connection.cursor() as cursor:
                cursor.execute(_TAKE_SQL, [REFRESHER_LOCK_KEY])
                got = bool(cursor.fetchone()[1])
        except BaseException:
            connection.close()
            raise
        if not got:
            connection.close()  # the transaction ends with it
            return False
        self.connection = connection
        return True

    def held(self) -> bool:
        """Whether the lock is still ours: the transaction that holds it answers. False once its
        connection was lost (the lock went with it)."""
        if self.connection is None:
            return False
        if self.connection.is_usable():  # a statement in the open transaction
            return True
        self.release()
        return False

    def release(self) -> None:
        """Let the lock go: the transaction ends with its connection."""
        connection, self.connection = self.connection, None
        if connection is not None:
            with contextlib.suppress(DjangoDBError):  # a connection already lost holds nothing
                connection.close()
