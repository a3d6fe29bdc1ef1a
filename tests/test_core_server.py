"""The C refresh loop (_core.run_parallel) against what a server can do to it: a connection
terminated while its statement runs, while it waits for a lock, while it connects; a PgBouncer
killed under a statement; a server that refuses connections; a role's statement_timeout; Ctrl-C while a COPY streams; text that is not
UTF-8. Each ends in a result per statement or an exception naming the cause: no hang, no lost
results, no connection left open (counted in pg_stat_activity by the run's application_name)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from django.db import connection, transaction

from django_pgviews_c import _core
from django_pgviews_c.exceptions import ConnectionLostError, CycleError, DatabaseError
from django_pgviews_c.refresh import connection_params
from tests import processes, psycopg_compat
from tests.helpers import catalog_rows, execute

ROOT = Path(__file__).resolve().parent.parent

WAIT = 60.0  # seconds: the bound of every wait for an event below


def _backends(dbname: str, app: str, where: str = "true") -> list[tuple]:
    return psycopg_compat.query(
        dbname,
        f"SELECT pid, query, wait_event_type, wait_event FROM pg_stat_activity "
        f"WHERE datname = current_database() AND application_name = %s "
        f"AND pid <> pg_backend_pid() AND {where}",
        [app],
    )


def _none_left(dbname: str, app: str) -> None:
    # PQfinish ends a backend at once, but its row leaves pg_stat_activity as it exits.
    processes.wait_for(f"the connections of {app} to end", lambda: not _backends(dbname, app))


class Killer(threading.Thread):
    """Terminates the first backend of ``app`` that matches ``where`` (SQL over pg_stat_activity)."""

    def __init__(self, dbname: str, app: str, where: str) -> None:
        super().__init__(daemon=True)
        self.dbname, self.app, self.where = dbname, app, where
        self.killed: tuple | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            rows = processes.wait_for(self.where, lambda: _backends(self.dbname, self.app, self.where))
            self.killed = rows[0]  # type: ignore[index]
            psycopg_compat.query(self.dbname, "SELECT pg_terminate_backend(%s)", [self.killed[0]])
        except BaseException as exc:  # reported by the test
            self.error = exc


@pytest.fixture
def loop(transactional_db, request):
    """conninfo of this test's database with an application_name of the test's own."""
    app = f"pgvc-server-{request.node.name}"[:63]
    conninfo = {**connection_params(connection), "application_name": app}
    yield connection.settings_dict["NAME"], app, conninfo
    _none_left(connection.settings_dict["NAME"], app)


def test_a_slot_terminated_while_its_refresh_runs(loop):
    dbname, app, conninfo = loop
    execute("CREATE MATERIALIZED VIEW srv_slow AS SELECT pg_sleep(30)::text AS x WITH NO DATA")
    execute("CREATE MATERIALIZED VIEW srv_a AS SELECT 1 AS a WITH NO DATA")
    execute("CREATE MATERIALIZED VIEW srv_b AS SELECT a FROM srv_a WITH NO DATA")
    killer = Killer(dbname, app, "wait_event = 'PgSleep'")
    killer.start()
    statements = [f"REFRESH MATERIALIZED VIEW {v}" for v in ("srv_slow", "srv_a", "srv_b")]
    out = _core.run_parallel(conninfo, statements, [[], [], [1]], [9.0, 1.0, 1.0], 2)
    killer.join()
    assert killer.error is None and "srv_slow" in killer.killed[1]
    (state, _, error), ok_a, ok_b = out
    assert state == "failed" and error["connection_lost"] and error["sqlstate"] == "57P01", out
    assert "terminating connection" in error["message"]
    assert ok_a[0] == ok_b[0] == "ok", out


def test_a_slot_terminated_while_it_waits_for_a_lock(loop):
    dbname, app, conninfo = loop
    execute("CREATE MATERIALIZED VIEW srv_locked AS SELECT 1 AS a")
    killer = Killer(dbname, app, "wait_event_type = 'Lock'")
    with transaction.atomic():
        execute("SELECT * FROM srv_locked")  # its ACCESS SHARE lock: the plain REFRESH waits
        killer.start()
        out = _core.run_parallel(
            conninfo,
            ["REFRESH MATERIALIZED VIEW srv_locked", "SELECT 1", "SELECT 2"],
            [[], [], [1]],
            [9.0, 1.0, 1.0],
            2,
            guard=["srv_locked", None, None],
            lock_retries=0,
            last_lock_timeout_ms=60000,
        )
    killer.join()
    assert killer.error is None and "srv_locked" in killer.killed[1]
    (state, _, error), ok1, ok2 = out
    assert state == "failed" and error["connection_lost"], out
    assert ok1[0] == ok2[0] == "ok", out


def test_a_slot_terminated_while_it_connects(loop):
    dbname, app, conninfo = loop
    killer = Killer(dbname, app, "query = 'SELECT pg_sleep(30)'")
    killer.start()
    with pytest.raises(ConnectionLostError, match="could not connect: .*terminating connection"):
        _core.run_parallel(conninfo, ["SELECT 1", "SELECT 2"], [[], []], None, 2, setup="SELECT pg_sleep(30)")
    killer.join()
    assert killer.error is None and killer.killed is not None


# ---- a server of our own: one that refuses connections, a role with a statement_timeout ----------

MAX_CONNECTIONS = 4


def _fill(cluster, n: int) -> list:
    return [cluster.connect(cluster.primary) for _ in range(n)]


def test_a_server_that_refuses_every_connection(small_server):
    conninfo = {**{k: str(v) for k, v in small_server.primary.items()}, "application_name": "pgvc-full"}
    held = _fill(small_server, MAX_CONNECTIONS)
    try:
        with pytest.raises(ConnectionLostError, match="could not connect: .*too many clients"):
            _core.run_parallel(conninfo, ["SELECT 1", "SELECT 2"], [[], []], None, 2)
    finally:
        for c in held:
            c.close()
    with small_server.connect(small_server.primary) as conn:
        rows = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgvc-full'")
        assert rows.fetchone()[0] == 0


def test_a_reconnect_the_server_refuses_leaves_the_work_to_the_other_slots(small_server):
    # Two of the four connections are held; the loop takes the other two. Statement 0 ends its own
    # session; while the loop reports that, its place is taken: the reconnect is refused, the slot
    # is given up, and the other slot runs what is left.
    conninfo = {**{k: str(v) for k, v in small_server.primary.items()}, "application_name": "pgvc-refused"}
    held = _fill(small_server, MAX_CONNECTIONS - 2)

    def take_the_freed_place() -> object:
        try:
            return small_server.connect(small_server.primary)
        except Exception as exc:  # the ended backend has not exited yet
            assert "too many clients" in str(exc)
            return None

    def on_event(k, state, seconds, error):
        if k == 0 and state == "failed":
            held.append(processes.wait_for("a free connection", take_the_freed_place))

    try:
        out = _core.run_parallel(
            conninfo,
            ["SELECT pg_terminate_backend(pg_backend_pid())", "SELECT 1", "SELECT 2", "SELECT 3"],
            [[], [], [1], [2]],
            [9.0, 1.0, 1.0, 1.0],
            2,
            on_event=on_event,
        )
    finally:
        for c in held:
            c.close()
    assert out[0][0] == "failed" and out[0][2]["connection_lost"], out
    assert [s for s, _, _ in out[1:]] == ["ok", "ok", "ok"], out


def test_a_pooler_killed_while_its_statement_runs(loop):
    # PgBouncer dies (SIGKILL) under a running statement: the connection ends without a word
    # from the server. The statement fails with libpq's own reason, as it was when the
    # connection went: a later look for the server's last words once added "invalid socket".
    sys.path.insert(0, str(ROOT / "tools"))
    import pgbouncer

    dbname, app, conninfo = loop
    try:
        upstream = {k: conninfo[k] for k in ("host", "port", "user") if k in conninfo}
        bouncer = pgbouncer.PgBouncer({"host": "127.0.0.1", "port": "5432", **upstream}).start()
    except pgbouncer.Unavailable as exc:
        pytest.skip(f"needs pgbouncer: {exc}")
    try:

        def kill() -> None:
            processes.wait_for(
                "the statement to run", lambda: _backends(dbname, app, "wait_event = 'PgSleep'")
            )
            bouncer.process.kill()

        killer = threading.Thread(target=kill, daemon=True)
        killer.start()
        pooled = {**conninfo, "host": bouncer.host, "port": str(bouncer.port)}
        out = _core.run_parallel(pooled, ["SELECT pg_sleep(30)", "SELECT 1"], [[], [0]], None, 1)
        killer.join()
    finally:
        bouncer.stop()
        psycopg_compat.query(
            dbname,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = %s",
            [app],
        )
    (state, _, error), after = out
    assert state == "failed" and error["connection_lost"] and error["sqlstate"] == "08006", out
    assert error["message"].startswith("server closed the connection unexpectedly"), error
    assert "invalid socket" not in error["message"], error
    assert after[0] == "skipped"


def test_a_statement_timeout_of_the_role(small_server):
    with small_server.connect(small_server.primary) as conn:
        conn.execute("CREATE ROLE pgvc_impatient LOGIN SUPERUSER")
        conn.execute("ALTER ROLE pgvc_impatient SET statement_timeout = '200ms'")
    conninfo = {**{k: str(v) for k, v in small_server.primary.items()}, "user": "pgvc_impatient"}
    out = _core.run_parallel(conninfo, ["SELECT pg_sleep(30)", "SELECT 1"], [[], []], None, 2)
    (state, _, error), ok = out
    assert state == "failed" and error["sqlstate"] == "57014" and not error["connection_lost"], out
    assert "statement timeout" in error["message"]
    assert ok[0] == "ok"


# ---- Ctrl-C while a COPY streams ---------------------------------------------------------------

_INTERRUPTED_COPY = """
import json, sys
from django_pgviews_c import _core
try:
    _core.run_parallel(json.loads(sys.argv[1]), [sys.argv[2]], [[]], None, 1)
except KeyboardInterrupt:
    print("interrupted", flush=True)
"""


def test_ctrl_c_while_a_copy_streams_ends_the_run(loop):
    # The cancel after Ctrl-C reads what the statement still sends: a COPY TO STDOUT kept the
    # connection in COPY OUT state, where PQgetResult never returns NULL, and the process spun.
    dbname, app, conninfo = loop
    copy = "COPY (SELECT repeat('x', 200000) UNION ALL SELECT pg_sleep(60)::text) TO STDOUT"
    child = subprocess.Popen(
        [sys.executable, "-c", _INTERRUPTED_COPY, json.dumps(conninfo), copy],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def sleeping() -> None:
        # The first row has gone out (it fills the server's send buffer) and the COPY sleeps.
        processes.wait_for("the COPY to sleep", lambda: _backends(dbname, app, "wait_event = 'PgSleep'"))

    stdout, stderr = processes.interrupt(child, signal.SIGINT, sleeping, timeout=30)
    assert child.returncode == 0 and stdout.strip() == "interrupted", stderr


# ---- text that is not UTF-8 ---------------------------------------------------------------------


# A client_encoding other than UTF8 (a project's OPTIONS may set one): the server converts its text
# to it, and "é" arrives as the byte 0xe9, which is not UTF-8.
BAD = "'bad ' || chr(233) || ' byte'"


def test_server_text_that_is_not_utf8_is_reported_not_raised(loop):
    # An error, a notice and a failed setup statement whose text is not UTF-8: each is reported
    # (the byte replaced), where each raised UnicodeDecodeError and lost the run's results.
    _dbname, _app, conninfo = loop
    conninfo = {**conninfo, "client_encoding": "LATIN1"}
    notices = []
    out = _core.run_parallel(
        conninfo,
        [f"DO $$ BEGIN RAISE EXCEPTION '%', {BAD}; END $$", f"DO $$ BEGIN RAISE NOTICE '%', {BAD}; END $$"],
        [[], []],
        None,
        1,
        on_notice=lambda k, severity, message: notices.append((k, message)),
    )
    assert out[0][0] == "failed" and out[0][2]["message"] == "bad \ufffd byte", out
    assert out[1][0] == "ok", out
    assert notices == [(1, "bad \ufffd byte")]
    with pytest.raises(DatabaseError, match="bad \ufffd byte"):
        _core.run_parallel(
            conninfo, ["SELECT 1"], [[]], None, 1, setup=f"DO $$ BEGIN RAISE EXCEPTION '%', {BAD}; END $$"
        )


# ---- functions of the user's named like the catalog's ----------------------------------------------

# Function-call syntax the grammar itself sends to pg_catalog (POSITION(a IN b)).
_SYNTAX = {"position"}


def _core_query_texts() -> dict[str, str]:
    texts = {}
    for name in _core.query_names():
        for kwargs in ({}, {"table": "public.t"}, {"ms": 5}, {"schema": "s"}, {"tables": ["public.t"]}):
            try:
                texts[name] = _core.query_sql(name, **kwargs)
                break
            except (TypeError, ValueError):
                continue
    for name in ("catalog_sql", "populated_sql", "lock_holders_sql", "aside_sql", "aside_relations_sql"):
        texts[name] = getattr(_core, name)()
    texts["freshness_sql"], texts["freshness_sql(exact)"] = (
        _core.freshness_sql(False),
        _core.freshness_sql(True),
    )
    return texts


def test_every_catalog_function_the_core_calls_is_schema_qualified(transactional_db):
    # An unqualified call resolves through the search_path, and a function of the user's with the
    # exact argument types (public.unnest(text[])) wins over pg_catalog's polymorphic one even
    # when pg_catalog comes first. Every name of a pg_catalog function called as name( ... ).
    import re

    catalog = {
        r[0]
        for r in catalog_rows(
            "SELECT proname::text FROM pg_proc WHERE pronamespace = 'pg_catalog'::regnamespace"
        )
    }
    texts = _core_query_texts()
    assert len(texts) > 40
    found = {}
    for name, sql in texts.items():
        sql = re.sub(r"'(?:[^']|'')*'", "''", sql)  # literals: never calls
        calls = {m.group(1).lower() for m in re.finditer(r'(?<![.\w"$])([A-Za-z_]\w*)\s*\(', sql)}
        if bad := sorted((calls & catalog) - _SYNTAX):
            found[name] = bad
    assert found == {}


def test_a_users_unnest_of_text_arrays_does_not_change_what_the_core_reads(transactional_db):
    execute("CREATE MATERIALIZED VIEW srv_read AS SELECT 1 AS a")
    execute(
        "CREATE FUNCTION public.unnest(text[]) RETURNS SETOF text LANGUAGE sql AS $$ SELECT 'nothing'::text $$"
    )
    with connection.cursor() as cur:
        cur.execute(_core.aside_relations_sql(), {"names": ["public.srv_read"]})
        assert [r[:3] for r in cur.fetchall()] == [("public", "srv_read", "m")]
        cur.execute(_core.query_sql("database_checks"), [["public.srv_read"]])
        assert cur.fetchall() == [("column", 1, "a", None)]


# ---- objects with hostile names, through the loop's guard and lock-holder queries -----------------

HOSTILE_NAMES = [
    'it\'s "quoted"',
    "dots.in.the.name",
    "back\\slash\\",
    "select",
    "ünïcödé ☃ view",
    "x" * 63,
    "é" * 31,  # 62 bytes
    " leading and trailing ",
    "semi; DROP TABLE canary; --",
]


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=range(len(HOSTILE_NAMES)))
def test_a_hostile_name_is_refreshed_and_its_lock_holders_named(loop, name, request):
    _dbname, _app, conninfo = loop
    qualified = _core.qualified_name("public", name)
    execute("CREATE TABLE IF NOT EXISTS canary (id int)")
    execute(f"CREATE MATERIALIZED VIEW {qualified} AS SELECT 1 AS a")
    request.addfinalizer(lambda: execute(f"DROP MATERIALIZED VIEW {qualified}"))
    statement = _core.refresh_sql(qualified)
    guarded = {"guard": [qualified], "lock_retries": 0, "last_lock_timeout_ms": 100}
    with transaction.atomic():
        execute(f"SELECT * FROM {qualified}")  # ACCESS SHARE: the plain REFRESH waits, then fails
        mine = catalog_rows("SELECT pg_backend_pid()")[0][0]
        ((state, _, error),) = _core.run_parallel(conninfo, [statement], [[]], None, 1, **guarded)
    assert state == "failed" and error["sqlstate"] == "55P03", error
    assert [h["pid"] for h in error["holders"]] == [mine], error
    assert _core.run_parallel(conninfo, [statement], [[]], None, 1, **guarded)[0][0] == "ok"
    assert catalog_rows("SELECT count(*) FROM canary") == [(0,)]


# ---- a big graph, and a cycle the server was made to accept -----------------------------------------

GRAPH_NODES = 5000


@pytest.fixture
def graph_schema(transactional_db):
    execute("CREATE SCHEMA srv_graph; CREATE TABLE srv_graph.t (a int)")
    yield "srv_graph"
    # The cycle broken, the chain dropped from its end: DROP ... CASCADE of a chain this deep
    # exceeds the server's stack depth.
    execute("CREATE OR REPLACE VIEW srv_graph.v0 AS SELECT a FROM srv_graph.t")
    for end in range(GRAPH_NODES, 0, -500):  # a transaction's locks are bounded
        execute("; ".join(f"DROP VIEW IF EXISTS srv_graph.v{i}" for i in reversed(range(end - 500, end))))
    execute("DROP SCHEMA srv_graph CASCADE")


def _catalog(schema: str) -> list[tuple]:
    params = {"decl_schemas": [], "decl_names": [], "schemas": [schema], "restore": False}
    with connection.cursor() as cur:
        cur.execute(_core.catalog_sql(), params)
        return [tuple(r) for r in cur.fetchall()]


def test_a_chain_of_5000_views_and_a_cycle_made_by_create_or_replace(graph_schema):
    # A chain 5,000 deep, each view reading the one before: read from the catalog and planned
    # without recursion in C. Then the first is replaced to read the last: PostgreSQL accepts the
    # cycle, the catalog query ends (UNION, no depth), and the plan refuses it naming the views.
    execute(
        "; ".join(
            ["CREATE VIEW srv_graph.v0 AS SELECT a FROM srv_graph.t"]
            + [
                f"CREATE VIEW srv_graph.v{i} AS SELECT a FROM srv_graph.v{i - 1}"
                for i in range(1, GRAPH_NODES)
            ]
        )
    )
    rows = _catalog(graph_schema)
    assert sum(r[2] != "S" for r in rows) >= GRAPH_NODES
    assert _core.plan([], rows)["actions"] == []
    last = GRAPH_NODES - 1
    execute(
        f"CREATE OR REPLACE VIEW srv_graph.v0 AS SELECT a FROM srv_graph.t "
        f"UNION ALL SELECT a FROM srv_graph.v{last} WHERE false"
    )
    with pytest.raises(CycleError) as raised:
        _core.plan([], _catalog(graph_schema))
    assert f"srv_graph.v{last}" in str(raised.value) and "srv_graph.v0" in str(raised.value)


def test_lock_holders_are_those_of_this_database(loop):
    # A database made from this one as its template has the same relation oids: a session there
    # holding a lock on its copy of the view is no holder of ours, and was named as one.
    dbname, _app, conninfo = loop
    execute("CREATE MATERIALIZED VIEW srv_twin AS SELECT 1 AS a")
    twin = f"{dbname}_twin"[:63]
    psycopg_compat.drop_database(twin)
    connection.close()  # a template has no other session
    psycopg_compat.query("postgres", f'CREATE DATABASE "{twin}" TEMPLATE "{dbname}"')
    other = psycopg_compat._connect(twin)
    try:
        cur = other.cursor()
        cur.execute("BEGIN")
        cur.execute("SELECT * FROM srv_twin")  # its ACCESS SHARE lock, kept open
        theirs = psycopg_compat.query(
            twin,
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND state = 'idle in transaction'",
            [twin],
        )
        assert len(theirs) == 1
        with transaction.atomic():
            execute("SELECT * FROM srv_twin")
            mine = catalog_rows("SELECT pg_backend_pid()")[0][0]
            ((state, _, error),) = _core.run_parallel(
                conninfo,
                ["REFRESH MATERIALIZED VIEW srv_twin"],
                [[]],
                None,
                1,
                guard=["srv_twin"],
                lock_retries=0,
                last_lock_timeout_ms=100,
            )
    finally:
        other.close()
        psycopg_compat.drop_database(twin)
    assert state == "failed" and error["sqlstate"] == "55P03", error
    assert [h["pid"] for h in error["holders"]] == [mine], (error, theirs)


# ---- refresh_views(jobs=N): what a terminated connection looks like to the project ------------------


@pytest.fixture
def slow_matview(transactional_db):
    """viewtest.MaterializedRelatedView replaced by one whose refresh sleeps."""
    execute(
        "ALTER MATERIALIZED VIEW viewtest_materializedrelatedview RENAME TO pgvc_saved_mrv; "
        "CREATE MATERIALIZED VIEW viewtest_materializedrelatedview AS "
        "SELECT 1 AS model_id, 1 AS id FROM pg_sleep(30) WITH NO DATA"
    )
    yield
    execute(
        "DROP MATERIALIZED VIEW viewtest_materializedrelatedview; "
        "ALTER MATERIALIZED VIEW pgvc_saved_mrv RENAME TO viewtest_materializedrelatedview"
    )


def test_refresh_views_names_the_view_whose_connection_was_terminated(slow_matview):
    from django_pgviews_c.exceptions import RefreshError
    from django_pgviews_c.refresh import refresh_views

    dbname = connection.settings_dict["NAME"]
    app = connection_params(connection)["application_name"]
    killer = Killer(
        dbname, app, "wait_event = 'PgSleep' AND strpos(query, 'viewtest_materializedrelatedview') > 0"
    )
    killer.start()
    with pytest.raises(RefreshError) as raised:
        refresh_views(using="default", jobs=2)
    killer.join()
    assert killer.error is None and killer.killed is not None
    err = raised.value
    assert list(err.failures) == ["viewtest.MaterializedRelatedView"], str(err)
    assert "terminating connection" in err.failures["viewtest.MaterializedRelatedView"]
    assert "57P01" in err.failures["viewtest.MaterializedRelatedView"]
    assert err.skipped == ["viewtest.DependantMaterializedView"]
    _none_left(dbname, app)


def test_ctrl_c_while_the_server_never_answers_the_connect():
    # A server that takes the TCP connection and says nothing: the connect waits in poll() with
    # the GIL released and signals checked, so Ctrl-C ends it long before connect_timeout.
    import socket

    with socket.create_server(("127.0.0.1", 0)) as silent:
        conninfo = {
            "host": "127.0.0.1",
            "port": str(silent.getsockname()[1]),
            "dbname": "x",
            "connect_timeout": "600",
        }
        child = subprocess.Popen(
            [sys.executable, "-c", _INTERRUPTED_COPY, json.dumps(conninfo), "SELECT 1"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            silent.settimeout(WAIT)
            accepted, _ = silent.accept()  # the child is connecting
            child.send_signal(signal.SIGINT)
            stdout, stderr = child.communicate(timeout=30)
            accepted.close()
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
    assert child.returncode == 0 and stdout.strip() == "interrupted", stderr
