"""What the commands share: the --database option, turning our errors into CommandError, and
SIGTERM handled as SIGINT (cancel every running statement, roll back, say so, exit non-zero)."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

from django.core.management.base import CommandError
from django.db import Error as DjangoDBError

from django_pgviews_c.dberrors import connect_failed_error, ensure_connected, is_connect_failure
from django_pgviews_c.exceptions import DatabaseError, PGViewsError

#: Seconds a cancel request may take before it is given up (psycopg's cancel_safe).
CANCEL_TIMEOUT = 5.0


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived while a command ran. A KeyboardInterrupt, so that the driver
    (psycopg 3 cancels the running statement on one) and every ``except KeyboardInterrupt``
    treat SIGTERM exactly as Ctrl-C."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal.Signals(signum).name)


def _raise(signum: int, frame: Any) -> None:
    raise Interrupted(signum)


def _cancel_running(wrappers: list[Any]) -> None:
    """Cancel the statement each connection is running. Runs on the watcher thread while the
    main thread may be blocked inside the driver (psycopg2 holds no Python frame there, so the
    signal's Python handler only runs once the statement returns)."""
    for wrapper in wrappers:
        raw = getattr(wrapper, "connection", None)
        if raw is None or getattr(raw, "closed", True):
            continue
        try:
            info = getattr(raw, "info", None)
            if info is not None:  # psycopg 3
                active = int(info.transaction_status) == 1
            else:  # psycopg2
                active = raw.get_transaction_status() == 1
            if not active:
                continue
            cancel_safe = getattr(raw, "cancel_safe", None)
            if cancel_safe is not None:
                cancel_safe(timeout=CANCEL_TIMEOUT)
            else:
                raw.cancel()
        except Exception:  # a connection closing under us: nothing left to cancel
            continue


_installed = threading.local()


@contextlib.contextmanager
def interrupts() -> Iterator[None]:
    """For the duration of the block: SIGTERM (what deploy tools and container runtimes send)
    is handled as SIGINT, and either cancels the statement every connection of this thread is
    running, from a watcher thread woken by the signal itself, then raises ``Interrupted``.
    Outside the main thread (where signals cannot be handled) it does nothing."""
    if threading.current_thread() is not threading.main_thread() or getattr(_installed, "on", False):
        yield
        return
    from django.db import connections

    # This thread's wrappers, made now: the watcher thread cannot reach thread-local ones.
    wrappers = [connections[alias] for alias in connections]
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    old_handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}

    def watch() -> None:
        while True:
            try:
                data = os.read(read_fd, 64)
            except OSError:
                return
            if not data:
                return
            if signal.SIGINT in data or signal.SIGTERM in data:
                _cancel_running(wrappers)

    watcher = threading.Thread(target=watch, name="pgviews-interrupts", daemon=True)
    old_wakeup = -1
    try:
        for signum in old_handlers:
            signal.signal(signum, _raise)
        old_wakeup = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        watcher.start()
        _installed.on = True
        yield
    finally:
        _installed.on = False
        signal.set_wakeup_fd(old_wakeup)
        for signum, handler in old_handlers.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        os.close(write_fd)  # the watcher reads end-of-file and ends
        if watcher.is_alive():
            watcher.join(CANCEL_TIMEOUT + 1)
        os.close(read_fd)


def interrupted_error(exc: KeyboardInterrupt, nothing_changed: bool) -> CommandError:
    signum = getattr(exc, "signum", signal.SIGINT)
    summary = getattr(exc, "summary", None)
    if callable(summary):  # a refresh's interrupt (RefreshInterrupted) says what it did and did not
        return CommandError(summary(), returncode=128 + signum)
    name = signal.Signals(signum).name
    text = (
        f"interrupted by {name}: the running statements were cancelled and the open transaction rolled back"
    )
    if nothing_changed:
        text += ", nothing was changed"
    return CommandError(text, returncode=128 + signum)


@contextlib.contextmanager
def pgviews_errors(
    database: str | None = None, *, nothing_changed: bool = False, handle_signals: bool = True
) -> Iterator[None]:
    """Report a PGViewsError, a database that cannot be reached, or an interrupt (SIGINT or
    SIGTERM, handled the same way for the duration of the block) as a one-paragraph error, not
    a traceback. ``nothing_changed``: the work is one transaction, so an interrupt changed
    nothing, and the message may say so. ``handle_signals=False`` leaves SIGINT and SIGTERM to
    the command's own handlers."""
    try:
        # A command with signal handling of its own (pgviews_refresher: the first signal lets the
        # running refresh finish) keeps it.
        with interrupts() if handle_signals else contextlib.nullcontext():
            yield
    except PGViewsError as exc:
        raise CommandError(_error_text(exc, nothing_changed)) from exc
    except DjangoDBError as exc:
        if not is_connect_failure(exc):
            raise
        raise CommandError(str(connect_failed_error(_alias_of(exc, database), exc))) from exc
    except KeyboardInterrupt as exc:
        raise interrupted_error(exc, nothing_changed) from None


def _error_text(exc: PGViewsError, nothing_changed: bool) -> str:
    """What a failed command says: the error, and (``nothing_changed``: the work was one
    transaction, which the server refused and rolled back) that nothing was changed, unless the
    error says so already."""
    text = str(exc)
    if nothing_changed and isinstance(exc, DatabaseError) and "othing was changed" not in text:
        text += "\nThe transaction was rolled back: nothing was changed."
    return text


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


def check_database(alias: str, *, connect: bool = False) -> None:
    """An unknown --database is an error, as it is for Django's own commands. With ``connect``,
    one that cannot be reached is reported with the driver's reason before any work starts
    (commands that connect otherwise, or not at all, say it where they connect)."""
    from django.db import connections

    if alias not in connections:
        raise CommandError(f"unknown database {alias!r}: it is not in settings.DATABASES")
    if not connect:
        return
    try:
        ensure_connected(connections[alias])
    except PGViewsError as exc:
        raise CommandError(str(exc)) from exc


def add_database_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database",
        default="default",
        help='Nominates a database to synchronize. Defaults to the "default" database.',
    )


def views_elsewhere(alias: str, *, materialized: bool = False) -> str | None:
    """When no view (``materialized``: no materialized view) belongs to database ``alias`` but
    the routers send some to other databases: a sentence naming them and the --database to
    give, else None. A command run on the wrong database then says so instead of reporting an
    empty success (a project whose router sends its views to a database of their own)."""
    from django.db import connections

    from django_pgviews_c.declarations import view_models
    from django_pgviews_c.view import MaterializedView

    models = [m for m in view_models() if not materialized or issubclass(m, MaterializedView)]
    if not models or any(m.get_view_connection(alias, restricted_mode=True) is not None for m in models):
        return None
    where: dict[str, list[str]] = {}
    for other in connections:
        for model in models:
            if other != alias and model.get_view_connection(other, restricted_mode=True) is not None:
                where.setdefault(other, []).append(model._meta.label)
    if not where:
        return None
    kind = "materialized views" if materialized else "views"
    places = "; ".join(f"{', '.join(labels)} on {other!r}" for other, labels in where.items())
    return (
        f"no {kind} belong to database {alias!r}: the routers allow {places}. "
        f"Run with --database {next(iter(where))}."
    )
