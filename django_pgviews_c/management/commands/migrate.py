import signal
from typing import Any

from django.core.management.base import CommandError
from django.core.management.commands.migrate import Command as MigrateCommand

from django_pgviews_c import aside
from django_pgviews_c.checks import sync_follows
from django_pgviews_c.db.migrations.autodetector import PGViewsAutodetector
from django_pgviews_c.exceptions import PGViewsError
from django_pgviews_c.management.base import interrupts, pgviews_errors


class Command(MigrateCommand):
    """Django's migrate, with the views that read what the migrations drop or retype set aside
    and re-created in one transaction with them (django_pgviews_c.aside)."""

    autodetector = PGViewsAutodetector
    #: Whether a sync of the views follows the checks (post_migrate): it says what W007 would.
    sync_follows = False

    def execute(self, *args: Any, **options: Any) -> Any:
        """Django's, knowing first whether a sync of the views follows the system checks (which
        Django 5.2 runs here, before handle): --plan and --check stop before post_migrate."""
        from django.conf import settings

        self.sync_follows = not (
            options.get("plan")
            or options.get("check_unapplied")
            or getattr(settings, "MATERIALIZED_VIEWS_DISABLE_SYNC_ON_MIGRATE", False)
        )
        return super().execute(*args, **options)

    def check(self, *args: Any, **kwargs: Any) -> None:
        """Django's system checks, which migrate runs before its first migration (those of the
        views read the database): SIGINT or SIGTERM there ends migrate with the one-line message
        and status 128 + the signal's number, as later, not a traceback (or, for SIGTERM, no word)."""
        from django.db import connections

        from django_pgviews_c.dberrors import wait_until_reachable

        try:
            with interrupts(), sync_follows(self.sync_follows):
                # psycopg2 connects in one call signals cannot interrupt: the checks' first
                # connect waits where they can (a server that never answers, Ctrl-C).
                for alias in kwargs.get("databases") or ():
                    if alias in connections and connections[alias].connection is None:
                        wait_until_reachable(connections[alias])
                super().check(*args, **kwargs)
        except KeyboardInterrupt as exc:
            signum = getattr(exc, "signum", signal.SIGINT)
            raise CommandError(
                f"interrupted by {signal.Signals(signum).name} during the system checks, before any "
                "migration: nothing was changed",
                returncode=128 + signum,
            ) from None

    def handle(self, *args: Any, **options: Any) -> None:
        database = options.get("database", "default")
        # A sync that fails in post_migrate ends migrate with a clear message and status 1.
        with pgviews_errors():
            run = None
            try:
                with aside.around_migrate(database, fake=bool(options.get("fake"))) as run:
                    super().handle(*args, **options)
            except PGViewsError as exc:
                # The migrations printed "OK" above the error: say whether they stay applied.
                outcome = _sync_failed(run)
                if outcome is None:
                    raise
                raise CommandError(f"{exc}\n{outcome}") from exc
            except KeyboardInterrupt as exc:
                # Status 128 + the signal's number, as every command of the app exits on one.
                signum = getattr(exc, "signum", signal.SIGINT)
                name = signal.Signals(signum).name
                if run is not None and run.in_transaction:
                    raise CommandError(
                        f"interrupted by {name}: the migrations and the views set aside for them "
                        "were rolled back together, nothing was changed",
                        returncode=128 + signum,
                    ) from None
                raise CommandError(_interrupted(run, name), returncode=128 + signum) from None


def _sync_failed(run: aside.MigrateRun | None) -> str | None:
    """What a sync of the views that failed after the migrations left, or None when it did not
    fail in the sync after them (the error then says what it left)."""
    if run is None or run.phase != "sync":
        return None
    if run.in_transaction:
        return (
            "The migrations and the views set aside for them were rolled back together with the "
            "sync: nothing was changed (showmigrations lists them as unapplied)."
        )
    return (
        "The migrations above stay applied (showmigrations lists them); the sync of the views "
        "was rolled back, so the views are as they were before migrate. Fix the cause and run "
        "migrate or sync_pgviews again."
    )


def _interrupted(run: aside.MigrateRun | None, name: str) -> str:
    """What an interrupt by signal ``name`` outside the transaction of views set aside left: the
    migrations commit one by one, the sync of the views after them is one transaction of its own."""
    if run is not None and run.phase == "sync":
        return (
            f"interrupted by {name} while syncing the views after the migrations: the migrations "
            "stay applied (showmigrations lists them); the sync was rolled back, the views are as "
            "they were before migrate; run migrate or sync_pgviews again to sync them"
        )
    if run is not None and run.phase == "synced":
        return (
            f"interrupted by {name} after the sync of the views: the migrations and the sync are "
            "committed; only the check of the views' SQL after renames did not finish"
        )
    return (
        f"interrupted by {name}: migrations that finished before stay applied (showmigrations "
        "lists them), the one running was rolled back, and the views were not synced; run migrate "
        "again"
    )
