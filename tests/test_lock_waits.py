"""Lock waits of a sync are bounded and explained: a wait of more than a second says who holds
the lock (at the default verbosity), the user's own lock_timeout is respected, and a swap that
cannot have its locks rolls the whole sync back with an error naming the holder."""

from __future__ import annotations

import json
import os
import queue
from pathlib import Path

import pytest
from django.db import connection
from django.test import override_settings

from django_pgviews_c.exceptions import LockNotAvailableError, QueryCanceledError
from django_pgviews_c.sync import ADVISORY_LOCK_KEY, Syncer
from tests import processes, psycopg_compat
from tests.helpers import ViewSet, catalog_rows, execute, in_thread, leftovers, snapshot

HOLDER_APP = "pgvc-test-holder"


@pytest.fixture
def committed_src(transactional_db):
    execute("CREATE TABLE t_src (id int PRIMARY KEY, v int); INSERT INTO t_src VALUES (1, 10), (2, 20)")
    yield
    execute("DROP TABLE IF EXISTS t_src CASCADE; DROP SCHEMA IF EXISTS _pgviews_c_build CASCADE")


@pytest.fixture
def src_in_transaction(db):
    execute("CREATE TABLE t_src (id int PRIMARY KEY, v int); INSERT INTO t_src VALUES (1, 10), (2, 20)")


class Holder:
    """A second session, as another deploy or a long report would be."""

    def __init__(self) -> None:
        self.conn = psycopg_compat._connect(connection.settings_dict["NAME"])
        self.cur = self.conn.cursor()
        self.cur.execute(f"SET application_name = '{HOLDER_APP}'")
        self.cur.execute("BEGIN")
        self.cur.execute("SELECT pg_backend_pid()")
        self.pid = self.cur.fetchone()[0]

    def release(self) -> None:
        self.cur.execute("ROLLBACK")
        self.conn.close()


def _sync_in_thread(vs: ViewSet, **options):
    """A sync of ``vs`` in a thread (in_thread), its progress lines in a queue that ends with
    "<done>" once the thread's connections are closed."""
    lines: queue.Queue[str] = queue.Queue()
    chosen = list(vs.models.values())

    def sync():
        return Syncer(
            connection, chosen, {m._meta.label for m in chosen}, progress=lines.put, **options
        ).run()

    thread, outcome = in_thread(sync, then=lambda: lines.put("<done>"))
    return thread, lines, outcome


def _line_with(lines: queue.Queue, text: str) -> str:
    while True:
        line = lines.get(timeout=60)
        assert line != "<done>", f"the sync ended without saying {text!r}"
        if text in line:
            return line


def test_a_second_sync_says_whose_sync_it_waits_for(committed_src):
    vs = ViewSet()
    vs.view("A", "SELECT id, v FROM t_src")
    holder = Holder()
    try:
        holder.cur.execute("SELECT pg_advisory_xact_lock(%s)", [ADVISORY_LOCK_KEY])
        thread, lines, outcome = _sync_in_thread(vs)
        line = _line_with(lines, "waiting for another sync")
        assert f"pid {holder.pid}" in line and HOLDER_APP in line, line
        assert "idle in transaction" in line and "pg_advisory_xact_lock" in line, line
        assert catalog_rows("SELECT to_regclass('t_a') IS NULL") == [(True,)]
    finally:
        holder.release()
    thread.join(60)
    assert "error" not in outcome, outcome
    assert outcome["result"].statuses["viewtest.A"] == "CREATED"


def _changed_matview(vs: ViewSet) -> None:
    vs.view("M", "SELECT id, v FROM t_src", materialized=True)
    vs.sync()
    vs.view("M", "SELECT id, v * 2 AS v FROM t_src", materialized=True)


def test_a_swap_waiting_on_a_reader_names_it_then_goes_on(committed_src):
    vs = ViewSet()
    _changed_matview(vs)
    holder = Holder()
    try:
        holder.cur.execute("SELECT count(*) FROM t_m")
        thread, lines, outcome = _sync_in_thread(vs)
        line = _line_with(lines, "waiting")
        assert "for locks to swap in the new views" in line, line
        assert f"pid {holder.pid}" in line and HOLDER_APP in line and "AccessShareLock on t_m" in line, line
    finally:
        holder.release()
    thread.join(60)
    assert "error" not in outcome, outcome
    assert catalog_rows("SELECT sum(v) FROM t_m") == [(60,)]
    assert leftovers() == []


@override_settings(PGVIEWS_SWAP_RETRIES=2, PGVIEWS_SWAP_LOCK_TIMEOUT_MS=300)
def test_a_swap_that_cannot_have_its_locks_rolls_back_naming_the_holder(committed_src):
    vs = ViewSet()
    _changed_matview(vs)
    before = snapshot()
    holder = Holder()
    try:
        holder.cur.execute("SELECT count(*) FROM t_m")
        thread, lines, outcome = _sync_in_thread(vs)
        thread.join(60)
    finally:
        holder.release()
    err = outcome.get("error")
    assert isinstance(err, LockNotAvailableError), outcome
    text = str(err)
    assert f"pid {holder.pid}" in text and HOLDER_APP in text and "t_m" in text, text
    assert "3 attempts" in text and "300 ms" in text, text
    assert "The sync was rolled back; nothing was changed." in text, text
    assert snapshot() == before
    assert leftovers() == []


def test_the_users_lock_timeout_bounds_every_attempt(committed_src):
    """A session lock_timeout (as OPTIONS or the role would set it) shorter than the swap's own
    bound is what the last attempt waits: never lock_timeout = 0."""
    vs = ViewSet()
    _changed_matview(vs)
    before = snapshot()
    holder = Holder()
    try:
        holder.cur.execute("SELECT count(*) FROM t_m")

        def sync():
            with connection.cursor() as cur:
                cur.execute("SET lock_timeout = '150ms'")
            with override_settings(PGVIEWS_SWAP_RETRIES=1, PGVIEWS_SWAP_LOCK_TIMEOUT_MS=600000):
                chosen = list(vs.models.values())
                Syncer(connection, chosen, {m._meta.label for m in chosen}).run()

        thread, seen = in_thread(sync)
        thread.join(60)
        assert not thread.is_alive()
    finally:
        holder.release()
    assert isinstance(seen.get("error"), LockNotAvailableError), seen
    assert "the last waiting 150 ms" in str(seen["error"])
    assert snapshot() == before


# -- lock_timeout given in OPTIONS, in a real process ------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent
PROC_SUFFIX = os.environ.get("PGVIEWS_DB_SUFFIX", "") + "_locks"
PROC_DB = "pgviews_c" + PROC_SUFFIX
MATVIEW = "viewtest_materializedrelatedview"


def _django(*args: str, default: dict | None = None, settings: dict | None = None):
    return processes.django(
        *args,
        settings="tests.execproject.settings",
        suffix=PROC_SUFFIX,
        PGVIEWS_TEST_DEFAULT=json.dumps(default or {}),
        PGVIEWS_TEST_SETTINGS=json.dumps(settings or {}),
    )


@pytest.fixture(scope="module")
def process_db():
    with processes.migrated_database(PROC_DB, _django):
        yield


def test_lock_timeout_in_options_bounds_the_swap(process_db):
    # A materialized view changed by hand: the sync rebuilds it beside and swaps it in.
    psycopg_compat.query(
        PROC_DB,
        f"DROP MATERIALIZED VIEW {MATVIEW} CASCADE; CREATE MATERIALIZED VIEW {MATVIEW} AS "
        f"SELECT id AS model_id, id FROM viewtest_testmodel WHERE false",
    )
    before = psycopg_compat.query(PROC_DB, "SELECT oid::bigint, relname::text FROM pg_class ORDER BY 2")
    holder = psycopg_compat._connect(PROC_DB)
    try:
        cur = holder.cursor()
        cur.execute(f"SET application_name = '{HOLDER_APP}'; BEGIN; SELECT count(*) FROM {MATVIEW}")
        done = _django(
            "sync_pgviews",
            default={"OPTIONS": {"options": "-c lock_timeout=250"}},
            settings={"PGVIEWS_SWAP_RETRIES": 1, "PGVIEWS_SWAP_LOCK_TIMEOUT_MS": 600000},
        )
    finally:
        holder.close()
    assert done.returncode == 1, done.stdout
    assert "the last waiting 250 ms" in done.stderr and HOLDER_APP in done.stderr, done.stderr
    assert "nothing was changed" in done.stderr
    assert (
        psycopg_compat.query(PROC_DB, "SELECT oid::bigint, relname::text FROM pg_class ORDER BY 2") == before
    )
    assert _django("sync_pgviews", "-v", "0").returncode == 0


def test_statement_timeout_is_respected_and_named(src_in_transaction):
    """The session's statement_timeout bounds a build; the sync says so, naming the view, and
    does not run the statement a second time to find out which one it was."""
    execute("CREATE SEQUENCE s_runs")
    vs = ViewSet()
    vs.view(
        "Slow", "SELECT id, v, nextval('s_runs') AS run FROM t_src, pg_sleep(5) AS pause", materialized=True
    )
    before = snapshot()
    execute("SET statement_timeout = '300ms'")
    try:
        with pytest.raises(QueryCanceledError) as info:
            vs.sync()
    finally:
        execute("RESET statement_timeout")
    text = str(info.value)
    assert "viewtest.Slow" in text and "statement timeout" in text and "statement_timeout" in text, text
    assert snapshot() == before
