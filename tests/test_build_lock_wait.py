"""A sync (sync_pgviews, and migrate, which syncs) that builds a view reading a table another
session holds ACCESS EXCLUSIVE on (an ALTER, a LOCK in an ETL) waits; that wait is said at -v 1
after a second, naming the view being built and the holder, as the probe's and the swap's waits
are, instead of a silent pause until the other session lets go. The session's own lock_timeout
still ends it, naming the view; Ctrl-C during it leaves the database as before. tests/txproj,
each command a real process, the lock held by a real second session."""

from __future__ import annotations

import signal

import pytest

from tests import processes, psycopg_compat
from tests.test_migrate_aside import DB as ASIDE_DB
from tests.test_migrate_aside import Project, migrated_project

DB = ASIDE_DB.replace("pgvc_tx", "pgvc_bw", 1)

#: Two new views over shop_item: a plain one (sent in a batch) and a materialized one (alone).
NEW_VIEWS = """

class Dear(pg.View):
    sql = "SELECT id, price FROM shop_item WHERE price >= 10"
    price = models.IntegerField()

    class Meta:
        managed = False


class Upper(pg.MaterializedView):
    sql = "SELECT id, upper(name) AS name FROM shop_item"
    name = models.CharField(max_length=20)

    class Meta:
        managed = False
"""


class BuildWaitProject(Project):
    db = DB

    def add_views(self) -> None:
        """Two views to create (phase 1 of the sync)."""
        models = self.path / "shop" / "models.py"
        models.write_text(models.read_text() + NEW_VIEWS)
        self._forget_bytecode()

    def change_names(self) -> None:
        """shop_names (emptied, so no probe compares it first) changed: built beside the old
        one (phase 0 of the sync), then swapped in."""
        psycopg_compat.query(DB, "REFRESH MATERIALIZED VIEW shop_names WITH NO DATA")
        self.edit_models(
            'sql = "SELECT id, name FROM shop_item"', 'sql = "SELECT id, lower(name) AS name FROM shop_item"'
        )

    def prepare(self, scenario: str) -> str:
        """Make the change ``scenario`` names; the label of the view whose build waits."""
        if scenario == "changed":
            self.change_names()
            return "shop.Names (shop_names)"
        self.add_views()
        return "shop.Dear (shop_dear)"


@pytest.fixture
def project(tmp_path):
    yield from migrated_project(tmp_path, BuildWaitProject)


def relkinds() -> list[tuple]:
    return psycopg_compat.query(
        DB,
        "SELECT relname::text, relkind::text, relispopulated FROM pg_class c LEFT JOIN pg_matviews m "
        "ON m.matviewname = c.relname WHERE relname IN ('shop_dear', 'shop_upper', 'shop_names') "
        "ORDER BY 1",
    )


def names_rows() -> list[tuple]:
    return psycopg_compat.query(DB, "SELECT name FROM shop_names ORDER BY id")


SCENARIOS = [("sync_pgviews", "new"), ("migrate", "new"), ("sync_pgviews", "changed"), ("migrate", "changed")]


@pytest.mark.parametrize(("command", "scenario"), SCENARIOS, ids=["-".join(s) for s in SCENARIOS])
def test_the_wait_of_a_build_is_said_naming_the_view_and_the_holder(project, command, scenario):
    label = project.prepare(scenario)
    with processes.holding_lock(DB, "shop_item") as holder:
        holder_pid = processes.backend_pid(holder)
        proc = project.start(command, PYTHONUNBUFFERED="1")
        line, before = processes.line_with(proc, "waiting", timeout=60)
    # The lock is gone: the command goes on and finishes.
    out, err = proc.communicate(timeout=120)
    assert line, f"no word of the wait: {before} {out} {err}"
    assert line.startswith(f"  {label}: waiting "), line
    assert "s for a lock to build it, held by " in line, line
    assert f"held by pid {holder_pid} (" in line and "idle in transaction" in line, line
    assert "holding AccessExclusiveLock on shop_item" in line, line
    assert proc.returncode == 0, err
    if scenario == "new":
        assert relkinds() == [("shop_dear", "v", True), ("shop_names", "m", True), ("shop_upper", "m", True)]
        assert psycopg_compat.query(DB, "SELECT name FROM shop_upper ORDER BY id") == [("A",), ("B",), ("C",)]
        assert psycopg_compat.query(DB, "SELECT price FROM shop_dear") == [(20,)]
    else:
        assert names_rows() == [("a",), ("b",), ("c",)]


@pytest.mark.parametrize("scenario", ["new", "changed"])
def test_the_sessions_lock_timeout_still_ends_the_wait_naming_the_view(project, scenario):
    label = project.prepare(scenario)
    before = relkinds()
    with processes.holding_lock(DB, "shop_item") as holder:
        holder_pid = processes.backend_pid(holder)
        proc = project.start("sync_pgviews", PYTHONUNBUFFERED="1", PGOPTIONS="-c lock_timeout=2500")
        out, err = proc.communicate(timeout=120)
    assert proc.returncode != 0, (out, err)
    assert "Traceback" not in err, err
    assert f"  {label}: waiting " in out, out  # said while it waited
    assert f"could not take the locks to build {label}: " in err, err
    assert f"pid {holder_pid} (" in err and "lock_timeout" in err, err
    assert "nothing was changed" in err, err
    assert relkinds() == before


def test_ctrl_c_during_the_wait_leaves_the_database_as_before(project):
    project.prepare("changed")
    before = relkinds()
    with processes.holding_lock(DB, "shop_item"):
        proc = project.start("sync_pgviews", PYTHONUNBUFFERED="1")
        seen: list[str] = []

        def said() -> None:
            line, before = processes.line_with(proc, "waiting", timeout=60)
            seen.append(line)
            assert line, before

        out, err = processes.interrupt(proc, signal.SIGINT, said)
    assert seen and seen[0].startswith("  shop.Names (shop_names): waiting "), (seen, out, err)
    assert proc.returncode == 128 + signal.SIGINT, (out, err)
    assert "Traceback" not in err, err
    assert "nothing was changed" in err, err
    assert relkinds() == before


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_refresh_behind_a_lock_on_a_table_it_reads_says_whom_it_waits_for(project, jobs):
    """One view at a time and in the C loop (--jobs 2), the wait is said as it goes on."""
    psycopg_compat.query(DB, "INSERT INTO shop_item (price, name) VALUES (3, 'd')")
    with processes.holding_lock(DB, "shop_item") as holder:
        holder_pid = processes.backend_pid(holder)
        proc = project.start("refresh_pgviews", "--jobs", jobs, PYTHONUNBUFFERED="1")
        line, before = processes.line_with(proc, "waiting", timeout=60)
    out, err = proc.communicate(timeout=120)
    assert line, f"no word of the wait: {before} {out} {err}"
    assert (
        line.startswith("  shop.") and ": waiting " in line and "s for a lock to refresh it, held by " in line
    )
    assert f"held by pid {holder_pid} (" in line and "holding AccessExclusiveLock on shop_item" in line, line
    assert proc.returncode == 0, err
    assert psycopg_compat.query(DB, "SELECT n, total FROM shop_cheapcount") == [(3, 15)]


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_refresh_that_gives_up_behind_a_lock_on_a_table_it_reads_names_the_holder(project, jobs):
    with processes.holding_lock(DB, "shop_item") as holder:
        holder_pid = processes.backend_pid(holder)
        proc = project.start("refresh_pgviews", "--jobs", jobs)
        out, err = proc.communicate(timeout=180)
    assert proc.returncode == 1, (out, err)
    assert "Traceback" not in err, err
    assert "refresh failed for shop.CheapCount" in err, err
    # Whom to ask, not "no session holds a lock on it any more".
    assert f"held by pid {holder_pid} (" in err and "holding AccessExclusiveLock on shop_item" in err, err
    assert "no session holds a lock" not in err, err
