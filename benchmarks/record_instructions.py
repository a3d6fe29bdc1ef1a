"""What recording adds to Model.refresh() of a tiny view, counted in instructions (callgrind).

Wall-clock ratios of a 1.6 ms refresh move by more than the 2 % asked of the recording on a
shared machine; instructions do not. A private server of PostgreSQL 15 (pgaux.AuxServer, its own
port and data directory in /tmp) holds the bench's database of record_breakdown.py (the tiny
view SELECT 1, migrated, 60 refreshes recorded so that pruning runs as in a long-running
project). Two counts:

- the server: each variant's statement, with its parameters bound as the client binds them,
  run N and 2N times by one backend of `postgres --single` under `valgrind --tool=callgrind`
  (the same exec_simple_query a client's simple-protocol trip runs, without the socket); the
  difference over N is one refresh, the start-up and the first plans subtracted;
- the client: Model.refresh() N and 2N times in a Python process under callgrind, against the
  server started normally, the same subtraction.

Variants: history off as the package sent it before (lock guard, REFRESH and restore as three
statements of one trip) and as it sends it now (the refresh function with p_record = false),
recorded now (the same call with p_record = true), and recorded before (the one trip of
migration 0004's functions: BEGIN, capture, savepoints, REFRESH, record, COMMIT).

Instructions do not count what the kernel does for the REFRESH (the new relation file, its
fsync'less writes, unlinking the old one), which is the same for every variant: the ratios
they give are upper bounds of what recording adds in time (the conservative ones).

    python benchmarks/record_instructions.py      # N=40 by default

Needs valgrind and /usr/lib/postgresql/15/bin; as root, the server runs as the postgres user.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from pgaux import AuxServer, _as_postgres  # noqa: E402

N = int(os.environ.get("N", "40"))
PORT = int(os.environ.get("AUX_PORT", "55447"))

CLIENT = """
import sys
import django
django.setup()
from django.conf import settings
from django.db import connection
from fb.models import Tiny
from django_pgviews_c.historyfn import forget_functions
mode, n = sys.argv[1], int(sys.argv[2])
settings.PGVIEWS_HISTORY = mode != "off"
connection.ensure_connection()
if mode == "trip":
    forget_functions(connection, "single")
for _ in range(5 + n):
    Tiny.refresh()
"""


def statements(db: str) -> dict[str, str]:
    """Each variant's text as the client sends it (parameters bound), one line."""
    import record_breakdown as rb  # noqa: F401  (Django set up by rb.setup())
    from fb.models import Tiny

    from django_pgviews_c import _core, history, refreshfn

    conn = psycopg.connect(host="127.0.0.1", port=PORT, user="postgres", dbname=db)
    cur = psycopg.ClientCursor(conn)
    calls = history._one_trip_sql(Tiny, False, 200, functions=True)
    single = _core.query_sql("history_refresh_call")
    texts = {
        "history off, three statements (before)": calls.split(";\n")[3],
        "history off, one call (now)": cur.mogrify(single, refreshfn._params(Tiny, False, False, "")),
        "recorded, one call (now)": cur.mogrify(single, refreshfn._params(Tiny, False, True, "")),
        "recorded, one trip of 0004's functions (before)": cur.mogrify(
            calls, history._one_trip_params(Tiny, "", False, True)
        ),
    }
    if os.environ.get("PARTS"):  # where the recording's instructions go
        p = refreshfn._params(Tiny, False, True, "")
        texts["  recorded, rows not counted"] = cur.mogrify(single, [*p[:8], -1, *p[9:]])
        texts["  the capture alone"] = cur.mogrify(
            "SELECT django_pgviews_c_refresh_capture(%s::regclass, pg_catalog.current_schemas(true), false)",
            p[:1],
        )
        texts["  SELECT 1"] = "SELECT 1"
    conn.close()
    return {k: " ".join(v.split("\n")) for k, v in texts.items()}


def callgrind(cmd: list[str], out: Path, stdin: Path | None = None, env: dict[str, str] | None = None) -> int:
    full = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *cmd]
    if stdin is not None:  # the server: valgrind itself runs as the postgres user
        full = _as_postgres(full)
    with stdin.open() if stdin else open(os.devnull) as fh:
        run = subprocess.run(full, stdin=fh, capture_output=True, text=True, env=env)
    found = re.search(r"Collected : (\d+)", run.stderr)
    assert found and run.returncode == 0, run.stderr[-3000:]
    return int(found.group(1))


def server_count(server: AuxServer, db: str, statement: str, times: int) -> int:
    """From the same data directory every time (copied aside once vacuumed): a single-user
    server runs no autovacuum, and the dead rows a run leaves in the catalog and the history
    would make each later run costlier."""
    shutil.rmtree(server.data)
    subprocess.run(["cp", "-a", str(server.dir / "data.orig"), str(server.data)], check=True)
    script = server.dir / "script.sql"
    script.write_text((statement + "\n") * times)
    if os.geteuid() == 0:
        shutil.chown(script, "postgres", "postgres")
    cmd = [str(server.bindir / "postgres"), "--single", "-D", str(server.data), "-c", "fsync=off", db]
    return callgrind(cmd, server.dir / "callgrind.server", stdin=script)


def client_count(mode: str, times: int) -> int:
    import freshness_bench as fb

    env = {**os.environ, "PYTHONPATH": str(fb.TMP), "DJANGO_SETTINGS_MODULE": "fb_settings",
           "PYTHONHASHSEED": "0"}  # fmt: skip
    return callgrind([sys.executable, "-c", CLIENT, mode, str(times)], Path("/tmp/callgrind.client"), env=env)


def main() -> None:
    server = AuxServer("15", port=PORT)
    server.start()
    os.environ.update(PGHOST="127.0.0.1", PGPORT=str(PORT), PGUSER="postgres")
    try:
        import record_breakdown as rb

        db = rb.setup()
        texts = statements(db)
        with psycopg.connect(host="127.0.0.1", port=PORT, user="postgres", dbname=db, autocommit=True) as c:
            c.execute("VACUUM (FREEZE, ANALYZE)")
        server.pause()
        subprocess.run(["cp", "-a", str(server.data), str(server.dir / "data.orig")], check=True)
        srv = {
            k: (server_count(server, db, t, 2 * N) - server_count(server, db, t, N)) / N
            for k, t in texts.items()
        }
        server.resume()
        modes = {"history off, one call (now)": "off", "recorded, one call (now)": "on",
                 "recorded, one trip of 0004's functions (before)": "trip"}  # fmt: skip
        cli = (
            {k: (client_count(m, 2 * N) - client_count(m, N)) / N for k, m in modes.items()}
            if os.environ.get("CLIENT", "1") != "0"
            else {}
        )
    finally:
        server.stop()
    report(srv, cli)


def report(srv: dict[str, float], cli: dict[str, float]) -> None:
    print(
        f"PostgreSQL 15; instructions per Model.refresh() of SELECT 1 (callgrind, {N} and {2 * N} refreshes)"
    )
    print(f"{'':50s} {'server':>9s} {'client':>9s} {'total':>9s}")
    for k, s in srv.items():
        c = cli.get(k)
        if c is None:
            print(f"{k:50s} {s / 1e6:8.3f}M")
            continue
        line = f"{k:50s} {s / 1e6:8.3f}M"
        line += f" {c / 1e6:8.3f}M {(s + c) / 1e6:8.3f}M"
        print(line)
    off, on = "history off, one call (now)", "recorded, one call (now)"
    before_off, before_on = (
        "history off, three statements (before)",
        "recorded, one trip of 0004's functions (before)",
    )
    print(
        f"recording adds, server:            {srv[on] / srv[off] - 1:+.1%} (one call off -> one call recorded)"
    )
    if cli:
        print(f"recording adds, server + client:   {(srv[on] + cli[on]) / (srv[off] + cli[off]) - 1:+.1%}")
    print(f"the one call off vs the three statements before (server): {srv[off] / srv[before_off] - 1:+.1%}")
    print(f"recorded now vs recorded before (server): {srv[on] / srv[before_on] - 1:+.1%}")


if __name__ == "__main__":
    main()
