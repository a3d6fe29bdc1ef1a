from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from django_pgviews_c import history
from django_pgviews_c.freshstatus import rows_from_history, status_json, status_line, status_report
from django_pgviews_c.management.base import (
    add_database_argument,
    check_database,
    pgviews_errors,
    views_elsewhere,
)
from django_pgviews_c.status import UNBUILDABLE_STATE, ViewState, view_status
from django_pgviews_c.wording import plural


class Command(BaseCommand):
    help = (
        "Show each view's state in the database: in sync, missing, changed in code, changed by "
        "hand (drifted), indexes, unpopulated, stale (reads something that changed), unmanaged "
        "or unstamped (not created by this app; unstamped ones equal their declaration and are "
        "adopted by the next sync), pending rebuild (its new version waits beside it: "
        "refresh_pgviews --pending), columns (a field reads a column the view lacks), orphaned "
        "(ours, but declared by no model: sync_pgviews --prune), unbuildable (works, but its "
        "declared SQL no longer builds: a column or table renamed under it), with sizes. "
        "Changes nothing."
    )
    # Django's system checks cover every model of the project and cost as much as the start-up;
    # a view command needs none of them (the views' declarations are checked by the C graph
    # before anything reaches the database). `manage.py check` runs them all.
    requires_system_checks = []

    def add_arguments(self, parser: ArgumentParser) -> None:
        add_database_argument(parser)
        parser.add_argument(
            "--check",
            action="store_true",
            help="Exit with status 1 when any view is not in sync, or its refresh_interval is "
            "unusable (for CI and deploy checks).",
        )
        parser.add_argument(
            "--json", action="store_true", help="Print the same as JSON, for dashboards and scripts."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        check_database(options["database"])
        alias = options["database"]
        # The history is read more than once: a warning about it (not migrated there) once.
        with pgviews_errors(), history.warn_once():
            # Connected first, where an interrupt reaches a connect that waits (psycopg2's does not).
            check_database(alias, connect=True)
            rows = view_status(alias, check_builds=True)
            fresh = status_report(alias)
            rows_from_history(rows, fresh)
            # Not migrated there: migrate (not sync_pgviews) creates the table and syncs the views.
            unmigrated = options["check"] and history.history_missing(alias)
        # A view whose refresh_interval is unusable is shown as the others, and fails --check.
        misconfigured = [item["misconfigured"] for item in fresh.values() if item["misconfigured"]]
        if options["json"]:
            self.stdout.write(status_json(rows, fresh))
            out_of_sync = [r for r in rows if r.state != "in sync"]
            if options["check"] and (out_of_sync or misconfigured):
                raise CommandError(_check_failure(out_of_sync, alias, unmigrated, misconfigured))
            return
        width = max([len(r.label) for r in rows] + [4])
        self.stdout.write(f"{'view':<{width}}  {'kind':<4}  {'state':<15}  {'rows':>10}  {'size':>9}  detail")
        for r in rows:
            self.stdout.write(
                f"{r.label:<{width}}  {r.kind:<4}  {r.state:<15}  {_num(r.rows):>10}  {_size(r.size):>9}  "
                f"{r.detail}"
            )
            if r.label in fresh:
                self.stdout.write(f"{'':<{width}}  {status_line(fresh[r.label])}")
        out_of_sync = [r for r in rows if r.state != "in sync"]
        if options["verbosity"] >= 1:
            self.stdout.write(f"{plural(len(rows), 'view', 'views')}, {len(out_of_sync)} not in sync")
        elsewhere = None if rows else views_elsewhere(alias)
        if elsewhere:
            self.stderr.write(f"warning: {elsewhere}")
        if options["check"] and (out_of_sync or misconfigured):
            raise CommandError(_check_failure(out_of_sync, alias, unmigrated, misconfigured))


def _check_failure(
    out_of_sync: list[ViewState], alias: str, unmigrated: bool, misconfigured: list[str]
) -> str:
    """What --check says: each view not in sync by name, with what brings it in sync. A field
    that reads a column the view lacks is a mistake in the code, which sync_pgviews leaves as
    it is (it has nothing to change in the database). On a database where the app's own
    migrations are not applied (``unmigrated``: its history table is missing), migrate is what
    to run: sync_pgviews would not create the table, migrate does and syncs the views. Then the
    views whose refresh_interval is unusable (``misconfigured``: why, naming each)."""
    columns = [r.label for r in out_of_sync if r.state == "columns"]
    orphans = [r.label for r in out_of_sync if r.state == "orphaned"]
    pending = [r.label for r in out_of_sync if r.state == "pending rebuild"]
    refused = [r.label for r in out_of_sync if r.state == UNBUILDABLE_STATE]
    named = ("columns", "orphaned", "pending rebuild", UNBUILDABLE_STATE)
    others = [r.label for r in out_of_sync if r.state not in named]
    parts = []
    if others and unmigrated:
        parts.append(
            f"{plural(len(others), 'view is', 'views are')} not in sync and "
            f"{history.missing_history(alias, stale=False)}: "
            f"run {history.migrate_command(alias)}, which creates the table and syncs the views "
            f"({', '.join(others)})"
        )
    elif others:
        parts.append(
            f"{plural(len(others), 'view is', 'views are')} not in sync: "
            f"run sync_pgviews ({', '.join(others)})"
        )
    if orphans:
        parts.append(
            f"{plural(len(orphans), 'orphaned object is', 'orphaned objects are')} not in sync (no view "
            f"declares {'it' if len(orphans) == 1 else 'them'}): run "
            f"sync_pgviews --prune ({', '.join(orphans)})"
        )
    if pending:
        parts.append(
            f"{plural(len(pending), 'view waits for its', 'views wait for their')} deferred rebuild: "
            f"run refresh_pgviews --pending ({', '.join(pending)})"
        )
    if columns:
        parts.append(
            f"{plural(len(columns), 'view is not in sync with its', 'views are not in sync with their')} "
            "fields (a field reads a column the view's SQL does not produce): add the column to the "
            "SQL or fix the field; "
            f"sync_pgviews does not change this ({', '.join(columns)})"
        )
    if refused:
        its, it = ("its", "it") if len(refused) == 1 else ("their", "them")
        parts.append(
            f"{plural(len(refused), 'view works', 'views work')} in the database but {its} declared SQL "
            f"no longer builds (a column or table renamed under {it}): update {its} sql, or a fresh "
            f"database and {its} next rebuild fail; sync_pgviews does not change this "
            f"({', '.join(refused)})"
        )
    if misconfigured:
        parts.append(
            f"{plural(len(misconfigured), 'view is', 'views are')} misconfigured: {'; '.join(misconfigured)}"
        )
    return "; ".join(parts)


def _num(value: int | None) -> str:
    return "-" if value is None or value < 0 else str(value)


def _size(size: int | None) -> str:
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1024:
            return f"{value:.0f} {unit}"
        value /= 1024
    return f"{value:.0f} TB"
