"""Behind PgBouncer, in transaction pooling and in session pooling mode.

Each mode gets a PgBouncer started by the tests (tools/pgbouncer.py, Debian's package) on a free
port in front of the test server, and a database of its own. The commands run as real
`manage.py` processes of a small project (tools/smokeproject) whose connection goes through
PgBouncer; what they leave is read from the server directly. In transaction mode the project
sets DISABLE_SERVER_SIDE_CURSORS, as Django's documentation requires for that mode.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests import psycopg_compat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import pgbouncer  # noqa: E402

SUFFIX = os.environ.get("PGVIEWS_DB_SUFFIX", "")
POOL_SIZE = 4
MATVIEWS = ("shop_producttotalmat", "shop_topproduct")


class Pooled:
    """A database behind one PgBouncer, and the smoke project's manage.py pointed through it."""

    def __init__(self, mode: str, bouncer: pgbouncer.PgBouncer, db: str):
        self.mode = mode
        self.bouncer = bouncer
        self.db = db

    def env(self, variant: str = "1", settings: dict | None = None, options: dict | None = None) -> dict:
        """The environment of a smoke project process whose connection goes through PgBouncer."""
        env = dict(os.environ)
        env.pop("DJANGO_SETTINGS_MODULE", None)
        env.update(
            PGHOST=self.bouncer.host,
            PGPORT=str(self.bouncer.port),
            SMOKE_DB=self.db,
            SMOKE_VARIANT=variant,
            SMOKE_OPTIONS=json.dumps(options or {}),
            SMOKE_DB_SETTINGS=json.dumps(
                {"DISABLE_SERVER_SIDE_CURSORS": self.mode == "transaction", **(settings or {})}
            ),
        )
        return env

    def manage(
        self, *args: str, variant: str = "1", settings: dict | None = None, options: dict | None = None
    ):
        env = self.env(variant, settings, options)
        return subprocess.run(
            [sys.executable, str(ROOT / "tools" / "smokeproject" / "manage.py"), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    def ok(self, *args: str, **kwargs) -> str:
        done = self.manage(*args, **kwargs)
        assert done.returncode == 0, (
            f"manage.py {' '.join(args)} through PgBouncer ({self.mode}):\n{done.stderr}"
        )
        return done.stdout

    def rows(self, sql: str) -> list[tuple]:
        """Straight to the server, not through PgBouncer."""
        return psycopg_compat.query(self.db, sql)


def _connect(host: str, port: int, dbname: str, **extra: object):
    """An autocommit connection (psycopg 3 or psycopg2, whichever the suite runs with)."""
    settings = {"host": host, "port": port, "dbname": dbname, "user": os.environ.get("PGUSER", "postgres")}
    settings.update(extra)
    try:
        import psycopg
    except ImportError:
        import psycopg2

        conn = psycopg2.connect(**settings)
        conn.autocommit = True
        return conn
    return psycopg.connect(**settings, autocommit=True)


def _admin(sql: str) -> None:
    psycopg_compat.query("postgres", sql)


@pytest.fixture(scope="module", params=["transaction", "session"])
def pooled(request):
    try:
        pgbouncer.find_pgbouncer()
    except pgbouncer.Unavailable as exc:
        pytest.skip(f"PgBouncer tests need pgbouncer: {exc}")
    mode = request.param
    db = f"pgviews_c_bouncer{SUFFIX}_{mode}"
    upstream = {
        "host": os.environ.get("PGHOST", "127.0.0.1"),
        "port": os.environ.get("PGPORT", "5432"),
        "user": os.environ.get("PGUSER", "postgres"),
        "password": os.environ.get("PGPASSWORD", ""),
    }
    _admin(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    _admin(f'CREATE DATABASE "{db}"')
    bouncer = pgbouncer.PgBouncer(upstream, mode, pool_size=POOL_SIZE).start()
    try:
        pooled = Pooled(mode, bouncer, db)
        pooled.migrate_output = pooled.ok("migrate")
        yield pooled
    finally:
        bouncer.stop()
        _admin(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def relations(pooled: Pooled) -> dict[str, tuple[str, bool]]:
    rows = pooled.rows(
        "SELECT relname::text, relkind::text, relispopulated FROM pg_class "
        "WHERE relname LIKE 'shop\\_%' AND relkind IN ('v', 'm')"
    )
    return {name: (kind, populated) for name, kind, populated in rows}


EXPECTED = {
    "shop_producttotal": ("v", True),
    "shop_producttotalmat": ("m", True),
    "shop_topproduct": ("m", True),
}


def test_migrate_creates_the_views(pooled):
    assert "Applying shop.0001_initial... OK" in pooled.migrate_output
    assert relations(pooled) == EXPECTED
    # A second migrate, with nothing to apply, syncs again and changes nothing.
    pooled.ok("migrate")
    assert "0 changed, 3 unchanged" in pooled.ok("sync_pgviews")


def test_sync_recreates_what_was_dropped(pooled):
    """A non-empty plan: transaction, advisory lock, SET LOCAL lock_timeout, a batch in a savepoint."""
    pooled.rows("DROP VIEW shop_producttotal CASCADE")
    assert relations(pooled) == {}
    out = pooled.ok("sync_pgviews", "-v", "2")
    assert "3 changed" in out
    assert relations(pooled) == EXPECTED


def test_sync_rebuilds_a_changed_chain(pooled):
    """A changed view and the materialized views that read it, rebuilt in the build schema."""
    pooled.rows("INSERT INTO shop_sale (product, amount) VALUES ('tea', 2), ('tea', 3), ('jam', 1)")
    pooled.ok("refresh_pgviews")
    pooled.ok("sync_pgviews", variant="2")
    assert pooled.rows("SELECT sales FROM shop_producttotal WHERE product = 'tea'") == [(2,)]
    assert relations(pooled) == EXPECTED
    assert pooled.rows("SELECT product, total FROM shop_topproduct") == [("tea", 5)]
    # Back: a column less cannot be a CREATE OR REPLACE, so it needs --force.
    done = pooled.manage("sync_pgviews")
    assert done.returncode != 0 and "--force" in done.stderr
    pooled.ok("sync_pgviews", "--force")
    assert pooled.rows(
        "SELECT count(*) FROM information_schema.columns WHERE table_name = 'shop_producttotal'"
    ) == [(2,)]
    assert relations(pooled) == EXPECTED


def test_sync_waits_for_the_advisory_lock(pooled):
    """A sync through PgBouncer waits while another session holds the sync's advisory lock, and
    finishes once it is released: the lock is the transaction's, so pooling keeps it."""
    from django_pgviews_c.sync import ADVISORY_LOCK_KEY

    pooled.rows("DROP VIEW shop_producttotal CASCADE")
    holder = _connect(os.environ.get("PGHOST", "127.0.0.1"), int(os.environ.get("PGPORT", "5432")), pooled.db)
    sync = None
    try:
        cur = holder.cursor()
        cur.execute("BEGIN")
        cur.execute("SELECT pg_advisory_xact_lock(%s)", [ADVISORY_LOCK_KEY])
        sync = subprocess.Popen(
            [sys.executable, str(ROOT / "tools" / "smokeproject" / "manage.py"), "sync_pgviews"],
            env=pooled.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        waiting = (
            "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
            f"WHERE l.locktype = 'advisory' AND NOT l.granted AND d.datname = '{pooled.db}'"
        )
        deadline = time.monotonic() + 60
        while pooled.rows(waiting) != [(1,)]:  # the sync is queued behind our lock
            assert sync.poll() is None, sync.communicate()
            assert time.monotonic() < deadline, "the sync never waited for the advisory lock"
            time.sleep(0.05)
        assert relations(pooled) == {}
        cur.execute("COMMIT")
        out, err = sync.communicate(timeout=120)
        assert sync.returncode == 0, err
        assert "3 changed" in out
    finally:
        if sync is not None and sync.poll() is None:
            sync.kill()
            sync.wait()
        holder.close()
    assert relations(pooled) == EXPECTED


def test_pgbouncer_answers_once_its_log_outgrows_a_pipe(pooled):
    """PgBouncer writes each log line to stderr too: tools/pgbouncer.py piped that to no reader,
    so PgBouncer blocked, and stopped answering, once 64 KiB of log filled the pipe (three lines
    per connection: a few hundred connections, a longer suite or a day of a local set-up)."""
    bouncer = pooled.bouncer
    while bouncer.logfile.stat().st_size < 128 * 1024:
        # connect_timeout: a PgBouncer that hangs makes a connection fail, not the test hang.
        _connect(bouncer.host, bouncer.port, pooled.db, connect_timeout=10).close()
    conn = _connect(bouncer.host, bouncer.port, pooled.db, connect_timeout=10)
    try:
        cur = conn.cursor()
        cur.execute("SELECT 1")
        assert cur.fetchone() == (1,)
    finally:
        conn.close()


@pytest.mark.parametrize("concurrently", [False, True], ids=["plain", "concurrently"])
def test_refresh_pgviews_jobs(pooled, concurrently):
    """The parallel refresh's own libpq connections, through PgBouncer too."""
    pooled.rows("TRUNCATE shop_sale")
    pooled.rows("INSERT INTO shop_sale (product, amount) VALUES ('salt', 9), ('pepper', 4)")
    args = ["refresh_pgviews", "--jobs", "2"] + (["--concurrently"] if concurrently else [])
    out = pooled.ok(*args)
    assert "refreshed 2 materialized views" in out
    assert pooled.rows("SELECT product, total FROM shop_topproduct") == [("salt", 9)]


def test_pgviews_status(pooled):
    out = pooled.ok("pgviews_status")
    for label in ("shop.ProductTotal", "shop.ProductTotalMat", "shop.TopProduct"):
        assert label in out


def test_model_refresh(pooled):
    pooled.ok(
        "shell",
        "-c",
        "from shop.models import Sale, ProductTotalMat, TopProduct\n"
        "Sale.objects.create(product='honey', amount=50)\n"
        "ProductTotalMat.refresh(concurrently=True)\n"
        "TopProduct.refresh()\n"
        "print(TopProduct.objects.get().product)",
    )
    assert pooled.rows("SELECT product, total FROM shop_topproduct") == [("honey", 50)]
    # Recorded through the history's functions (migration 0004), whose plans live on whichever
    # server connection the pool lends: nothing of them is kept on the client's side.
    assert pooled.rows(
        "SELECT count(*) FROM pg_proc WHERE proname IN ('django_pgviews_c_capture', 'django_pgviews_c_record')"
    ) == [(2,)]
    assert pooled.rows(
        "SELECT ok, rows, sources IS NOT NULL FROM django_pgviews_c_refresh WHERE view = 'shop.TopProduct'"
        " ORDER BY id DESC LIMIT 1"
    ) == [(True, 1, True)]


def test_no_session_state_left_on_server_connections(pooled):
    """After the commands, each pooled server connection has the server's defaults: no SET of
    ours outlived its transaction (in transaction mode it would reach other clients)."""
    pooled.ok("sync_pgviews")
    pooled.ok("refresh_pgviews", "--jobs", "2")
    pooled.ok("refresh_pgviews", "--jobs", "2", "--concurrently")
    pooled.ok("shell", "-c", "from shop.models import TopProduct\nTopProduct.refresh()")
    conns = [_connect(pooled.bouncer.host, pooled.bouncer.port, pooled.db) for _ in range(POOL_SIZE)]
    try:
        seen = []
        for conn in conns:  # one open transaction each: every server connection of the pool is used
            cur = conn.cursor()
            cur.execute("BEGIN")
            cur.execute(
                "SELECT current_setting('search_path'), current_setting('lock_timeout'), "
                "current_setting('statement_timeout'), current_setting('jit'), current_user::text, "
                "pg_backend_pid()"
            )
            seen.append(cur.fetchone())
        for conn in conns:
            conn.cursor().execute("ROLLBACK")
    finally:
        for conn in conns:
            conn.close()
    defaults = pooled.rows(
        "SELECT current_setting('search_path'), current_setting('lock_timeout'), "
        "current_setting('statement_timeout'), current_setting('jit'), current_user::text"
    )[0]
    assert len({row[-1] for row in seen}) == POOL_SIZE
    assert [row[:-1] for row in seen] == [defaults] * POOL_SIZE


def test_server_side_binding(pooled):
    """psycopg 3 with server-side binding; in transaction mode also without prepared statements
    (prepare_threshold None), which PgBouncer 1.18 cannot carry across server connections."""
    pytest.importorskip("psycopg")
    options = {"server_side_binding": True}
    if pooled.mode == "transaction":
        options["prepare_threshold"] = None
    pooled.rows("DROP VIEW shop_producttotal CASCADE")
    pooled.ok("sync_pgviews", options=options)
    assert relations(pooled) == EXPECTED
    pooled.ok("refresh_pgviews", "--jobs", "2", options=options)
    pooled.ok("pgviews_status", options=options)


def _refresher(pooled: Pooled) -> tuple[subprocess.Popen, queue.Queue]:
    """A pgviews_refresher through PgBouncer, and the queue of the lines it prints."""
    proc = subprocess.Popen(
        [sys.executable, "-u", str(ROOT / "tools" / "smokeproject" / "manage.py"), "pgviews_refresher"]
        + ["--poll", "0.3"],
        env=pooled.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line.strip()) for line in proc.stdout], daemon=True).start()
    return proc, lines


def _next_state(lines: queue.Queue, timeout: float = 60) -> str:
    """The next "active"/"standby"/"stopped" line a refresher prints, without its timestamp."""
    deadline = time.monotonic() + timeout
    while True:
        line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
        for state in ("active:", "standby:", "stopped"):
            if state in line:
                return line[line.index(state) :]


def test_refresher_one_works_the_other_stands_by(pooled):
    """Two refreshers through PgBouncer: one works, the other stands by, and takes over when the
    first is killed outright; none leaves its lock on a pooled server connection. In transaction
    pooling a session-level lock stayed on the server connection that took it: the pool lent
    that connection to the second refresher, which took the lock again (re-entrant) and worked
    too, and a killed refresher's lock stayed held there."""
    locks = (
        "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
        f"WHERE l.locktype = 'advisory' AND d.datname = '{pooled.db}'"
    )
    first, first_lines = _refresher(pooled)
    second = None
    try:
        assert _next_state(first_lines) == "active: refreshing due views of database 'default'"
        second, second_lines = _refresher(pooled)
        assert _next_state(second_lines) == "standby: another refresher works on database 'default'"
        first.kill()  # SIGKILL: no unlock of its own
        first.wait()
        assert _next_state(second_lines) == "active: refreshing due views of database 'default'"
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=60) == 0
        deadline = time.monotonic() + 60
        while pooled.rows(locks) != [(0,)]:  # the lock's transaction ended with its connection
            assert time.monotonic() < deadline, "the refresher's lock outlived the refresher"
            time.sleep(0.05)
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
