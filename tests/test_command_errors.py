"""What the commands say when something goes wrong outside the views' own SQL: a database that
cannot be reached, an interrupt. Each runs the command as a user does, in a real process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import pytest

from tests import processes

ROOT = Path(__file__).resolve().parent.parent
SUFFIX = os.environ.get("PGVIEWS_DB_SUFFIX", "")

COMMANDS = (
    ("sync_pgviews",),
    ("refresh_pgviews",),
    ("refresh_pgviews", "--jobs", "2"),
    ("pgviews_status",),
    ("clear_pgviews", "--no-input"),
    ("migrate",),
)


def django(*args: str, default: dict | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
    return processes.django(
        *args,
        settings="tests.execproject.settings",
        timeout=timeout,
        PGVIEWS_TEST_DEFAULT=json.dumps(default or {}),
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _assert_reported(done: subprocess.CompletedProcess, *reason: str) -> None:
    assert done.returncode != 0, done.stdout
    assert "Traceback" not in done.stderr, done.stderr
    assert "lost" not in done.stderr, done.stderr
    assert "cannot connect to database 'default'" in done.stderr, done.stderr
    for part in reason:
        assert part in done.stderr, done.stderr


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_database_that_does_not_exist_is_named_by_every_command(command):
    name = f"pgviews_c_nowhere{SUFFIX}"
    done = django(*command, default={"NAME": name})
    _assert_reported(done, f'database "{name}" does not exist')
    # Said before any work: no word about refreshes or their history, none of which ran
    # (migrate's system checks say it too, as check W008, before the command's own error).
    assert done.stderr.count(f'database "{name}" does not exist') == (2 if command == ("migrate",) else 1)
    assert "history" not in done.stderr, done.stderr


def test_a_refused_connection_says_so():
    port = _free_port()
    for command in (("sync_pgviews",), ("pgviews_status",), ("migrate",)):
        done = django(*command, default={"HOST": "127.0.0.1", "PORT": str(port)})
        _assert_reported(done, "Connection refused", str(port))


def test_an_unknown_role_is_the_servers_reason():
    role = f"pgviews_c_nobody{SUFFIX}"
    done = django("sync_pgviews", default={"USER": role})
    _assert_reported(done, f'role "{role}"')


@pytest.mark.parametrize("jobs", [(), ("--jobs", "2")], ids=["serial", "jobs 2"])
def test_refresh_before_migrate_names_each_view_and_says_migrate_creates_it(jobs):
    from tests import psycopg_compat

    name = f"pgviews_c_unmigrated{SUFFIX}"
    psycopg_compat.recreate_database(name)  # no migrate ran on it: no table, no view
    try:
        done = django("refresh_pgviews", *jobs, default={"NAME": name})
    finally:
        psycopg_compat.drop_database(name)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    for label in ("viewtest.MaterializedRelatedView", "viewtest.MaterializedViewWithIndex"):
        assert (
            f"HINT: {label} is not in database 'default': manage.py migrate creates the views"
        ) in done.stderr, done.stderr


def test_sync_before_migrate_says_which_model_table_is_missing_and_that_migrate_creates_it():
    from tests import psycopg_compat

    name = f"pgviews_c_unmigrated{SUFFIX}"
    psycopg_compat.recreate_database(name)  # no migrate ran on it: no table, no view
    try:
        done = processes.django(
            "sync_pgviews",
            settings="tests.execproject.settings",
            PGVIEWS_TEST_DEFAULT=json.dumps({"NAME": name}),
            PGVIEWS_TEST_SETTINGS=json.dumps({"PGVIEWS_CREATE_SCHEMAS": True}),
        )
        left = psycopg_compat.query(name, "SELECT count(*) FROM pg_class WHERE relname LIKE 'viewtest%'")
    finally:
        psycopg_compat.drop_database(name)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert 'relation "auth_user" does not exist' in done.stderr, done.stderr
    assert (
        "HINT: auth_user is the table of auth.User, which its migrations create: manage.py migrate "
        "applies them, then syncs the views."
    ) in done.stderr, done.stderr
    assert "nothing was changed" in done.stderr and left == [(0,)], (done.stderr, left)
