"""The Celery task refresh_due behind PgBouncer in transaction pooling: two workers' beats at
once, one refreshes and the other stands by (the refresher lock, refresherlock.py, is held in a
transaction of its own, which transaction pooling keeps bound to its client), and a due view is
refreshed once. Real Celery workers on Redis and a real PgBouncer (tools/pgbouncer.py) in front
of the test server; tests/freshproject, its database of its own.

PgBouncer hands out its server connections in turn (server_round_robin) from a pool of two warmed
up: a worker's statements go to one and then the other, so the server connection on which a
session's lock would be taken is idle, and lent to the second worker, while the first one's
refresh waits on the other."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests import processes, psycopg_compat
from tests.test_pgbouncer import _connect as bouncer_client

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import pgbouncer  # noqa: E402

celery = pytest.importorskip(
    "celery", reason="celery is not installed in this venv (the `test` extra has it)"
)

SETTINGS = "tests.freshproject.settings"
SUFFIX = os.environ.get("PGVIEWS_DB_SUFFIX", "") + "_celerybouncer"
DB = "pgviews_c_fresh" + SUFFIX
# A Redis database and queues of this module's own: apart from other tests' workers.
BROKER = os.environ.get("PGVIEWS_CELERY_BOUNCER_BROKER", "redis://127.0.0.1:6379/11")
WAIT = 60.0
TASK = "django_pgviews_c.tasks.refresh_due"


def rows(sql: str) -> list[tuple]:
    return psycopg_compat.query(DB, sql)


def records(view: str) -> int:
    return rows(f"SELECT count(*) FROM django_pgviews_c_refresh WHERE view = 'freshapp.{view}' AND ok")[0][0]


@pytest.fixture(scope="module")
def bouncer():
    try:
        pgbouncer.find_pgbouncer()
    except pgbouncer.Unavailable as exc:
        pytest.skip(f"PgBouncer tests need pgbouncer: {exc}")
    upstream = {
        "host": os.environ.get("PGHOST", "127.0.0.1"),
        "port": os.environ.get("PGPORT", "5432"),
        "user": os.environ.get("PGUSER", "postgres"),
        "password": os.environ.get("PGPASSWORD", ""),
    }
    run = lambda *args: processes.django(*args, settings=SETTINGS, suffix=SUFFIX)  # noqa: E731
    with processes.migrated_database(DB, run):
        server = pgbouncer.PgBouncer(upstream, "transaction", pool_size=4, server_round_robin=1).start()
        try:
            yield server
        finally:
            server.stop()


def warm_up(bouncer, count: int) -> None:
    """``count`` server connections in the pool: as many clients of PgBouncer in a transaction at
    once."""
    clients = [bouncer_client(bouncer.host, bouncer.port, DB) for _ in range(count)]
    try:
        for client in clients:
            client.cursor().execute("BEGIN; SELECT 1")
        for client in clients:  # ended, not left open: PgBouncer would close its server connection
            client.cursor().execute("COMMIT")
    finally:
        for client in clients:
            client.close()


@pytest.fixture
def workers(bouncer):
    """Two workers whose Django connections go through PgBouncer, each taking the tasks of a
    queue of its own (so that each beat's task goes to its own worker, whatever the other one
    is doing): a list of (queue, Reader)."""
    env = processes.django_env(
        SETTINGS, SUFFIX, PGHOST=bouncer.host, PGPORT=str(bouncer.port), PGVIEWS_CELERY_BROKER=BROKER,
        FRESH_REFRESH_LOCK_TIMEOUT_MS="600000",
    )  # fmt: skip
    started = []
    try:
        for n in (1, 2):
            name = f"pgviews_c_bouncer{SUFFIX}_{n}"
            started.append((name, processes.Reader(processes.celery_worker(
                "tests.freshproject.celery_app", name, env, name=f"{name}@%h"))))  # fmt: skip
        for _queue, worker in started:
            worker.wait_for("ready.")
        yield started
    finally:
        for _queue, worker in started:
            processes.stop(worker.proc)


@pytest.mark.parametrize("jobs", [1, 2])
def test_two_beats_at_once_one_refreshes_the_other_stands_by(bouncer, workers, jobs):
    """``jobs`` 1: the refreshes run on the worker's Django connection; 2: on the C loop's own
    connections, through PgBouncer as well."""
    (first_queue, _first), (second_queue, _second) = workers
    # A committed write (its statistics flushed as it ends): DueEveryTime, and ReadsDue with it,
    # are stale and due (interval 0); DueHourly stale but not due, refreshed by migrate's sync.
    rows("SELECT pg_stat_force_next_flush(); INSERT INTO freshapp_reading (value) VALUES (1)")
    before = records("DueEveryTime")
    (n_before,) = rows("SELECT count(*) FROM freshapp_reading")[0]
    warm_up(bouncer, 2)
    client = celery.Celery(broker=BROKER, backend=BROKER)
    try:
        # The first beat's worker takes the refresher lock, then its refresh of DueEveryTime waits
        # behind a session holding the table it reads: the second beat comes while it works.
        with processes.holding_lock(DB, "freshapp_reading"):
            working = client.send_task(TASK, kwargs={"jobs": jobs}, queue=first_queue)
            processes.waiting_pid(DB, "freshapp_reading")
            standby = client.send_task(TASK, kwargs={"jobs": jobs}, queue=second_queue).get(timeout=WAIT)
            assert standby["standby"] is True and standby["refreshed"] == [], standby
        outcome = working.get(timeout=WAIT)
        assert outcome["standby"] is False and outcome["failed"] == {}, outcome
        assert sorted(outcome["refreshed"]) == ["freshapp.DueEveryTime", "freshapp.ReadsDue"], outcome
        assert records("DueEveryTime") == before + 1
        # The lock was let go: the second worker now works, and finds nothing due.
        again = client.send_task(TASK, queue=second_queue).get(timeout=WAIT)
        assert again["standby"] is False and again["refreshed"] == [], again
        assert records("DueEveryTime") == before + 1
        assert rows("SELECT n FROM freshapp_dueeverytime") == [(n_before,)]
    finally:
        client.close()
