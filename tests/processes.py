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
