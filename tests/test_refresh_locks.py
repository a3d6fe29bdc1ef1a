"""A plain REFRESH takes ACCESS EXCLUSIVE. Waiting for it must not queue readers behind it: each
try waits briefly, steps out and retries; the last, bounded try ends with an error naming the
session that holds the lock. Both on Django's connection and in the parallel loop."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, connections
from django.test import override_settings

from django_pgviews_c.exceptions import DatabaseError, RefreshError
from django_pgviews_c.refresh import refresh_views
from tests import psycopg_compat
from tests.helpers import ViewSet, catalog_rows, execute, in_thread
from tests.processes import waiting_pid


@pytest.fixture
def views(transactional_db):
    execute("CREATE TABLE t_locksrc (v int); INSERT INTO t_locksrc VALUES (1)")
    vs = ViewSet()
    a = vs.view("LockA", "SELECT v FROM t_locksrc", materialized=True)
    b = vs.view("LockB", "SELECT count(*)::int AS n FROM t_locksrc", materialized=True)
    vs.sync()
    execute("INSERT INTO t_locksrc VALUES (2)")
    yield a, b
    execute("DROP TABLE IF EXISTS t_locksrc CASCADE")


class Reader:
    """Another session running ``sql`` inside an open transaction: by default it reads t_locka,
    so it holds ACCESS SHARE there."""

    def __init__(self, app: str, sql: str = "SELECT count(*) FROM t_locka") -> None:
        self.conn = psycopg_compat._connect(connection.settings_dict["NAME"])
        self.conn.autocommit = False
        cur = self.conn.cursor()
        cur.execute(f"SET application_name = '{app}'")
        cur.execute(sql)
        self.pid = self.conn.info.backend_pid if hasattr(self.conn, "info") else self.conn.get_backend_pid()

    def release(self) -> None:
        self.conn.rollback()
        self.conn.close()


def _wait_for_lock_request(dbname: str) -> None:
    """Until a session waits for ACCESS EXCLUSIVE on t_locka (seen in pg_locks)."""
    sql = (
        "SELECT count(*) FROM pg_locks WHERE relation = 't_locka'::regclass AND NOT granted "
        "AND mode = 'AccessExclusiveLock'"
    )
    deadline = time.monotonic() + 20
    while psycopg_compat.query(dbname, sql) == [(0,)]:
        assert time.monotonic() < deadline, "the refresh never asked for its lock"
        time.sleep(0.02)


def _later_reader_gets_through(dbname: str) -> list[tuple]:
    # Without the guard this reader queues behind the refresh's lock request until the first
    # reader ends (never, here): its own lock_timeout would fire.
    return psycopg_compat.query(dbname, "SELECT count(*) FROM t_locka", setup="SET lock_timeout = '20s'")


@pytest.mark.parametrize("jobs", [1, 2])
def test_readers_do_not_queue_behind_a_waiting_refresh(views, jobs):
    dbname = connection.settings_dict["NAME"]
    reader = Reader("pgvc-lock-reader")
    outcome: dict = {}

    def refresh() -> None:
        try:
            outcome["result"] = refresh_views(list(views), jobs=jobs)
        except BaseException as exc:  # noqa: BLE001 - reported below
            outcome["error"] = exc
        finally:
            connections.close_all()

    with override_settings(PGVIEWS_REFRESH_RETRIES=1000):
        thread = threading.Thread(target=refresh)
        thread.start()
        try:
            _wait_for_lock_request(dbname)
            assert _later_reader_gets_through(dbname) == [(1,)]
        finally:
            reader.release()
            thread.join(60)
    assert "error" not in outcome, outcome.get("error")
    assert sorted(outcome["result"].refreshed) == ["viewtest.LockA", "viewtest.LockB"]
    assert catalog_rows("SELECT count(*) FROM t_locka") == [(2,)]


def _refresh_behind_reader(views, jobs: int, app: str, retries: int) -> tuple[RefreshError, int]:
    """refresh_views (300 ms lock timeouts) while a Reader named app holds t_locka: the
    RefreshError it raises, and the Reader's pid."""
    reader = Reader(app)
    try:
        with (
            override_settings(PGVIEWS_REFRESH_RETRIES=retries, PGVIEWS_REFRESH_LOCK_TIMEOUT_MS=300),
            pytest.raises(RefreshError) as info,
        ):
            refresh_views(list(views), jobs=jobs)
    finally:
        reader.release()
    return info.value, reader.pid


@pytest.mark.parametrize("jobs", [1, 2])
def test_the_last_try_is_bounded_and_names_the_holder(views, jobs):
    err, pid = _refresh_behind_reader(views, jobs, "pgvc-lock-holder", retries=2)
    assert list(err.failures) == ["viewtest.LockA"]
    text = err.failures["viewtest.LockA"]
    assert f"pid {pid}" in text and "pgvc-lock-holder" in text and "55P03" in text
    # The other view was refreshed; the blocked one was not.
    assert catalog_rows("SELECT n FROM t_lockb") == [(2,)]
    assert catalog_rows("SELECT count(*) FROM t_locka") == [(1,)]


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_holder_without_application_name_is_named_by_its_backend_type(views, jobs):
    """As an autovacuum worker (``autovacuum worker``) would be: on Django's connection and in
    the C loop alike, as the sync's lock waits name it."""
    err, pid = _refresh_behind_reader(views, jobs, "", retries=0)
    text = err.failures["viewtest.LockA"]
    assert f"held by pid {pid} (client backend), idle in transaction: SELECT count(*)" in text, text
    assert "55P03" in text


def test_the_users_shorter_lock_timeout_wins(views):
    # The session's own lock_timeout (1 ms) is shorter than the guard's: each try uses it.
    a, _ = views
    reader = Reader("pgvc-lock-user")
    try:
        with connection.cursor() as cur:
            cur.execute("SET lock_timeout = '1ms'")
        with (
            override_settings(PGVIEWS_REFRESH_RETRIES=0, PGVIEWS_REFRESH_LOCK_TIMEOUT_MS=600000),
            pytest.raises(DatabaseError),
        ):
            a.refresh()
        with connection.cursor() as cur:
            cur.execute("SHOW lock_timeout")
            assert cur.fetchone() == ("1ms",)  # and it is left as it was
    finally:
        reader.release()
        with connection.cursor() as cur:
            cur.execute("RESET lock_timeout")


def test_model_refresh_says_its_wait_in_the_log_naming_the_holder(views):
    """Model.refresh() has no output: its wait goes to the django_pgviews_c.refresh logger at
    INFO, after a second, naming the holder; once the holder lets go it refreshes."""
    import logging
    import queue

    a, _ = views
    said: queue.Queue[str] = queue.Queue()

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            said.put(record.getMessage())

    log = logging.getLogger("django_pgviews_c.refresh")
    handler, level = Catch(), log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    reader = Reader("pgvc-lock-log")
    thread, outcome = in_thread(a.refresh)
    try:
        line = said.get(timeout=60)
    finally:
        reader.release()
        thread.join(60)
        log.removeHandler(handler)
        log.setLevel(level)
    assert line.startswith("viewtest.LockA: waiting ") and "for a lock to refresh it" in line, line
    assert f"held by pid {reader.pid} (pgvc-lock-log)" in line, line
    assert "error" not in outcome, outcome
    assert catalog_rows("SELECT count(*) FROM t_locka") == [(2,)]


def source_locker(app: str) -> Reader:
    """Another session holding ACCESS EXCLUSIVE on the table the views read, in an open
    transaction, as a data load that truncates it does: every refresh of them waits."""
    return Reader(app, "LOCK TABLE t_locksrc IN ACCESS EXCLUSIVE MODE")


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_lock_on_a_source_table_names_its_holder_and_the_table(views, jobs):
    """The refresh waits for ACCESS SHARE on what its query reads, not for the view: the error
    names the session holding the source table and the table (it said that no session held a
    lock any more)."""
    locker = source_locker("pgvc-source-loader")
    try:
        with (
            override_settings(PGVIEWS_REFRESH_RETRIES=0, PGVIEWS_REFRESH_LOCK_TIMEOUT_MS=300),
            pytest.raises(RefreshError) as info,
        ):
            refresh_views(list(views), jobs=jobs)
    finally:
        locker.release()
    text = info.value.failures["viewtest.LockA"]
    assert f"pid {locker.pid} (pgvc-source-loader)" in text, text
    assert "AccessExclusiveLock on t_locksrc" in text, text
    assert "no session holds" not in text, text


@pytest.mark.parametrize("holds", ["the view", "a source table"])
def test_model_refresh_is_guarded_and_names_the_holder(views, holds):
    """Model.refresh() waits in the same tries, and its error names the holder: of a lock on the
    view, or of ACCESS EXCLUSIVE on a table it reads (with the table)."""
    a, _ = views
    app = "pgvc-lock-model" if holds == "the view" else "pgvc-source-model"
    holder = Reader(app) if holds == "the view" else source_locker(app)
    try:
        with (
            override_settings(PGVIEWS_REFRESH_RETRIES=1, PGVIEWS_REFRESH_LOCK_TIMEOUT_MS=300),
            pytest.raises(DatabaseError) as info,
        ):
            a.refresh()
    finally:
        holder.release()
    text = str(info.value)
    assert f"pid {holder.pid} ({app})" in text and "viewtest.LockA" in text, text
    assert "was not refreshed" in text and "no session holds" not in text, text
    if holds == "a source table":
        assert "AccessExclusiveLock on t_locksrc" in text, text


@pytest.mark.parametrize("jobs", [None, 1, 2])
def test_a_concurrent_refresh_behind_a_lock_on_a_source_table_gives_up_naming_it(views, jobs):
    """REFRESH ... CONCURRENTLY takes EXCLUSIVE on the view, which nothing else holds here, then
    waits for ACCESS SHARE on the source table a data load holds: it gives up as a plain refresh
    does, naming the holder, instead of waiting for as long as the load runs without a word.
    jobs=None: Model.refresh(); 1: refresh_views() on Django's connection; 2: the C loop."""
    vs = ViewSet()
    c = vs.view("LockC", "SELECT v FROM t_locksrc", materialized=True, concurrent_index="v")
    vs.sync()
    locker = source_locker("pgvc-source-concurrent")

    def refresh() -> None:
        with override_settings(PGVIEWS_REFRESH_RETRIES=0, PGVIEWS_REFRESH_LOCK_TIMEOUT_MS=300):
            if jobs is None:
                c.refresh(concurrently=True)
            else:
                refresh_views([c], concurrently=True, jobs=jobs)

    thread, outcome = in_thread(refresh)
    thread.join(30)
    locker.release()
    thread.join(30)
    assert "error" in outcome, "the concurrent refresh waited behind the lock for more than 30 s"
    text = str(outcome["error"].failures["viewtest.LockC"] if jobs else outcome["error"])
    assert f"pid {locker.pid} (pgvc-source-concurrent)" in text, text
    assert "AccessExclusiveLock on t_locksrc" in text, text


@pytest.mark.parametrize("jobs", [0, 1, 2])
def test_a_session_holding_several_locks_on_the_view_is_named_once(views, jobs):
    """A session that refreshed the view concurrently in a transaction still open (a save whose
    post_save receiver refreshes it, inside a longer transaction) holds several locks on it. The
    error names the session once, with every mode (it named it once per lock, each time with
    its query cut at 60 characters). jobs=0: Model.refresh()."""
    a, _ = views
    holder = Reader(
        "pgvc-lock-several",
        "CREATE UNIQUE INDEX t_locka_v ON t_locka (v); REFRESH MATERIALIZED VIEW CONCURRENTLY t_locka",
    )
    try:
        with (
            override_settings(PGVIEWS_REFRESH_RETRIES=0, PGVIEWS_REFRESH_LOCK_TIMEOUT_MS=300),
            pytest.raises((RefreshError, DatabaseError)) as info,
        ):
            if jobs:
                refresh_views([a], jobs=jobs)
            else:
                a.refresh()
    finally:
        holder.release()
    err = info.value
    text = err.failures["viewtest.LockA"] if isinstance(err, RefreshError) else str(err)
    assert text.count(f"pid {holder.pid}") == 1, text
    held = text.split(f"pid {holder.pid}", 1)[1].split(", holding ", 1)[1].split(" on t_locka")[0]
    modes = set(held.replace(" and ", ", ").split(", "))
    assert {"ExclusiveLock", "RowExclusiveLock", "AccessShareLock"} <= modes, text
    assert catalog_rows("SELECT count(*) FROM t_locka") == [(1,)]


@pytest.mark.parametrize("jobs", [0, 2])
def test_a_refresh_queued_behind_a_queued_access_exclusive_names_both_sessions(views, jobs, caplog):
    """Session A reads the source table in an open transaction (ACCESS SHARE, granted); session
    B asks ACCESS EXCLUSIVE on it (an ALTER TABLE) and queues behind A; the refresh's ACCESS
    SHARE queues behind B. Its wait messages and its error name B, queued for the lock, and A,
    the session B waits behind (they said that no session held such a lock any more).
    jobs=0: Model.refresh(); 2: the C loop."""
    a, _ = views
    dbname = connection.settings_dict["NAME"]
    reader = Reader("pgvc-queue-reader", "SELECT count(*) FROM t_locksrc")
    alterer = Reader("pgvc-queue-alter", "SELECT 1")
    said: list[str] = []
    try:
        queued, _ = in_thread(
            lambda: alterer.conn.cursor().execute("LOCK TABLE t_locksrc IN ACCESS EXCLUSIVE MODE")
        )
        assert waiting_pid(dbname, "t_locksrc") == alterer.pid
        caplog.set_level("INFO", logger="django_pgviews_c.refresh")
        with (
            override_settings(PGVIEWS_REFRESH_RETRIES=8, PGVIEWS_REFRESH_LOCK_TIMEOUT_MS=300),
            pytest.raises((RefreshError, DatabaseError)) as info,
        ):
            if jobs:
                refresh_views([a], jobs=jobs, waits=said.append)
            else:
                a.refresh()
    finally:
        reader.release()
        queued.join(30)
        alterer.release()
    err = info.value
    text = err.failures["viewtest.LockA"] if isinstance(err, RefreshError) else str(err)
    waits = said if jobs else [r.getMessage() for r in caplog.records if "waiting" in r.getMessage()]
    assert waits, "the wait was never said"
    for message in [text, waits[-1]]:
        assert "no session holds" not in message, message
        assert f"pid {alterer.pid} (pgvc-queue-alter)" in message, message
        assert f"waiting for AccessExclusiveLock on t_locksrc behind pid {reader.pid}" in message, message
        assert f"pid {reader.pid} (pgvc-queue-reader)" in message, message
        assert "AccessShareLock on t_locksrc" in message, message
