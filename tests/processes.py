"""Running the project's management commands as users do: ``python -m django ...`` in a child
process, with the settings module, the database suffix and the extra variables a test gives."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

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


def waiting_pid(dbname: str, table: str, deadline: float = 60.0) -> int:
    """The backend of database ``dbname`` whose lock request on ``table`` waits (seen in
    pg_locks)."""
    import time

    sql = "SELECT pid FROM pg_locks WHERE NOT granted AND relation = to_regclass(%s)"
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        found = psycopg_compat.query(dbname, sql, [table])
        if found:
            return int(found[0][0])
        time.sleep(0.02)
    raise AssertionError(f"no backend ever waited for a lock on {table}")


@contextlib.contextmanager
def table_locked(dbname: str, table: str) -> Iterator[int]:
    """``table`` of database ``dbname`` held in ACCESS EXCLUSIVE mode by a transaction of this
    process for the block, rolled back after it. Yields the holder's backend pid."""
    holder = psycopg_compat._connect(dbname)
    try:
        cur = holder.cursor()
        cur.execute(f"BEGIN; LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        cur.execute("SELECT pg_backend_pid()")
        yield int(cur.fetchone()[0])
    finally:
        holder.cursor().execute("ROLLBACK")
        holder.close()


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
