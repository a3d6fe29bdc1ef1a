"""A sync that compares a changed declaration with its view (the probe builds it beside the
view) waits behind a session holding ACCESS EXCLUSIVE on a table the view reads; that wait is
said, naming the holder, as a swap's lock waits are, instead of a silent pause (found in
Traffic-Stops: sync_pgviews sat 18.6 s without a word behind a LOCK on nc_stop). tests/txproj,
sync_pgviews a real process."""

from __future__ import annotations

import queue
import subprocess
import sys
import threading

import pytest

from tests import processes, psycopg_compat
from tests.test_migrate_aside import DB as ASIDE_DB
from tests.test_migrate_aside import Project, migrated_project

DB = ASIDE_DB.replace("pgvc_tx", "pgvc_pw", 1)


class WaitProject(Project):
    db = DB


@pytest.fixture
def project(tmp_path):
    yield from migrated_project(tmp_path, WaitProject)


def names_oid() -> int:
    return psycopg_compat.query(DB, "SELECT 'shop_names'::regclass::oid::bigint")[0][0]


def test_the_wait_for_a_lock_on_a_source_table_is_said_naming_the_holder(project):
    before = names_oid()
    project.edit_models(
        'sql = "SELECT id, name FROM shop_item"', 'sql = "SELECT id, upper(name) AS name FROM shop_item"'
    )
    with processes.holding_lock(DB, "shop_item") as holder:
        holder.execute("SELECT pg_backend_pid()")
        holder_pid = holder.fetchone()[0]
        proc = subprocess.Popen(
            [sys.executable, "-m", "django", "sync_pgviews"],
            cwd=project.path,
            env=project.env(PYTHONUNBUFFERED="1"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
        try:
            first = lines.get(timeout=60)
        except queue.Empty:
            first = ""
    # The sync goes on once the lock is gone.
    _, err = proc.communicate(timeout=120)
    assert "waiting" in first, f"no word of the wait: {first!r} {err}"
    assert first.startswith("  shop.Names (shop_names): waiting "), first
    assert f"held by pid {holder_pid} " in first and first.rstrip().endswith(
        "holding AccessExclusiveLock on shop_item"
    ), first
    assert proc.returncode == 0, err
    assert names_oid() != before  # rebuilt once the lock was let go
    assert psycopg_compat.query(DB, "SELECT name FROM shop_names ORDER BY id") == [("A",), ("B",), ("C",)]
