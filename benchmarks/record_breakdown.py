"""Where the cost of recording a Model.refresh() goes: the one-trip script with parts removed,
and the one call of migration 0007 with the history off and on (what Model.refresh() sends now).

Section 3 of freshness_bench.py times Model.refresh() as a user calls it. This one sends the
scripts themselves on one psycopg connection (client-side binding, as the package does), so
that each part can be taken out: the tiny view of that bench (SELECT 1 AS x), interleaved in
rounds of N refreshes in a random order per round, ROUNDS rounds. For each variant: the best
round, the median over rounds of its ratio to the round's baseline (history off: the guarded
REFRESH alone), and, when /proc/<pid>/schedstat of the server backend is readable (the server
on this machine), the backend's CPU time per refresh. Then EXPLAIN (ANALYZE, SUMMARY) of the
capture's catalog query sent as text: planning against execution.

    python benchmarks/record_breakdown.py          # the server named by PG* variables

Environment: PGHOST/PGPORT/PGUSER, ROUNDS (default 40), N (default 10), PGVIEWS_DB_SUFFIX.
"""

from __future__ import annotations

import os
import random
import re
import statistics
import sys
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
import freshness_bench as fb  # noqa: E402

ROUNDS = int(os.environ.get("ROUNDS", "40"))
N = int(os.environ.get("N", "10"))


def setup() -> str:
    """The bench's database with its tiny view, migrated (history table and functions)."""
    fb.write_project(0, 0)
    db = "pgviews_c_fb" + fb.SUFFIX
    fb.admin(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    fb.admin(f'CREATE DATABASE "{db}"')
    fb.admin(
        "CREATE TABLE fb_exact (k int PRIMARY KEY, v int); CREATE TABLE fb_plain (k int PRIMARY KEY, v int)",
        db,
    )
    sys.path.insert(0, str(fb.TMP))
    os.environ["DJANGO_SETTINGS_MODULE"] = "fb_settings"
    import django

    django.setup()
    from django.core.management import call_command
    from fb.models import Tiny

    call_command("migrate", "--run-syncdb", database="default", verbosity=0)
    for _ in range(60):  # the view has records to prune, as in a long-running project
        Tiny.refresh()
    from django.db import connection

    connection.close()
    return db


def variants() -> dict[str, tuple[str, list]]:
    from fb.models import Tiny

    from django_pgviews_c import _core, history, refreshfn
    from django_pgviews_c.historyfn import PRUNE_SLACK

    text = history._one_trip_sql(Tiny, False, 200, functions=False)
    calls = history._one_trip_sql(Tiny, False, 200, functions=True)
    p_text = history._one_trip_params(Tiny, "", False, False)
    p_calls = history._one_trip_params(Tiny, "", False, True)
    refresh = text.split(";\n")[3]
    off = refresh
    insert = _core.query_sql("history_insert_captured", table="fbtiny")
    no_prune_text = insert.split(" RETURNING id)")[0].replace("WITH ins AS (", "")
    set_started = (
        "SELECT pg_catalog.set_config('pgviews_c.sources', '', true),"
        " pg_catalog.set_config('pgviews_c.started', pg_catalog.clock_timestamp()::text, true)"
    )
    capture_text = text.split(";\n")[1]
    capture_call = calls.split(";\n")[1]
    record_call = calls.split(";\n")[5]

    def script(capture: str, record: str | None, savepoints: bool = True) -> str:
        parts = ["BEGIN", capture] + (["SAVEPOINT pgvc_refresh"] if savepoints else []) + [refresh]
        if record is not None:
            parts += (
                ["SAVEPOINT pgvc_record", record, "RELEASE SAVEPOINT pgvc_record"] if savepoints else [record]
            )
        return ";\n".join(parts + ["COMMIT"])

    no_prune = [*p_calls[:-2], 10**6, PRUNE_SLACK]
    single = _core.query_sql("history_refresh_call")
    return {
        "history off": (off, []),
        "text script (before)": (text, p_text),
        "  text, no capture": (script(set_started, insert), p_text[1:]),
        "  text, no record": (script(capture_text, None), p_text[:1]),
        "  text, record not pruning": (script(capture_text, no_prune_text), p_text[:11]),
        "functions, one trip (before 0007)": (calls, p_calls),
        "  functions, no capture": (script(set_started, record_call), p_calls[2:]),
        "  functions, no record": (script(capture_call, None), p_calls[:2]),
        "  functions, never pruning": (calls, no_prune),
        "  functions, no savepoints": (script(capture_call, record_call, savepoints=False), p_calls),
        "one call, history off (now)": (single, refreshfn._params(Tiny, False, False, "")),
        "one call, recorded (now)": (single, refreshfn._params(Tiny, False, True, "")),
    }


def main() -> None:
    db = setup()
    conn = psycopg.connect(dbname=db, autocommit=True)
    cur = psycopg.ClientCursor(conn)
    found = variants()
    names = list(found)
    keyed = {f"{i:02d}": found[n] for i, n in enumerate(names)}
    pid = conn.info.backend_pid
    stat = Path(f"/proc/{pid}/schedstat")

    def cpu_ns() -> int | None:
        try:
            return int(stat.read_text().split()[0])
        except OSError:
            return None

    wall: dict[str, list[float]] = {k: [] for k in keyed}
    cpu: dict[str, list[float]] = {k: [] for k in keyed}
    for sql, params in keyed.values():  # warm: plans made, functions compiled
        for _ in range(3):
            cur.execute(sql, params)
    for _ in range(ROUNDS):
        order = list(keyed.items())
        random.shuffle(order)
        for key, (sql, params) in order:
            c0, t0 = cpu_ns(), time.perf_counter()
            for _ in range(N):
                cur.execute(sql, params)
            wall[key].append((time.perf_counter() - t0) / N)
            c1 = cpu_ns()
            if c0 is not None and c1 is not None:
                cpu[key].append((c1 - c0) / N / 1e9)
    version = conn.execute("SHOW server_version").fetchone()[0]
    print(
        f"PostgreSQL {version}; {ROUNDS} rounds of {N} refreshes, random order; load {os.getloadavg()[0]:.1f}"
    )
    base = "00"
    print(f"{'':28s} {'best round':>10s} {'median ratio':>13s} {'server CPU':>11s} {'CPU added':>10s}")
    for i, key in enumerate(keyed):
        ratios = [w / b for w, b in zip(wall[key], wall[base], strict=True)]
        line = f"{names[i]:28s} {min(wall[key]) * 1000:8.3f}ms {statistics.median(ratios) - 1:+12.1%}"
        if cpu[key]:
            c = statistics.median(cpu[key])
            line += f" {c * 1000:9.3f}ms {(c - statistics.median(cpu[base])) * 1000:+9.3f}ms"
        print(line)
    off, on = names.index("one call, history off (now)"), names.index("one call, recorded (now)")
    ratios = [w / b for w, b in zip(wall[f"{on:02d}"], wall[f"{off:02d}"], strict=True)]
    line = f"recording adds to the one call: {statistics.median(ratios) - 1:+.1%} (median of rounds)"
    if cpu[f"{on:02d}"]:
        c_on, c_off = statistics.median(cpu[f"{on:02d}"]), statistics.median(cpu[f"{off:02d}"])
        line += f", server CPU {c_on / c_off - 1:+.1%}"
    print(line)
    explain(cur)
    conn.close()
    fb.admin(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def explain(cur: psycopg.ClientCursor) -> None:
    """Server time of each part by EXPLAIN (ANALYZE, SUMMARY), 40 times: planning and execution
    of the capture and of the record, sent as text and as calls of the functions."""
    from fb.models import Tiny

    from django_pgviews_c import _core, history

    text = history._one_trip_sql(Tiny, False, 200, functions=False).split(";\n")
    calls = history._one_trip_sql(Tiny, False, 200, functions=True).split(";\n")
    p_text = history._one_trip_params(Tiny, "", False, False)
    p_calls = history._one_trip_params(Tiny, "", False, True)
    capture_body = next(p for p in _core.query_sql("capture").split("; ") if p.startswith("WITH RECURSIVE"))
    cur.execute("SET jit = off")  # as the capture sets it
    parts = {
        "capture sent as text": (capture_body, p_text[:1], None),
        "capture function call": (calls[1], p_calls[:2], None),
        "record (insert + prune) as text": (text[5], p_text[1:], (text[1], p_text[:1])),
        "record function call": (calls[5], p_calls[2:], (calls[1], p_calls[:2])),
    }
    for name, (sql, params, before) in parts.items():
        plan, run = [], []
        for _ in range(40):
            cur.execute("BEGIN")
            if before is not None:
                cur.execute(*before)
            cur.execute("EXPLAIN (ANALYZE, SUMMARY, TIMING OFF) " + sql, params)
            out = "\n".join(r[0] for r in cur.fetchall())
            cur.execute("ROLLBACK")
            plan.append(float(re.search(r"Planning Time: ([\d.]+)", out).group(1)))
            run.append(float(re.search(r"Execution Time: ([\d.]+)", out).group(1)))
        print(
            f"{name:32s} planning {statistics.median(plan):6.3f} ms (min {min(plan):6.3f})   "
            f"execution {statistics.median(run):6.3f} ms (min {min(run):6.3f})   medians of 40"
        )


if __name__ == "__main__":
    main()
