"""What one capture of a view's sources costs the server, in instructions, as the database grows.

The capture (the function django_pgviews_c_capture that a recorded Model.refresh() calls, and the
staleness check's query, csrc/freshness.c) reads a view's closure in the catalog. Its cost
should not depend on how many relations the database holds. Instructions are counted with
`valgrind --tool=callgrind` on a single-user server (`postgres --single`), which a loaded
machine does not change: each case runs the statement K times and once 0 times, and the
difference over K is the cost of one statement.

A private cluster of the main server's major version (pgaux.AuxServer) holds, beside the app's
functions, three views: `SELECT 1` (reads nothing), a materialized view of a plain view joining
two tables, and one that also reads a table with an inheritance child and that materialized
view; then FILLER tables with a primary key each are added (each adds 4 relations: the table,
its index, its TOAST table and TOAST index), and the counts are taken again. The REFRESH of the
tiny view is counted too, for scale.

    python benchmarks/capture_instructions.py      # FILLER=2000 K=50 by default

Needs valgrind and the server binaries (Debian's postgresql package); run as root it runs the
server as the postgres user, as initdb requires.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from pgaux import AuxServer, _as_postgres  # noqa: E402

from django_pgviews_c import _core  # noqa: E402

FILLER = int(os.environ.get("FILLER", "2000"))
K = int(os.environ.get("K", "50"))
DB = "capture_bench"
SCHEMA = """
CREATE TABLE cb_a (id int PRIMARY KEY, v int);
CREATE TABLE cb_b (id int PRIMARY KEY, v int);
CREATE TABLE cb_parent (id int);
CREATE TABLE cb_child () INHERITS (cb_parent);
CREATE MATERIALIZED VIEW cb_tiny AS SELECT 1 AS x;
CREATE VIEW cb_join AS SELECT a.id, a.v + b.v AS v FROM cb_a a JOIN cb_b b USING (id);
CREATE MATERIALIZED VIEW cb_mat AS SELECT * FROM cb_join;
CREATE MATERIALIZED VIEW cb_mix AS
    SELECT m.id, (SELECT count(*) FROM cb_parent) AS n FROM cb_mat m JOIN cb_a a USING (id);
"""
CASES = {
    "capture: SELECT 1 (reads nothing)": "cb_tiny",
    "capture: a join of two tables through a plain view": "cb_mat",
    "capture: that, a table with a child and a materialized view": "cb_mix",
}


def capture_call(view: str) -> str:
    return (
        f"SELECT public.django_pgviews_c_capture('{view}'::regclass, pg_catalog.current_schemas(true), false)"
    )


def instructions(server: AuxServer, statement: str, times: int) -> int:
    script = server.dir / "script.sql"
    script.write_text((statement + "\n") * times)
    out = server.dir / "callgrind.out"
    cmd = [
        "valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
        str(server.bindir / "postgres"), "--single", "-D", str(server.data), "-c", "fsync=off", DB,
    ]  # fmt: skip
    if os.geteuid() == 0:
        shutil.chown(script, "postgres", "postgres")
    with script.open() as stdin:
        run = subprocess.run(_as_postgres(cmd), stdin=stdin, capture_output=True, text=True, check=True)
    found = re.search(r"Collected : (\d+)", run.stderr)
    assert found, run.stderr[-2000:]
    return int(found.group(1))


def per_statement(server: AuxServer, statement: str) -> float:
    return (instructions(server, statement, K) - instructions(server, statement, 0)) / K


def measure(server: AuxServer) -> tuple[int, dict[str, float]]:
    with psycopg.connect(host="127.0.0.1", port=server.port, user="postgres", dbname=DB) as conn:
        relations = conn.execute("SELECT count(*) FROM pg_class").fetchone()[0]
    server.pause()
    found = {name: per_statement(server, capture_call(view)) for name, view in CASES.items()}
    found["REFRESH MATERIALIZED VIEW of SELECT 1"] = per_statement(
        server, "REFRESH MATERIALIZED VIEW cb_tiny"
    )
    server.resume()
    return relations, found


def main() -> None:
    major = psycopg.connect(dbname="postgres").info.server_version // 10000
    server = AuxServer(str(major), port=55441)
    server.start()
    try:
        with psycopg.connect(host="127.0.0.1", port=server.port, user="postgres", autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {DB}")
        with psycopg.connect(
            host="127.0.0.1", port=server.port, user="postgres", dbname=DB, autocommit=True
        ) as conn:
            conn.execute(SCHEMA)
            conn.execute("CREATE TABLE django_pgviews_c_exact (rel bigint PRIMARY KEY, writes bigint)")
            conn.execute(
                _core.query_sql("history_functions", schema="public", table="public.django_pgviews_c_exact")
            )
        small = measure(server)
        with psycopg.connect(
            host="127.0.0.1", port=server.port, user="postgres", dbname=DB, autocommit=True
        ) as conn:
            conn.execute(
                f"DO $$ BEGIN FOR i IN 1..{FILLER} LOOP "
                "EXECUTE format('CREATE TABLE cb_filler_%s (id int PRIMARY KEY, t text)', i); END LOOP; END $$"
            )
        large = measure(server)
    finally:
        server.stop()
    print(f"PostgreSQL {major}; instructions per statement (callgrind, {K} statements, single-user server)")
    print(f"{'':62s} {small[0]:>7d} relations {large[0]:>7d} relations")
    for name in small[1]:
        print(f"{name:62s} {small[1][name] / 1e6:>14.2f} M {large[1][name] / 1e6:>15.2f} M")


if __name__ == "__main__":
    main()
