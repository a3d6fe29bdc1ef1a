"""pgviews_refresher asks whether the history table exists once, not on every poll: a real
refresher process (tests/freshproject, its queries logged through Django's query log,
tests/freshproject/querylog.py) asks again only after a read or write of the history failed on
the missing table, or after it reconnected."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

from django_pgviews_c import _core
from tests import processes, psycopg_compat
from tests.test_refresher import ROOT

SUFFIX = os.environ.get("PGVIEWS_DB_SUFFIX", "") + "_history_asked"
DB = "pgviews_c_fresh" + SUFFIX
SETTINGS = "tests.freshproject.querylog"
WAIT = 120.0
#: The question (history.history_missing), and the staleness check's read of the history as the
#: query log shows it (its parameters bound).
ASKED = _core.query_sql("history_present")
READ = "FROM django_pgviews_c_refresh WHERE view = ANY("


class Lines:
    """Every line the refresher prints (its output and its query log), kept as they come."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def count(self, text: str) -> int:
        return sum(text in line for line in list(self.lines))

    def wait(self, what: str, check, timeout: float = WAIT) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                last = [line[:200] for line in self.lines[-8:]]
                raise AssertionError(f"{what}: not seen; the last lines: {last}")
            time.sleep(0.05)

    def wait_for(self, text: str, after: int = 0) -> None:
        """Until a line with ``text`` comes after the first ``after`` lines."""
        self.wait(text, lambda: any(text in line for line in self.lines[after:]))

    def passes(self, n: int) -> None:
        """Until the history has been read ``n`` more times (a pass reads it once or twice)."""
        target = self.count(READ) + n
        self.wait(f"{n} more reads of the history", lambda: self.count(READ) >= target)


def run(*args: str) -> subprocess.CompletedProcess:
    return processes.django(*args, settings=SETTINGS, suffix=SUFFIX)


def _refresher_backend() -> int:
    """The refresher's Django connection: its one client session besides the one holding the
    refresher's advisory lock (a connection of its own, refresherlock.py) and this query's."""
    found = psycopg_compat.query(
        DB,
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
        "AND backend_type = 'client backend' AND pid <> pg_backend_pid() AND pid NOT IN "
        "(SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted)",
    )
    assert len(found) == 1, found
    return int(found[0][0])


def test_the_refresher_asks_for_the_history_table_once_until_it_fails_or_reconnects():
    with processes.migrated_database(DB, run):
        proc = subprocess.Popen(
            [sys.executable, "-u", "-m", "django", "pgviews_refresher", "--poll", "0.1"],
            cwd=ROOT, env=processes.django_env(SETTINGS, SUFFIX), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        out = Lines(proc)
        try:
            out.wait_for("active: refreshing due views of database 'default'")
            out.passes(10)
            assert out.count(ASKED) == 1, out.count(ASKED)
            # The table gone: the next pass's read fails on it, and the refresher asks again.
            assert run("migrate", "django_pgviews_c", "zero", "-v", "0").returncode == 0
            out.wait_for("waiting: the refresh history table (django_pgviews_c_refresh) is missing")
            mark = len(out.lines)
            assert run("migrate", "django_pgviews_c", "-v", "0").returncode == 0
            out.wait_for("refreshed freshapp.DueEveryTime", after=mark)
            asked = out.count(ASKED)
            out.passes(10)
            assert out.count(ASKED) == asked, (asked, out.count(ASKED))
            # A new server connection: asked again, once.
            psycopg_compat.query(DB, "SELECT pg_terminate_backend(%s)", [_refresher_backend()])
            out.wait_for("database error, retrying")
            out.wait("the question on the new connection", lambda: out.count(ASKED) == asked + 1)
            out.passes(10)
            assert out.count(ASKED) == asked + 1, (asked, out.count(ASKED))
            proc.send_signal(signal.SIGTERM)
            out.wait_for("stopped")
            assert proc.wait(timeout=WAIT) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
