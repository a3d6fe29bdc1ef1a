"""Celery tasks (importable only where Celery is installed: ``pip install django-pgviews-c[celery]``).

A beat entry that refreshes the due views every minute::

    CELERY_BEAT_SCHEDULE = {
        "pgviews-refresh-due": {
            "task": "django_pgviews_c.tasks.refresh_due",
            "schedule": 60.0,
        },
    }

Several workers may run it at once: the refresher's advisory lock lets one work and the others
return at once with ``{"standby": True}``. On a database where the app's migrations are not
applied (no refresh history: nothing could be recorded, so every view would stay stale and be
refreshed on every beat) it refreshes nothing and returns ``{"waiting": "<why>"}``, logging it,
until ``migrate`` has run there.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task

logger = logging.getLogger("django_pgviews_c.tasks")

__all__ = ["refresh_due"]


@shared_task(name="django_pgviews_c.tasks.refresh_due")
def refresh_due(
    database: str = "default", jobs: int = 1, concurrently: bool = False, stale: bool = False
) -> dict[str, Any]:
    """One pass over the due materialized views of ``database`` (``stale``: every stale one), as
    ``refresh_pgviews --due`` does. Returns what it refreshed, skipped and what failed."""
    from django.db import connections

    from django_pgviews_c.clientcheck import checking_client, set_client_check
    from django_pgviews_c.freshness import refresh_pass
    from django_pgviews_c.history import history_missing, migrate_command, missing_history
    from django_pgviews_c.refresherlock import RefresherLock

    idle = {
        "database": database,
        "standby": False,
        "waiting": None,
        "refreshed": [],
        "skipped": {},
        "failed": {},
    }
    if history_missing(database):
        idle["waiting"] = (
            f"{missing_history(database)}. Nothing was refreshed: run {migrate_command(database)}."
        )
        logger.warning("refresh_due: %s", idle["waiting"])
        return idle
    connection = connections[database]
    set_client_check(connection)  # a worker killed mid-refresh ends its statement at once
    lock = RefresherLock(database)  # held in a transaction of its own: see refresherlock.py
    if not lock.take():
        return {**idle, "standby": True}
    try:
        with checking_client(connection):
            result = refresh_pass(database, due=not stale, jobs=jobs, concurrently=concurrently)
    finally:
        lock.release()
    return {
        "database": database,
        "standby": False,
        "waiting": None,
        "refreshed": result.refreshed,
        "skipped": result.skipped,
        "failed": result.failed,
        "next_due": result.next_due.isoformat() if result.next_due else None,
        "seconds": round(result.wall, 3),
    }
