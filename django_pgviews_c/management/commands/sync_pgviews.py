from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from django_pgviews_c.exact import TRIGGER
from django_pgviews_c.management.base import (
    add_database_argument,
    check_database,
    pgviews_errors,
    views_elsewhere,
)
from django_pgviews_c.sync import SyncResult, sync_pgviews
from django_pgviews_c.wording import plural


class Command(BaseCommand):
    help = "Create/update Postgres views for all installed apps."
    # Django's system checks cover every model of the project and cost as much as the start-up;
    # a view command needs none of them (the views' declarations are checked by the C graph
    # before anything reaches the database). `manage.py check` runs them all.
    requires_system_checks = []

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--no-update",
            action="store_false",
            dest="update",
            default=True,
            help="Don't update existing views, only create new ones.",
        )
        parser.add_argument(
            "--force",
            action="store_true",
            dest="force",
            default=False,
            help="Force replacement of pre-existing views where breaking changes have been made "
            "to the schema.",
        )
        parser.add_argument(
            "-E",
            "--enable-materialized-views-check-sql-changed",
            action="store_true",
            dest="materialized_views_check_sql_changed",
            default=None,
            help="Re-create a materialized view only when its definition changed (the default, "
            "from MATERIALIZED_VIEWS_CHECK_SQL_CHANGED).",
        )
        parser.add_argument(
            "-D",
            "--disable-materialized-views-check-sql-changed",
            action="store_false",
            dest="materialized_views_check_sql_changed",
            default=None,
            help="Re-create every materialized view, changed or not.",
        )
        parser.add_argument(
            "--restore-dependants",
            action="store_true",
            default=None,
            help="Views this app does not manage that read a view which must be re-created are "
            "saved and restored (with grants, owner, comment, indexes) instead of refusing the sync "
            "(setting PGVIEWS_RESTORE_DEPENDANTS).",
        )
        parser.add_argument(
            "--prune",
            action="store_true",
            help="Drop views that carry this app's fingerprint but that no view model declares any "
            "more (a renamed db_table), dependants first; views this app does not manage that read "
            "them make the sync refuse. Never done without this flag: two projects may share a "
            "database.",
        )
        parser.add_argument(
            "--plan",
            action="store_true",
            help="Rehearse the sync in a transaction that is always rolled back (materialized views "
            "built WITH NO DATA) and print, for each view that changes, what, why, the lock "
            "readers meet and the data to rebuild (-v 2: each step and its SQL); exit 1 when the "
            "sync would fail. Changes nothing.",
        )
        add_database_argument(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        check_database(options["database"])
        with pgviews_errors(options["database"], nothing_changed=True):  # Ctrl-C while connecting too
            check_database(options["database"], connect=True)
        check = options["materialized_views_check_sql_changed"]
        if check is None:
            check = getattr(settings, "MATERIALIZED_VIEWS_CHECK_SQL_CHANGED", True)
        verbosity = options["verbosity"]
        # One transaction: an interrupt (SIGINT, SIGTERM) rolls all of it back.
        with pgviews_errors(options["database"], nothing_changed=True):
            results = sync_pgviews(
                options["database"],
                force=options["force"],
                update=options["update"],
                check_sql_changed=check,
                restore_dependants=options["restore_dependants"],
                prune=options["prune"],
                rehearse=options["plan"],
                verbosity=verbosity,
                progress=self.stdout.write,
            )
        failed = []
        for result in results:
            if options["plan"]:
                self._print_plan(result, verbosity)
                if result.error is not None:
                    failed.append(result.error)
                continue
            if verbosity >= 2:
                # The sync itself said at -v 1 what it re-created and re-populated.
                said = {label for label in result.changed if result.statuses[label] != "CREATED"}
                for label, status in result.statuses.items():
                    if label in said:
                        continue
                    reason = result.reasons.get(label)
                    self.stdout.write(f"  {status:<8} {label}" + (f"  ({reason})" if reason else ""))
            if verbosity >= 1:
                changed = result.changed
                self.stdout.write(
                    f"{plural(len(result.statuses), 'view')} on {result.using!r}: {len(changed)} changed, "
                    f"{len(result.statuses) - len(changed)} unchanged ({result.seconds:.2f}s)"
                )
        if not results:
            if verbosity >= 1:
                self.stdout.write(f"no views belong to database {options['database']!r}")
            elsewhere = views_elsewhere(options["database"])
            if elsewhere:
                self.stderr.write(f"warning: {elsewhere}")
        if failed:
            # The rehearsal failed as the sync would: same error, same exit status.
            raise CommandError("\n".join(str(e) for e in failed))

    def _print_plan(self, result: SyncResult, verbosity: int) -> None:
        """One line per view that changes (what, why, the lock readers will meet, the data to
        rebuild), the internal steps at -v 2, one line per trigger of the exact mode created or
        dropped, a summary line."""
        triggers = len(result.exact.created) + len(result.exact.dropped)
        if not result.actions:
            if result.error is not None:
                self.stdout.write(f"{result.using}: the sync would fail before changing anything")
            elif not triggers:
                self.stdout.write(f"{result.using}: nothing to do")
            else:
                self._print_triggers(result)
                self.stdout.write(
                    f"{result.using}: no view changes, {_triggers(triggers)} (read only: nothing was run)"
                )
            return
        changed = result.changed
        rebuilt_bytes = self._print_changed(result)
        self._print_others(result)
        if verbosity >= 2:
            self._print_steps(result)
        self._print_triggers(result)
        self._print_unpinned(result)
        outcome = (
            "rehearsed in a transaction that was rolled back: the sync would succeed"
            if result.error is None
            else "rehearsed in a transaction that was rolled back: the sync would FAIL, as follows"
        )
        if result.error is None and result.unpinned:
            outcome += (
                " unless a function named above uses a name it does not qualify (the rehearsal "
                "builds WITH NO DATA and never runs it)"
            )
        self.stdout.write(
            f"{result.using}: {len(changed)} of {plural(len(result.statuses), 'view')} "
            f"{'changes' if len(changed) == 1 else 'change'}, {plural(len(result.actions), 'action')}, "
            f"{_size(rebuilt_bytes)} of materialized views to rebuild"
            + (f", {_triggers(triggers)}" if triggers else "")
            + f"; {outcome}"
        )

    def _print_changed(self, result: SyncResult) -> int:
        """One line per view that changes; returns the bytes of materialized views rebuilt."""
        labels = {label: i for i, label in enumerate(result.statuses)}
        rebuilt_bytes = 0
        for label in result.changed:
            mine = [a for a in result.actions if a.decl == labels[label]]
            # The lock readers meet is the one held until commit: phase 1's, else phase 0's.
            held = [a for a in mine if a.phase == 1] or mine
            lock = held[0].lock if held else "none"
            size = result.sizes.get(label)
            line = f"  {result.statuses[label]:<8} {label} ({result.names[label]})"
            line += f"  {result.reasons.get(label) or 'new'};  lock: {lock}"
            if size and size[1] == "m" and any(a.op in _DATA_OPS for a in mine):
                rebuilt_bytes += size[3]
                line += f";  rebuilds {_size(size[3])} ({size[2]} rows)"
            self.stdout.write(line)
        return rebuilt_bytes

    def _print_others(self, result: SyncResult) -> None:
        """The views no model declares that the sync drops: restored (the user's, reading a
        re-created one) or pruned."""
        restored = {a.target for a in result.actions if a.op == "restore"}
        for action in result.actions:
            if action.op == "drop" and action.decl < 0 and action.target in restored:
                # A view of the user's that reads a re-created one: saved and restored.
                self.stdout.write(
                    f"  RESTORED {action.target}  (not managed by django-pgviews-c: dropped and "
                    f"re-created with its grants, owner and comment);  lock: {action.lock}"
                )
            elif action.op == "drop" and action.decl < 0:
                self.stdout.write(f"  PRUNED   {action.target}  (no model declares it);  lock: {action.lock}")

    def _print_steps(self, result: SyncResult) -> None:
        """-v 2: the internal steps of each phase, with their lock and SQL."""
        for phase, title in ((0, "built beside, blocking nobody"), (1, "short transaction end")):
            actions = [a for a in result.actions if a.phase == phase]
            if not actions:
                continue
            self.stdout.write(f" phase {phase} ({title}; as rehearsed, materialized views WITH NO DATA):")
            for action in actions:
                self.stdout.write(f"  {action.op:<13} {action.target}\n{'':16}lock: {action.lock}")
                self.stdout.write("\n".join(f"{'':16}{line}" for line in action.sql.splitlines()))

    def _print_unpinned(self, result: SyncResult) -> None:
        """PostgreSQL 17+: the functions without a search_path of their own that a materialized
        view the sync builds calls, which the rehearsal never ran (check W004's words)."""
        for label, calls in result.unpinned.items():
            for function, via in calls:
                through = f" (through the view {via})" if via else ""
                self.stdout.write(
                    f"  warning: {label} calls {function}{through}, which has no search_path of "
                    f"its own: PostgreSQL 17+ runs CREATE and REFRESH MATERIALIZED VIEW with "
                    f"search_path = pg_catalog, pg_temp, so a name its body does not qualify is "
                    f"not found and the sync fails. ALTER FUNCTION {function} SET search_path = "
                    f"<the schemas its body uses>, or qualify every name in its body."
                )

    def _print_triggers(self, result: SyncResult) -> None:
        """The exact mode's triggers the sync would create and drop (exact.py), with the lock
        each takes on its table until commit."""
        for table in result.exact.created:
            self.stdout.write(
                f"  TRIGGER  {TRIGGER} created on {table}  (exact staleness: a view reads it);  "
                f"lock: SHARE ROW EXCLUSIVE on {table} until commit: its writers wait"
            )
        for table in result.exact.dropped:
            self.stdout.write(
                f"  TRIGGER  {TRIGGER} dropped from {table}  (no exact view reads it any more; its "
                f"counter goes too);  lock: ACCESS EXCLUSIVE on {table} until commit: readers and "
                f"writers wait"
            )


# Actions that re-compute a materialized view's data.
_DATA_OPS = {"refresh", "populate", "create", "build", "swap"}


def _size(value: int) -> str:
    amount = float(value)
    for unit in ("B", "kB", "MB", "GB"):
        if amount < 1024:
            return f"{amount:.0f} {unit}"
        amount /= 1024
    return f"{amount:.0f} TB"


def _triggers(count: int) -> str:
    """How many triggers of the exact mode the sync changes."""
    return plural(count, "trigger of the exact mode changes", "triggers of the exact mode change")
