"""What the size of the database costs each catalog query the product sends.

Two databases hold the same handful of views and materialized views (a plain view over a join, a
materialized view over it, one over that, one grouped by a primary key, one over a partitioned
table) and the same exact-mode trigger; the large one has BENCH_TABLES (default 2,000) more
tables, each with a primary key and a foreign key: ~10,400 pg_class rows and 8,000 pg_trigger
rows, against ~420 and a handful. Each query runs as the product sends it (text with its values
bound by the client: a plan for those values; the history functions' static SQL as their
generic plans), BENCH_REPS times (default 21). Printed for both sizes: the median time the
client waits (planning and the round trip included) and the server's least execution time
(EXPLAIN ANALYZE, TIMING OFF: on a busy machine the run least disturbed by other work), then every scan of a table-sized
catalog that reads it whole (not through an index) in the large database, as auto_explain saw
it, nested statements of the functions included. Each record-function call follows a capture
in its transaction, as Model.refresh() sends them.

    python benchmarks/catalog_scale.py            # the server named by PG* variables
    BENCH_REBUILD=1 python benchmarks/catalog_scale.py

Environment: PGHOST/PGPORT/PGUSER, BENCH_REPS, BENCH_TABLES, BENCH_REBUILD (drop and build the
two databases again; they are kept between runs otherwise), PGVIEWS_DB_SUFFIX (keeps the
databases apart from other runs on the same server). docs/performance.md has the numbers.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Iterator
from typing import Any

import psycopg

from django_pgviews_c import _core

REPS = int(os.environ.get("BENCH_REPS", "21"))
TABLES = int(os.environ.get("BENCH_TABLES", "2000"))
SUFFIX = os.environ.get("PGVIEWS_DB_SUFFIX", "")
BATCH = 400  # tables per transaction: each holds a lock until commit (max_locks_per_transaction)
HISTORY = "django_pgviews_c_refresh"
COUNTERS = "django_pgviews_c_exact"
TABLE_SIZED = {"pg_class", "pg_attribute", "pg_depend", "pg_index", "pg_constraint", "pg_trigger",
               "pg_proc", "pg_description", "pg_rewrite", "pg_inherits"}  # fmt: skip

VIEWS = """
CREATE TABLE base_a (id int PRIMARY KEY, v int, grp int);
CREATE TABLE base_b (id int PRIMARY KEY, w int);
CREATE TABLE part_p (id int, v int) PARTITION BY RANGE (id);
CREATE TABLE part_p1 PARTITION OF part_p FOR VALUES FROM (0) TO (100);
CREATE TABLE part_p2 PARTITION OF part_p FOR VALUES FROM (100) TO (200);
INSERT INTO base_a SELECT g, g, g % 10 FROM generate_series(1, 100) g;
INSERT INTO base_b SELECT g, g FROM generate_series(1, 100) g;
CREATE VIEW v_join AS SELECT a.id, a.v + b.w AS v, a.grp FROM base_a a JOIN base_b b USING (id);
CREATE MATERIALIZED VIEW m_mid AS SELECT id, v FROM v_join;
CREATE UNIQUE INDEX m_mid_id ON m_mid (id);
CREATE MATERIALIZED VIEW m_top AS SELECT count(*) AS n FROM m_mid;
CREATE MATERIALIZED VIEW m_grp AS SELECT a.grp, count(*) FROM base_a a GROUP BY a.id;
CREATE MATERIALIZED VIEW m_part AS SELECT sum(v) FROM part_p;
COMMENT ON VIEW v_join IS 'a plain view';
"""
HISTORY_DDL = f"""
CREATE TABLE {HISTORY} (id serial PRIMARY KEY, view varchar(255) NOT NULL,
  db_table varchar(255) NOT NULL, started_at timestamptz NOT NULL, duration double precision NOT NULL,
  rows bigint, concurrent boolean NOT NULL, plain_reason varchar(40) NOT NULL, ok boolean NOT NULL,
  sqlstate varchar(5) NOT NULL, message text NOT NULL, sources jsonb);
CREATE INDEX pgviews_c_refresh_view ON {HISTORY} (view, id DESC);
CREATE TABLE {COUNTERS} (rel bigint PRIMARY KEY, writes bigint NOT NULL);
"""


def connect(dbname: str) -> psycopg.Connection[Any]:
    return psycopg.connect(dbname=dbname)


def build(dbname: str, tables: int) -> None:
    with connect("postgres") as admin:
        admin.autocommit = True
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [dbname]).fetchone()
        if exists and not os.environ.get("BENCH_REBUILD"):
            return
        admin.execute(f"DROP DATABASE IF EXISTS {dbname}")
        admin.execute(f"CREATE DATABASE {dbname}")
    with connect(dbname) as conn:
        conn.execute(VIEWS)
        conn.execute(HISTORY_DDL)
        conn.execute(_core.query_sql("exact_function", schema="public"))
        conn.execute(_core.query_sql("history_functions", schema="public", table=f"public.{COUNTERS}"))
        conn.execute(_core.query_sql("history_run_function", schema="public"))
        conn.execute(_core.query_sql("exact_trigger", table="base_a", schema="public"))
        conn.commit()
        for start in range(0, tables, BATCH):
            for i in range(start, min(start + BATCH, tables)):
                conn.execute(
                    f"CREATE TABLE filler_{i} (id serial PRIMARY KEY, name text, ref int REFERENCES base_b)"
                )
            conn.commit()
    with connect(dbname) as conn:
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")


def cases() -> Iterator[tuple[str, str, Any]]:
    """(label, text, parameters) of each query, as the product sends it."""
    names = ["v_join", "m_mid", "m_top", "m_grp", "m_part"]
    mats = names[1:]
    sync = {"decl_schemas": [None] * len(names), "decl_names": names, "schemas": []}
    yield "sync catalog", _core.catalog_sql(), {**sync, "restore": False}
    yield "sync catalog (restore)", _core.catalog_sql(), {**sync, "restore": True}
    yield "exact_state", _core.query_sql("exact_state"), [mats]
    yield "staleness check", _core.freshness_sql(), [mats]
    yield "staleness check (exact)", _core.freshness_sql(exact=True), [mats]
    yield "capture function", _core.query_sql("history_capture_call"), ["m_mid", False]
    yield "capture function (exact)", _core.query_sql("history_capture_call"), ["m_mid", True]
    record = ["app.M", "m_mid", "2026-01-01", "m_mid", 10**9, False, "", 10, 50]
    yield "record function", _core.query_sql("history_record_call"), record
    yield "record_run function", _core.query_sql("history_record_run_call"), [
        ["app.M"], ["m_mid"], ["2026-01-01"], [0.1], ["m_mid"], [False], [""], [True], [""], [""], [None],
        10**9, 10, 50,
    ]  # fmt: skip
    yield "set-aside (table)", _core.aside_sql(), {"tables": ["base_a"], "columns": [None]}
    yield "set-aside (column)", _core.aside_sql(), {"tables": ["base_a"], "columns": ["v"]}
    yield "set-aside relations", _core.aside_relations_sql(), {"names": names}
    yield "database_checks", _core.query_sql("database_checks"), [names]
    yield "owner_privileges", _core.query_sql("owner_privileges"), ["m_mid"]
    yield "status_sizes", _core.query_sql("status_sizes"), [mats]
    yield "sync_sizes", _core.query_sql("sync_sizes"), [mats]
    yield "lock_holders", _core.query_sql("lock_holders"), [mats, None, None, None]
    yield "lock holders (C loop)", _core.lock_holders_sql(), ["m_mid"]
    yield "populated (C loop)", _core.populated_sql(), [mats]
    yield "history_after", _core.query_sql("history_after"), ["m_mid"]
    yield "history_schemas", _core.query_sql("history_schemas"), []
    yield "history_latest", _core.query_sql("history_latest"), [["app.M"]]


def whole_scans(plan: dict[str, Any]) -> Iterator[str]:
    if plan.get("Relation Name") in TABLE_SIZED and plan["Node Type"] == "Seq Scan":
        yield f"{plan['Relation Name']} ({plan.get('Actual Rows')} rows x {plan.get('Actual Loops')})"
    for child in plan.get("Plans", []):
        yield from whole_scans(child)


CAPTURE = _core.query_sql("history_capture_call")


def executions(cur: psycopg.ClientCursor[Any], label: str, sql: str, params: Any) -> list[float]:
    """The server's execution times (ms) of the statement, BENCH_REPS times."""
    text = cur.mogrify(sql, params).replace("%", "%%")
    out = []
    for _ in range(REPS):
        if label == "record function":
            cur.execute(CAPTURE, ["m_mid", False])
        cur.execute("EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) " + text)
        row = cur.fetchone()
        assert row is not None
        plan = row[0] if isinstance(row[0], list) else json.loads(row[0])
        out.append(plan[0]["Execution Time"])
        cur.connection.rollback()
    return out


def measure(dbname: str) -> dict[str, tuple[float, float, list[str]]]:
    out: dict[str, tuple[float, float, list[str]]] = {}
    with connect(dbname) as conn:
        notes: list[str] = []
        conn.add_notice_handler(lambda d: notes.append(d.message_primary or ""))
        cur = psycopg.ClientCursor(conn)
        for label, sql, params in cases():
            if label == "record function":
                cur.execute(CAPTURE, ["m_mid", False])
            cur.execute(
                "LOAD 'auto_explain'; SET auto_explain.log_min_duration = 0;"
                " SET auto_explain.log_nested_statements = on; SET auto_explain.log_analyze = on;"
                " SET auto_explain.log_format = json; SET client_min_messages = log"
            )
            notes.clear()
            cur.execute(sql, params)
            cur.execute("SET client_min_messages = notice; SET auto_explain.log_min_duration = -1")
            scans = []
            for note in notes:
                if "{" in note:
                    scans += whole_scans(json.loads(note[note.index("{") :])["Plan"])
            conn.rollback()
            times = []
            for _ in range(REPS):
                if label == "record function":
                    cur.execute(CAPTURE, ["m_mid", False])
                start = time.perf_counter()
                cur.execute(sql, params)
                times.append(time.perf_counter() - start)
                conn.rollback()
            server = executions(cur, label, sql, params)
            out[label] = (statistics.median(times) * 1000, min(server), scans)
    return out


def main() -> None:
    small, large = f"pgvc_catscale_small{SUFFIX}", f"pgvc_catscale_large{SUFFIX}"
    build(small, 0)
    build(large, TABLES)
    sizes = {}
    for db in (small, large):
        with connect(db) as conn:
            sizes[db] = conn.execute(
                "SELECT (SELECT count(*) FROM pg_class), (SELECT count(*) FROM pg_trigger)"
            ).fetchone()
    print(
        f"pg_class / pg_trigger rows: small {sizes[small][0]} / {sizes[small][1]}, large {sizes[large][0]} / {sizes[large][1]}"
    )
    a, b = measure(small), measure(large)
    print(f"{'':26s} {'client, median':>15s} {'server, least':>15s}   (ms)")
    print(f"{'query':26s} {'small':>7s} {'large':>7s} {'small':>7s} {'large':>7s}  whole scans (large)")
    for label in a:
        print(
            f"{label:26s} {a[label][0]:7.2f} {b[label][0]:7.2f} {a[label][1]:7.2f} {b[label][1]:7.2f}"
            f"  {', '.join(b[label][2]) or '-'}"
        )


if __name__ == "__main__":
    main()
