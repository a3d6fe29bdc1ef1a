"""Model.refresh() in one call of ``django_pgviews_c_refresh`` (the app's migration 0007), when
the connection is in autocommit outside any transaction: one statement that guards the lock
wait (lock_timeout, as refreshlocks.guarded_refresh's first try), captures the sources, runs the
REFRESH, puts lock_timeout back and writes the record; with PGVIEWS_HISTORY off, the same call
without capture and record, so that what recording adds is measured against the best unrecorded
path.

The call is one implicit transaction: any error rolls all of it back. Which part failed is read
from the error's CONTEXT, which names the nested function it came from:

- the REFRESH: recorded as a failure (history.record, as the ordinary path records one) and
  raised; a long failing refresh is never run twice;
- the capture or the record: nothing was refreshed, so the view is refreshed the ordinary way
  (history.recording around view.run_refresh, which isolates a failure to record), and why is
  logged;
- a lock not granted in time (55P03), a concurrent refresh of a view never populated, or a
  transaction that is not READ COMMITTED (0A000): the ordinary path (its retries, its plain
  refresh), as the one round trip of before does;
- the function missing (42883: the database not migrated to 0007, or migrated back): that
  connection uses the one round trip of 0004's functions from then on (history.refresh_recorded)."""

from __future__ import annotations

__all__ = ["refresh_single"]

import logging
import time
from typing import Any

from django.db import Error as DjangoDBError
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone

from django_pgviews_c import _core
from django_pgviews_c import view as pg
from django_pgviews_c.dberrors import diag, error_context

logger = logging.getLogger("django_pgviews_c.history")

_CALL = _core.query_sql("history_refresh_call")
#: The nested functions an error's CONTEXT may name, and what failed then.
_PARTS = (
    ("django_pgviews_c_refresh_capture(", "capture its sources"),
    ("django_pgviews_c_refresh_record(", "record it"),
)
_ORDINARY_PATH = ("55P03", "0A000")


def _params(model: type[pg.View], concurrent: bool, record: bool, plain_reason: str) -> list[Any]:
    from django_pgviews_c.freshness import is_exact
    from django_pgviews_c.history import DEFAULT_COUNT_LIMIT, DEFAULT_KEEP, setting
    from django_pgviews_c.historyfn import PRUNE_SLACK
    from django_pgviews_c.refreshlocks import _lock_settings

    db_table = model._meta.db_table
    return [
        _core.qualified_name(*_core.split_table(db_table)),
        concurrent,
        _lock_settings()[1],
        record,
        record and is_exact(model),
        model._meta.label,
        db_table,
        timezone.now(),
        int(setting("PGVIEWS_HISTORY_COUNT_ROWS_UP_TO", DEFAULT_COUNT_LIMIT)),
        plain_reason,
        max(1, int(setting("PGVIEWS_HISTORY_KEEP", DEFAULT_KEEP))),
        PRUNE_SLACK,
    ]


def refresh_single(
    connection: BaseDatabaseWrapper, model: type[pg.View], *, concurrent: bool, asked_concurrent: bool
) -> str:
    """Refresh ``model`` in one call. Returns "done"; "ordinary" when the caller must refresh
    the ordinary way (``recording`` around ``run_refresh``); "script" when the function cannot
    be used here (inside a transaction, or missing: history.refresh_recorded, then the ordinary
    way). A failed REFRESH is recorded (with the history on) and raised."""
    from django_pgviews_c import history
    from django_pgviews_c.historyfn import forget_functions, missing_function, uses_functions

    if connection.in_atomic_block:
        return "script"
    connection.ensure_connection()
    if not connection.get_autocommit() or not uses_functions(connection, "single"):
        return "script"
    record = bool(history.setting("PGVIEWS_HISTORY", True))
    plain_reason = "no concurrent_index" if asked_concurrent and not concurrent else ""
    params = _params(model, concurrent, record, plain_reason)
    t0 = time.perf_counter()
    try:
        history._execute(connection, _CALL, params)
        return "done"
    except DjangoDBError as exc:
        if missing_function(exc, "single"):
            forget_functions(connection, "single")
            return "script"
        if diag(exc)["sqlstate"] in _ORDINARY_PATH:
            return "ordinary"
        context = error_context(exc)
        failed = next((what for name, what in _PARTS if name in context), None)
        if failed is not None:
            logger.warning(
                "the refresh of %s in one call could not %s (%s): %s%s; refreshing it the ordinary way",
                model._meta.label, failed, history.TABLE, diag(exc)["message"],
                history._hint(exc, connection),
            )  # fmt: skip
            return "ordinary"
        if record:
            history.record(connection, model, started_at=params[7], duration=time.perf_counter() - t0,
                           concurrent=concurrent, plain_reason=plain_reason,
                           error=history._error(exc))  # fmt: skip
        raise
    except BaseException:
        history._run(connection, "ROLLBACK")  # Ctrl-C: no transaction may stay open
        raise
