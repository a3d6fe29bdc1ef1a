"""manage.py pgviews_refresher: refresh the due materialized views of one database, in a loop,
until SIGTERM or SIGINT. Any number may run: a per-database advisory lock lets one work and
keeps the others on standby, ready to take over."""

from __future__ import annotations

import signal
import threading
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import Error as DjangoDBError
from django.db import connections
from django.utils import timezone

from django_pgviews_c.clientcheck import checking_client, set_client_check
from django_pgviews_c.freshness import refresh_pass
from django_pgviews_c.history import (
    history_missing,
    migrate_command,
    missing_failures,
    missing_history,
    setting,
    warn_once,
)
from django_pgviews_c.management.base import (
    Interrupted,
    add_database_argument,
    check_database,
    pgviews_errors,
)
from django_pgviews_c.refresherlock import RefresherLock

DEFAULT_POLL = 60.0


class Command(BaseCommand):
    help = (
        "Refresh due materialized views (stale, and refresh_interval passed) until stopped by "
        "SIGTERM/SIGINT. Several may run on any machines: one works, the others stand by."
    )
    requires_system_checks = []
    #: The server connection the history table was last seen on, and missing_failures then.
    history_seen: tuple[Any, int] | None = None
    #: Whether the missing history table was said (the refresher then waits for migrate).
    unmigrated_said = False
    #: Whether a pass runs (a signal then lets its running refresh end), else the loop waits.
    passing = False
    #: The views the last pass skipped because they do not exist, said when first seen so.
    missing_said: set[str] = set()

    def add_arguments(self, parser: ArgumentParser) -> None:
        add_database_argument(parser)
        parser.add_argument("-j", "--jobs", type=int, default=1, help="Refresh up to N views at once.")
        parser.add_argument(
            "-C", "--concurrently", action="store_true", help="Refresh concurrently where a view can."
        )
        parser.add_argument(
            "--poll",
            type=float,
            default=None,
            help="Seconds between two checks for stale views and, on standby, for the lock "
            f"(setting PGVIEWS_REFRESHER_POLL, default {DEFAULT_POLL:g}).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        alias = options["database"]
        check_database(alias)
        if options["jobs"] < 1:
            raise CommandError("--jobs must be at least 1")
        poll = options["poll"] if options["poll"] is not None else float(
            setting("PGVIEWS_REFRESHER_POLL", DEFAULT_POLL)
        )  # fmt: skip
        if poll <= 0:
            raise CommandError("--poll must be more than 0 seconds")
        stop = threading.Event()
        signals = {"count": 0}

        def on_signal(signum: int, frame: Any) -> None:
            signals["count"] += 1
            if signals["count"] == 1:
                stop.set()
                what = "after the running refresh" if self.passing else "(no refresh was running)"
                self.stdout.write(f"{signal.Signals(signum).name}: stopping {what}")
                self.stdout.flush()
                return
            raise Interrupted(signum)  # a second signal cancels the running refresh

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        self.lock = RefresherLock(alias)
        try:
            # warn_once: a history not migrated on the database is said once, not every pass.
            with pgviews_errors(handle_signals=False), checking_client(connections[alias]), warn_once():
                self.loop(alias, poll, stop, options)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            self.lock.release()
            connections[alias].close()
        self.stdout.write("stopped")

    def say(self, text: str, level: int = 1) -> None:
        if self.verbosity >= level:
            self.stdout.write(f"{timezone.now():%Y-%m-%d %H:%M:%S} {text}")
            self.stdout.flush()

    def say_missing(self, skipped: dict[str, str]) -> None:
        """Name, once until it exists again, each view a pass skipped because it does not exist
        (dropped, say, with a table it read), or because its refresh_interval is unusable
        (misconfigured, until it is fixed): it would otherwise never be refreshed unsaid."""
        missing = {
            label: why
            for label, why in skipped.items()
            if why.startswith(("does not exist", "misconfigured"))
        }
        for label, why in missing.items():
            if label not in self.missing_said:
                self.say(f"skipped   {label}: {why}")
        self.missing_said = set(missing)

    def migrated(self, alias: str) -> bool:
        """Whether the history table is on ``alias``. Without it no refresh is recorded, every
        view counts as stale and each would be refreshed every pass: the refresher waits for
        migrate instead, saying so once. Once seen, the table is not asked for again on the
        same server connection until a read or write of the history fails on its absence."""
        connection = connections[alias]
        if (
            self.history_seen is not None
            and self.history_seen[0] is connection.connection
            and self.history_seen[1] == missing_failures(alias)
        ):
            return True
        self.history_seen = None
        if not history_missing(alias):
            if self.unmigrated_said:
                self.say(f"the refresh history table is there now on database {alias!r}: refreshing")
            self.unmigrated_said = False
            if connection.connection is not None:  # asked on it (else the question failed)
                self.history_seen = (connection.connection, missing_failures(alias))
            return True
        if not self.unmigrated_said:
            self.say(
                f"waiting: {missing_history(alias)}. Run {migrate_command(alias)}: refreshing starts "
                "once it has."
            )
            self.unmigrated_said = True
        return False

    def one_pass(self, alias: str, stop: threading.Event, options: dict[str, Any]) -> Any:
        """One --due pass; ``passing`` says while it runs."""
        self.passing = True
        try:
            return refresh_pass(
                alias,
                due=True,
                jobs=options["jobs"],
                concurrently=options["concurrently"],
                progress=self.stdout.write if self.verbosity >= 2 else None,
                stop=stop,
            )
        finally:
            self.passing = False

    def loop(self, alias: str, poll: float, stop: threading.Event, options: dict[str, Any]) -> None:
        self.verbosity = options["verbosity"]
        connection = connections[alias]
        lock = self.lock
        holding = False
        standby_said = False
        self.unmigrated_said = False
        self.history_seen = None
        self.missing_said = set()
        while not stop.is_set():
            try:
                if holding and not lock.held():
                    self.say(f"lost the refresher lock of database {alias!r} (its connection closed)")
                    holding = False
                if not holding:
                    # Killed mid-refresh, this session must end at once, not when its statement
                    # ends: the server checks that we are still there.
                    set_client_check(connection)
                    holding = lock.take()
                    if not holding:
                        if not standby_said:
                            self.say(f"standby: another refresher works on database {alias!r}")
                            standby_said = True
                        stop.wait(poll)
                        continue
                    self.say(f"active: refreshing due views of database {alias!r}")
                    standby_said = False
                if not self.migrated(alias):
                    stop.wait(poll)
                    continue
                result = self.one_pass(alias, stop, options)
            except DjangoDBError as exc:
                # A lost connection loses the lock too: reconnect and try again after a poll.
                self.say(f"database error, retrying in {poll:g}s: {str(exc).strip().splitlines()[0]}")
                connection.close()
                lock.release()
                holding = False
                self.history_seen = None  # asked again on the new connection
                stop.wait(poll)
                continue
            for label in result.refreshed:
                self.say(f"refreshed {label}")
            for label, why in result.failed.items():
                self.say(f"failed    {label}: {why}")
            self.say_missing(result.skipped)
            wait = poll
            if result.next_due is not None:
                wait = min(poll, max((result.next_due - timezone.now()).total_seconds(), 0.0))
            if result.refreshed or result.failed:
                self.say(f"pass done; next check in {wait:.1f}s", 2)
            stop.wait(max(wait, 0.05))
