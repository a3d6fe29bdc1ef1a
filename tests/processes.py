"""Running the project's management commands as users do: ``python -m django ...`` in a child
process, with the settings module, the database suffix and the extra variables a test gives."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tests import psycopg_compat

ROOT = Path(__file__).resolve().parent.parent


def django_env(settings: str = "tests.settings", suffix: str | None = None, **extra: str) -> dict[str, str]:
    """The environment of a child process: this one's, with ``settings`` as
    DJANGO_SETTINGS_MODULE, ``suffix`` (when given) as PGVIEWS_DB_SUFFIX and the project root on
    PYTHONPATH, then ``extra``."""
    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = settings
    if suffix is not None:
        env["PGVIEWS_DB_SUFFIX"] = suffix
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def django(
    *args: str,
    settings: str = "tests.settings",
    suffix: str | None = None,
    timeout: float = 300,
    **extra: str,
) -> subprocess.CompletedProcess:
    """``python -m django ARGS`` run to its end, its output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "django", *args],
        cwd=ROOT,
        env=django_env(settings, suffix, **extra),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@contextlib.contextmanager
def migrated_database(name: str, run: Callable[..., subprocess.CompletedProcess]) -> Iterator[None]:
    """A new database ``name``, migrated by ``run("migrate", ...)`` (a child process), dropped
    after the block."""
    psycopg_compat.recreate_database(name)
    try:
        done = run("migrate", "--run-syncdb", "-v", "0")
        assert done.returncode == 0, done.stderr
        yield
    finally:
        psycopg_compat.drop_database(name)


def wait_for(what: str, probe: Callable[[], object], timeout: float = 60.0) -> Any:
    """probe() until it returns something true (the event), which is returned; an
    AssertionError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.02)
    raise AssertionError(f"gave up waiting for {what}")


def waiting_pid(dbname: str, table: str, deadline: float = 60.0) -> int:
    """The backend of database ``dbname`` whose lock request on ``table`` waits (seen in
    pg_locks)."""

    sql = "SELECT pid FROM pg_locks WHERE NOT granted AND relation = to_regclass(%s)"
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        found = psycopg_compat.query(dbname, sql, [table])
        if found:
            return int(found[0][0])
        time.sleep(0.02)
    raise AssertionError(f"no backend ever waited for a lock on {table}")


@contextlib.contextmanager
def holding_lock(dbname: str, table: str, mode: str = "ACCESS EXCLUSIVE") -> Iterator[Any]:
    """A second session of database ``dbname`` holding ``table`` in ``mode`` (a LOCK TABLE mode)
    in a transaction of its own: yields that session's cursor once pg_locks shows the lock
    granted, and rolls back and closes the session after the block (or when the test lets go of
    it first: ``cursor.execute("ROLLBACK")``)."""
    holder = psycopg_compat._connect(dbname)
    try:
        cur = holder.cursor()
        cur.execute("BEGIN")
        cur.execute(f"LOCK TABLE {table} IN {mode} MODE")
        cur.execute(
            "SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid() AND granted "
            "AND relation = to_regclass(%s)",
            [table],
        )
        assert cur.fetchone()[0] >= 1, f"the lock on {table} was not granted"
        yield cur
    finally:
        holder.close()


def backend_pid(cursor: Any) -> int:
    """The backend pid of ``cursor``'s session (the lock holder of holding_lock(), say)."""
    cursor.execute("SELECT pg_backend_pid()")
    return int(cursor.fetchone()[0])


def line_with(proc: subprocess.Popen, word: str, timeout: float = 60) -> tuple[str, list[str]]:
    """The first line of ``proc``'s stdout (a text pipe) that holds ``word``, and the lines
    before it; ("", all lines) when the output ends or ``timeout`` passes without one. A thread
    reads the pipe, so a child that says nothing never blocks the test."""
    import queue
    import threading
    import time

    lines: queue.Queue[str | None] = queue.Queue()
    assert proc.stdout is not None
    out = proc.stdout

    def read() -> None:
        for line in iter(out.readline, ""):
            lines.put(line)
            if word in line:
                return  # the rest is read by the caller's communicate()
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    seen: list[str] = []
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            line = lines.get(timeout=max(0.0, end - time.monotonic()))
        except queue.Empty:
            break
        if line is None:
            break
        if word in line:
            return line, seen
        seen.append(line)
    return "", seen


def interrupt(
    proc: subprocess.Popen, signum: int, ready: Callable[[], object], timeout: float = 60
) -> tuple[str, str]:
    """Once ``ready()`` returns (it waits for the event the signal must meet: a lock wait, a line
    of output), send ``signum`` to ``proc`` and read its output to its end (``timeout``: the hang
    guard). Whatever fails on the way, the child is not left running."""
    try:
        ready()
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return out, err


def celery_worker(app: str, queue: str, env: dict[str, str], name: str | None = None) -> subprocess.Popen:
    """A real Celery worker of ``app`` (one task at a time: the solo pool) that takes the tasks
    sent to ``queue``, with ``env`` (its broker among them) and ``name`` as its node name when
    given; its output, stderr too, on its stdout as text."""
    cmd = [sys.executable, "-m", "celery", "-A", app, "worker", "--pool", "solo", "-Q", queue,
           "--loglevel", "INFO", "--without-heartbeat", "--without-mingle", "--without-gossip"]  # fmt: skip
    if name:
        cmd += ["-n", name]
    return subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def stop(proc: subprocess.Popen, timeout: float = 60) -> None:
    """SIGTERM to ``proc`` and wait for its end; killed when it does not end in ``timeout``."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Reader:
    """The lines a process prints, read as they come."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while True:
            for line in self.seen:
                if text in line:
                    self.seen.remove(line)
                    return line
            try:
                self.seen.append(self.lines.get(timeout=max(deadline - time.monotonic(), 0.01)))
            except queue.Empty:
                raise AssertionError(f"no line with {text!r}; got {self.seen}") from None

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 60) -> None:
        """``signum`` to a refresher, then its "stopped" line and its end with status 0, waited
        for up to ``timeout`` seconds."""
        self.proc.send_signal(signum)
        self.wait_for("stopped")
        assert self.proc.wait(timeout=timeout) == 0


def kill_running(*readers: Reader | None) -> None:
    """Kill the processes of ``readers`` that still run (a test that failed before it stopped
    them), and wait for their end."""
    for reader in readers:
        if reader is not None and reader.proc.poll() is None:
            reader.proc.kill()
            reader.proc.wait()
