"""What a sync says: progress lines as it goes (at the verbosity asked for), a line for each
materialized view whose data took a while to compute, and after the sync the -v 1 report of
what was re-created and re-populated, with times."""

from __future__ import annotations

import time
from collections.abc import Callable

from django_pgviews_c.declarations import setting
from django_pgviews_c.syncresult import SyncResult

__all__ = ["Progress"]

# How a progress line names the actions that compute a materialized view's data.
_VERBS = {"create": "built", "build": "built", "refresh": "re-populated"}
# Lines of the -v 1 report before it says "... and N more".
_REPORT_LINES = 50


class Progress:
    """The lines one sync says, through ``progress`` (None: silent), up to ``verbosity``."""

    def __init__(self, verbosity: int, progress: Callable[[str], None] | None, result: SyncResult) -> None:
        self.verbosity = verbosity
        self.progress = progress
        self.result = result
        #: Set while --plan rehearses: nothing it builds is worth a progress line.
        self.rehearsing = False
        #: When the sync's first statement ran (monotonic), for "it has gone on a while".
        self.work_started: float | None = None

    def say(self, text: str, level: int) -> None:
        if self.progress and self.verbosity >= level:
            self.progress(text)

    def work_begins(self) -> None:
        if self.work_started is None:
            self.work_started = time.monotonic()

    def finished(self, label: str, op: str, seconds: float, rows: int) -> None:
        """A materialized view's data computed: remembered for the report, and said at -v 1
        as it happens once the work has gone on for more than a few seconds."""
        before = self.result.timings.get(label, (0.0, -1))
        self.result.timings[label] = (before[0] + seconds, rows if rows >= 0 else before[1])
        if self.rehearsing:
            return
        started = self.work_started if self.work_started is not None else time.monotonic() - seconds
        after = float(setting("PGVIEWS_PROGRESS_AFTER_SECONDS", 3))
        if time.monotonic() - started >= after:
            counted = f", {rows} rows" if rows >= 0 else ""
            self.say(f"  {_VERBS.get(op, op)} {label}  {seconds:.1f}s{counted}", 1)

    def report(self) -> None:
        """At -v 1, after the sync: what was re-created and re-populated, with times (views
        created for the first time are counted by the command's summary)."""
        if self.verbosity < 1 or not self.progress:
            return
        lines = []
        for label in self.result.changed:
            status = self.result.statuses[label]
            if status == "CREATED":
                continue
            line = f"  {status:<8} {label}"
            reason = self.result.reasons.get(label)
            if reason:
                line += f"  ({reason})"
            timing = self.result.timings.get(label)
            if timing:
                line += f"  {timing[0]:.2f}s" + (f", {timing[1]} rows" if timing[1] >= 0 else "")
            lines.append(line)
        for line in lines[:_REPORT_LINES]:
            self.say(line, 1)
        if len(lines) > _REPORT_LINES:
            self.say(f"  ... and {len(lines) - _REPORT_LINES} more (-v 2 lists every view)", 1)
