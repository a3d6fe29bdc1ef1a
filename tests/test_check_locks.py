"""The database checks (``manage.py check --database``, and migrate before its migrations) never
wait behind a lock on what the views read: comparing a changed declaration with its view builds
it beside the view, and deparsing a view locks the tables it reads, so a session holding ACCESS
EXCLUSIVE on a source table (an ALTER, a LOCK in an ETL) made the check wait as long as it held
it (found in Traffic-Stops: 21 s of `check` behind a LOCK on nc_stop, and a Ctrl-C there ended
migrate with a traceback). tests/txproj, each command a real process."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from tests import processes, psycopg_compat
from tests.test_migrate_aside import DB as ASIDE_DB
from tests.test_migrate_aside import Project, migrated_project, wait_for

DB = ASIDE_DB.replace("pgvc_tx", "pgvc_ck", 1)


class CheckProject(Project):
    db = DB


@pytest.fixture
def project(tmp_path):
    yield from migrated_project(tmp_path, CheckProject)


@pytest.fixture
def locked_item():
    """A second session holding ACCESS EXCLUSIVE on shop_item, which every view reads."""
    with processes.holding_lock(DB, "shop_item") as cur:
        yield cur


def check_returns(project: CheckProject, holder) -> subprocess.CompletedProcess:
    """``check --database default``, which must finish while ``holder`` still holds its lock."""
    proc = project.start("check", "--database", "default")
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("check waited behind the lock on shop_item")
    holder.execute(
        "SELECT count(*) FROM pg_locks WHERE relation = 'shop_item'::regclass AND granted "
        "AND pid = pg_backend_pid()"
    )
    assert holder.fetchone()[0] >= 1  # still held: the check did not outwait it
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_check_of_a_changed_declaration_does_not_wait_behind_a_lock(project, locked_item):
    project.edit_models(
        'sql = "SELECT id, name FROM shop_item"', 'sql = "SELECT id, upper(name) AS name FROM shop_item"'
    )
    done = check_returns(project, locked_item)
    assert done.returncode == 0, done.stderr
    assert "W008" not in done.stdout + done.stderr


def test_check_that_must_deparse_a_view_says_it_skipped_for_a_lock(tmp_path, project):
    # Replaced by hand with the same definition: a new rewrite rule, so the catalog query
    # deparses the view to compare it, which locks shop_item.
    psycopg_compat.query(
        DB, "CREATE OR REPLACE VIEW shop_cheap AS SELECT id, price, name FROM shop_item WHERE price < 10"
    )
    with processes.holding_lock(DB, "shop_item") as cur:
        holder_pid = processes.backend_pid(cur)
        done = check_returns(project, cur)
    assert done.returncode == 0, done.stderr
    out = " ".join((done.stdout + done.stderr).split())  # the hint is wrapped
    assert "django_pgviews_c.W008" in out and "lock timeout" in out, out
    # Whom to ask: the holder, as a sync's lock waits name it.
    assert f"pid {holder_pid} (" in out and "holding AccessExclusiveLock on shop_item" in out, out
    assert "the database checks of views were skipped rather than wait" in out
    # Once the lock is gone the checks run again, and find nothing to say.
    again = project.ok("check", "--database", "default")
    assert "W008" not in again.stdout + again.stderr


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_during_migrates_checks_says_nothing_was_changed(project, signum):
    """A signal while migrate's system checks wait on the database (here behind a lock, with a
    long PGVIEWS_LOCK_TIMEOUT_MS): the command's one-line message and 128 + the signal, before
    any migration, not a traceback from inside Django's checks."""
    project.migration(
        "0002_note",
        "0001_initial",
        "        migrations.AddField('item', 'note', models.TextField(null=True)),\n",
    )
    psycopg_compat.query(
        DB, "CREATE OR REPLACE VIEW shop_cheap AS SELECT id, price, name FROM shop_item WHERE price < 10"
    )
    with processes.holding_lock(DB, "shop_item") as cur:
        proc = subprocess.Popen(
            [sys.executable, "-c", _DEFAULT_SIGINT, "migrate"],
            cwd=project.path,
            env=project.env(TXPROJ_LOCK_TIMEOUT_MS="600000"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        out, err = processes.interrupt(
            proc,
            signum,
            lambda: wait_for("migrate's checks to wait on shop_item", lambda: _waiting_on_item(cur)),
        )
    assert proc.returncode == 128 + signum, err
    assert "Traceback" not in err, err
    assert (
        f"interrupted by {signal.Signals(signum).name} during the system checks, before any migration: "
        "nothing was changed" in err
    ), err
    assert q("SELECT name::text FROM django_migrations WHERE app = 'shop' ORDER BY id")[-1] == (
        "0001_initial",
    )


#: python -m django with SIGINT as a terminal gives it (a background job of a shell ignores it).
_DEFAULT_SIGINT = (
    "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "from django.core.management import execute_from_command_line; "
    "execute_from_command_line(['django'] + sys.argv[1:])"
)


def _waiting_on_item(cur) -> bool:
    cur.execute(
        "SELECT count(*) FROM pg_locks WHERE relation = 'shop_item'::regclass AND NOT granted "
        "AND pid <> pg_backend_pid()"
    )
    return cur.fetchone()[0] > 0


def q(sql: str) -> list[tuple]:
    return psycopg_compat.query(DB, sql)
