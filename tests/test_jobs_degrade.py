"""The parallel loop on a server that refuses some of its connections for its connection limit
(SQLSTATE 53300, "sorry, too many clients already"): it runs with the connections it got and says
so once; a refusal of every connection, or any other connect error, still fails the run with the
server's reason. A private server (tools/pgreplica.py) with a small max_connections, filled to
the last slot and then given back exactly the slots a test wants free: its backends are waited
for (their processes gone) rather than slept on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from django_pgviews_c import _core
from django_pgviews_c.exceptions import ConnectionLostError
from tests import processes

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import pgreplica  # noqa: E402

psycopg = pytest.importorskip("psycopg", reason="tools/pgreplica.py drives its private server with psycopg 3")

MAX_CONNECTIONS = 6
WAIT = 60.0  # seconds: the bound of every wait for an event below
# tests/autovacproj's database, on this module's own server.
DBNAME = "pgviews_autovac" + os.environ.get("PGVIEWS_DB_SUFFIX", "")
TOO_MANY = "sorry, too many clients already"


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class Held:
    """Every slot of the server taken by connections of this test, then ``free`` of them given
    back: closed, and their backends' processes waited for, so that exactly ``free`` slots are
    free (a backend leaves pg_stat_activity before it gives its slot back)."""

    def __init__(self, cluster: pgreplica.Cluster, free: int, dbname: str = "postgres") -> None:
        self.conns: list = []
        while len(self.conns) < MAX_CONNECTIONS:
            self.conns.append(processes.wait_for("a free slot", lambda: self._connect(cluster, dbname)))
        for conn in self.conns[:free]:
            pid = conn.info.backend_pid
            conn.close()
            processes.wait_for(f"backend {pid} to exit", lambda pid=pid: _gone(pid))
        self.conns = self.conns[free:]

    @staticmethod
    def _connect(cluster: pgreplica.Cluster, dbname: str) -> object:
        try:
            return cluster.connect(cluster.primary, dbname=dbname)
        except psycopg.OperationalError as exc:  # a backend of the last test still exiting
            assert "too many clients" in str(exc), exc
            return None

    def close(self) -> None:
        for conn in self.conns:
            conn.close()


@pytest.fixture
def held(small_server):
    made: list[Held] = []

    def hold(free: int, dbname: str = "postgres") -> Held:
        made.append(Held(small_server, free, dbname))
        return made[-1]

    yield hold
    for h in made:
        h.close()


def _conninfo(cluster, **extra: str) -> dict[str, str]:
    return {**{k: str(v) for k, v in cluster.primary.items()}, **extra}


STATEMENTS = ["SELECT 1", "SELECT 2", "SELECT 3", "SELECT 4"]


def test_the_run_goes_on_with_the_connections_the_server_accepted(small_server, held):
    held(free=2)
    refused: list[tuple] = []
    out = _core.run_parallel(
        _conninfo(small_server),
        STATEMENTS,
        [[], [], [], []],
        None,
        4,
        on_refused=lambda *a: refused.append(a),
    )
    assert [state for state, _s, _e in out] == ["ok"] * 4, out
    assert refused == [(2, 4, TOO_MANY)]


def test_early_connections_the_server_refused_in_part_serve_the_run(small_server, held):
    # connect_loop (a --stale pass's early connects) keeps the two it got; the run takes them and
    # says what it asked for.
    held(free=2)
    made = _core.connect_loop(_conninfo(small_server), 4)
    refused: list[tuple] = []
    out = _core.run_parallel(
        _conninfo(small_server), STATEMENTS, [[], [], [], []], None, 4, connections=made,
        on_refused=lambda *a: refused.append(a),
    )  # fmt: skip
    assert [state for state, _s, _e in out] == ["ok"] * 4, out
    assert refused == [(2, 4, TOO_MANY)]


def test_no_connection_at_all_fails_the_run_with_the_servers_reason(small_server, held):
    held(free=0)
    with pytest.raises(ConnectionLostError, match=f"could not connect: .*FATAL:  {TOO_MANY}") as info:
        _core.run_parallel(_conninfo(small_server), STATEMENTS, [[], [], [], []], None, 4, on_refused=print)
    # The message is libpq's own, as at its default verbosity: no SQLSTATE, no source location.
    assert "53300" not in str(info.value) and "LOCATION" not in str(info.value)
    with pytest.raises(ConnectionLostError, match=TOO_MANY):
        _core.connect_loop(_conninfo(small_server), 4)


def test_any_other_connect_error_still_fails_the_run(small_server, held):
    # Two slots free, but the database does not exist: that error is the run's, not a shortfall.
    held(free=2)
    missing = "pgviews_no_such_database" + os.environ.get("PGVIEWS_DB_SUFFIX", "")
    with pytest.raises(ConnectionLostError, match=f'database "{missing}" does not exist') as info:
        _core.run_parallel(_conninfo(small_server, dbname=missing), STATEMENTS, [[], [], [], []], None, 4)
    assert "3D000" not in str(info.value) and "LOCATION" not in str(info.value)
    with pytest.raises(ConnectionLostError, match=f'database "{missing}" does not exist'):
        _core.connect_loop(_conninfo(small_server, dbname=missing), 4)


# ---- refresh_pgviews --jobs on a project ---------------------------------------------------------


@pytest.fixture(scope="module")
def project(small_server):
    with small_server.connect(small_server.primary) as conn:
        conn.execute(f'CREATE DATABASE "{DBNAME}"')
    _manage_ok(small_server, ["migrate", "--run-syncdb", "-v0"])
    with small_server.connect(small_server.primary, dbname=DBNAME) as conn:
        conn.execute("INSERT INTO shop_reading (grp, val) SELECT g % 10, g FROM generate_series(1, 100) g")
    return small_server


def _manage(cluster, args: list[str]):
    return processes.django(
        *args,
        settings="tests.autovacproj.settings",
        PGVIEWS_AUTOVAC_PORT=str(cluster.primary["port"]),
    )


def _manage_ok(cluster, args: list[str]) -> str:
    out = _manage(cluster, args)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def _history(cluster) -> list[tuple]:
    with cluster.connect(cluster.primary, dbname=DBNAME) as conn:
        return conn.execute("SELECT db_table, ok FROM django_pgviews_c_refresh ORDER BY id").fetchall()


@pytest.mark.parametrize("mode", [[], ["--stale"]], ids=["all", "stale"])
def test_refresh_pgviews_jobs_runs_with_fewer_connections_and_says_so(project, held, mode):
    # The command's own connection takes one of the three free slots; the loop gets two of three.
    before = len(_history(project))
    if mode:  # every view stale: the source changed since their last refresh
        with project.connect(project.primary, dbname=DBNAME) as conn:
            conn.execute("UPDATE shop_reading SET val = val + 1")
    held(free=3, dbname=DBNAME)
    out = _manage(project, ["refresh_pgviews", "--jobs", "3", *mode])
    assert out.returncode == 0, out.stdout + out.stderr
    warning = (
        "--jobs 3: the server accepted 2 of 3 connections to database 'default' "
        f"({TOO_MANY}); refreshing with 2"
    )
    assert out.stderr.count(warning) == 1, out.stderr
    records = _history(project)[before:]
    assert sorted(t for t, _o in records) == ["shop_loop_copy", "shop_plain_copy", "shop_swap_copy"], records
    assert all(ok for _t, ok in records), records


#: A --stale pass's early connects against its own connection, in the worst order of their race:
#: the loop's connects have all ended before the staleness check's first query. Prints the states
#: of a run on the connections the loop got and what it was refused.
_EARLY_THEN_CHECK = """
import json
import django
django.setup()
from django.db import connection
from django_pgviews_c import _core
from django_pgviews_c.passes import _early
from django_pgviews_c.refresh import connection_params
early = _early("default", 3)
made = early.take()
with connection.cursor() as cur:
    cur.execute("SELECT 1")
refused = []
out = _core.run_parallel(
    connection_params(connection), ["SELECT 1", "SELECT 2", "SELECT 3"], [[], [], []], None, 3,
    connections=made, on_refused=lambda *a: refused.append(a),
)
print(json.dumps({"states": [state for state, _s, _e in out], "refused": refused}))
"""


def test_the_early_connects_never_take_the_place_of_the_passs_own_connection(project, held):
    # Three slots free: the pass's own connection takes one before the loop's three connects
    # begin, so the loop gets two and the staleness check runs, whatever the order in which the
    # connects end.
    held(free=3, dbname=DBNAME)
    done = subprocess.run(
        [sys.executable, "-c", _EARLY_THEN_CHECK],
        env=processes.django_env("tests.autovacproj.settings", PGVIEWS_AUTOVAC_PORT=str(project.primary["port"])),
        capture_output=True, text=True, timeout=WAIT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"states": ["ok"] * 3, "refused": [[2, 3, TOO_MANY]]}
