"""Driver: generates the projects, prepares the databases, runs worker.py once per library and
task (each library in its own process), and prints the results with ratios.

    python bench.py [warm] [cold] [scale10k] [refresh] [tiny] [memory] [reader]

Environment: PGHOST/PGPORT/PGUSER (the main server), BENCH_REPS (default 5), BENCH_N (1000),
BENCH_N_BIG (10000), BENCH_JSON (where to write all raw figures; default
benchmarks/results.json).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import contextlib  # noqa: E402

import gen_views  # noqa: E402
import pgaux  # noqa: E402

PY = sys.executable
OURS, REDUX = "django_pgviews_c", "django_pgviews"
SHORT = {OURS: "c", REDUX: "redux"}
REPS = int(os.environ.get("BENCH_REPS", "5"))
N = int(os.environ.get("BENCH_N", "1000"))
N_BIG = int(os.environ.get("BENCH_N_BIG", "10000"))
TMP = Path(tempfile.mkdtemp(prefix="bench_pgviews_"))
RESULTS: dict = {}
DATABASES: list[tuple[dict, str]] = []


def say(text: str = "") -> None:
    print(text, flush=True)


def env_for(server: dict, db: str) -> dict:
    return dict(
        os.environ,
        BENCH_DB=db,
        PGHOST=server["host"],
        PGPORT=str(server["port"]),
        PGUSER=server["user"],
        PYTHONDONTWRITEBYTECODE="1",
    )


def admin(server: dict, *statements: str, db: str = "postgres") -> None:
    with psycopg.connect(
        host=server["host"], port=server["port"], user=server["user"], dbname=db, autocommit=True
    ) as c:
        for s in statements:
            c.execute(s)


def make_db(server: dict, name: str, template: str | None = None, setup: list[str] = ()) -> str:
    admin(
        server,
        f'DROP DATABASE IF EXISTS "{name}"',
        f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""),
    )
    if (server, name) not in DATABASES:
        DATABASES.append((server, name))
    if setup:
        admin(server, *setup, db=name)
    return name


BASE_SETUP = [
    "CREATE TABLE bench_base (id int PRIMARY KEY, grp int NOT NULL, val bigint NOT NULL)",
    "INSERT INTO bench_base SELECT g, g % 10, g FROM generate_series(1, 100) g",
]


def worker(task: str, project: Path, server: dict, db: str, args: dict | None = None) -> dict:
    cmd = [PY, str(HERE / "worker.py"), task, str(project), json.dumps(args or {})]
    out = subprocess.run(cmd, env=env_for(server, db), capture_output=True, text=True)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"{task} {project} failed:\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}")


def project(lib: str, kind: str = "graph", views: int = N, variant: int = 1) -> Path:
    path = TMP / f"{kind}_{views}_{variant}_{SHORT[lib]}"
    if not path.exists():
        gen_views.generate(path, lib, kind, views=views, variant=variant)
    return path


def timed(cmd: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - t0


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def psql_cold(server: dict, views: int, template: str, db: str, reps: int) -> list[float]:
    ddl = TMP / f"ddl_{views}.sql"
    ddl.write_text(gen_views.ddl(gen_views.graph_specs(views, 15, 0.2)))
    times = []
    for _ in range(reps):
        make_db(server, db, template)
        times.append(
            timed(
                ["psql", "-q", "-X", "-v", "ON_ERROR_STOP=1", "-1", "-d", db, "-f", str(ddl)],
                env_for(server, db),
            )
        )
    return times


# -- benchmarks ---------------------------------------------------------------------------------


def bench_warm(main: dict) -> None:
    say(f"== 1. warm sync, {N} views, 15 levels, 20% materialized")
    make_db(main, "bench_tpl", setup=BASE_SETUP)
    r = {}
    for lib in (OURS, REDUX):
        db = make_db(main, f"bench_warm_{SHORT[lib]}", "bench_tpl")
        first = worker("sync", project(lib), main, db)
        assert not first["error"], first["error"]
        r[lib] = worker("warm", project(lib), main, db, {"reps": REPS})
        say(
            f"  {lib:18} median {r[lib]['median'] * 1000:9.1f} ms   queries (Django log) "
            f"{r[lib]['queries']:5}  statements (driver) {r[lib]['driver_queries']:5}  DDL {r[lib]['driver_ddl']}"
        )
    ratio = r[REDUX]["median"] / r[OURS]["median"]
    say(f"  redux / c: {ratio:.1f}x")
    # Whole command vs manage.py check (ours), interleaved.
    db = f"bench_warm_{SHORT[OURS]}"
    env = env_for(main, db)
    manage = str(project(OURS) / "manage.py")
    check, sync = [], []
    timed([PY, manage, "check"], env)  # warm the page cache
    for _ in range(REPS):
        check.append(timed([PY, manage, "check"], env))
        sync.append(timed([PY, manage, "sync_pgviews", "-v", "0"], env))
    say(
        f"  manage.py check {med(check):.3f} s, manage.py sync_pgviews {med(sync):.3f} s: "
        f"{med(sync) / med(check):.3f}x"
    )
    RESULTS["warm"] = {
        "c": r[OURS],
        "redux": r[REDUX],
        "ratio": ratio,
        "check": check,
        "command": sync,
        "command_ratio": med(sync) / med(check),
    }


def bench_cold(main: dict) -> None:
    say(f"== 2. cold sync, {N} views")
    make_db(main, "bench_tpl", setup=BASE_SETUP)
    r = {}
    for lib in (OURS, REDUX):
        db = make_db(main, f"bench_cold_{SHORT[lib]}", "bench_tpl")
        r[lib] = worker("cold", project(lib), main, db, {"reps": REPS, "template": "bench_tpl"})
        if r[lib]["errors"]:
            say(f"  {lib:18} ERROR {r[lib]['errors']}")
            continue
        say(f"  {lib:18} median {r[lib]['median']:.3f} s   {[round(t, 3) for t in r[lib]['times']]}")
    p = psql_cold(main, N, "bench_tpl", "bench_cold_psql", REPS)
    say(f"  psql -1 -f         median {med(p):.3f} s   {[round(t, 3) for t in p]}")
    RESULTS["cold"] = {"c": r[OURS], "redux": r[REDUX], "psql": p}
    if r[OURS]["median"] and r[REDUX]["median"]:
        say(
            f"  c / psql: {r[OURS]['median'] / med(p):.2f}x   redux / c: {r[REDUX]['median'] / r[OURS]['median']:.2f}x"
        )
        RESULTS["cold"].update(
            c_over_psql=r[OURS]["median"] / med(p), redux_over_c=r[REDUX]["median"] / r[OURS]["median"]
        )


def bench_scale(main: dict, aux: dict, with_memory: bool) -> None:
    reps = max(1, min(REPS, 3))
    say(f"== 2b. {N_BIG} views (server with max_locks_per_transaction = 1024); 5. memory")
    out: dict = {}
    # What a cold sync of N_BIG views says on the default settings (64 locks per transaction).
    make_db(main, "bench_tpl", setup=BASE_SETUP)
    db = make_db(main, "bench_big_default", "bench_tpl")
    d = worker("sync", project(OURS, views=N_BIG), main, db)
    out["default_settings"] = d
    say(f"  default max_locks_per_transaction: {d['error'] or 'ok'} ({d['seconds']:.2f} s)")
    admin(main, 'DROP DATABASE IF EXISTS "bench_big_default"')

    make_db(aux, "bench_tpl", setup=BASE_SETUP)
    c = worker(
        "cold",
        project(OURS, views=N_BIG),
        aux,
        make_db(aux, "bench_big_c", "bench_tpl"),
        {"reps": reps, "template": "bench_tpl"},
    )
    assert not c["errors"], c["errors"]
    p = psql_cold(aux, N_BIG, "bench_tpl", "bench_big_psql", reps)
    admin(aux, 'DROP DATABASE IF EXISTS "bench_big_psql"')
    say(f"  cold c     median {c['median']:.3f} s {[round(t, 2) for t in c['times']]}")
    say(
        f"  cold psql  median {med(p):.3f} s {[round(t, 2) for t in p]}   c / psql {c['median'] / med(p):.2f}x"
    )
    w = worker("warm", project(OURS, views=N_BIG), aux, "bench_big_c", {"reps": REPS})
    say(
        f"  warm c     median {w['median'] * 1000:.1f} ms, {w['driver_queries']} statement(s), DDL {w['driver_ddl']}"
    )
    out.update(cold_c=c, cold_psql=p, warm_c=w)
    if with_memory:
        mem = {}
        for lib in (OURS, REDUX):
            db = make_db(aux, f"bench_mem_{SHORT[lib]}", "bench_tpl")
            mem[lib] = worker("memory", project(lib, views=N_BIG), aux, db)
            say(
                f"  memory {lib:18} RSS after start-up {mem[lib]['rss_after_startup_kb'] / 1024:.1f} MB, "
                f"peak during cold sync +{mem[lib]['increase_kb'] / 1024:.1f} MB ({mem[lib]['seconds']:.1f} s)"
            )
        out["memory"] = mem
        # redux's cold time for N_BIG comes from its memory run (one repetition); its warm sync:
        rw = worker("warm", project(REDUX, views=N_BIG), aux, "bench_mem_redux", {"reps": 1})
        say(f"  redux cold {mem[REDUX]['seconds']:.2f} s (1 run), warm {rw['median']:.2f} s (1 run)")
        out["warm_redux"] = rw
        for lib in (OURS, REDUX):
            admin(aux, f'DROP DATABASE IF EXISTS "bench_mem_{SHORT[lib]}"')
    RESULTS["scale"] = out


def bench_refresh(main: dict) -> None:
    reps = max(1, min(REPS, 3))
    say("== 3. refresh: 8 heavy materialized views over 2,000,000 rows + 2 dependants")
    make_db(
        main,
        "bench_refresh_tpl",
        setup=[
            "CREATE TABLE bench_big (id bigint PRIMARY KEY)",
            "INSERT INTO bench_big SELECT generate_series(1, 2000000)",
            "VACUUM ANALYZE bench_big",
        ],
    )
    r = {}
    for lib in (OURS, REDUX):
        db = make_db(main, f"bench_refresh_{SHORT[lib]}", "bench_refresh_tpl")
        r[lib] = worker("refresh", project(lib, "refresh"), main, db, {"reps": reps})
    c = r[OURS]
    singles = {k: med([s[k] for s in c["singles"]]) for k in c["singles"][0]}
    say(
        "  single refresh times (median): "
        + ", ".join(f"{k.split('.')[-1]} {v:.2f}" for k, v in singles.items())
    )
    say(
        f"  c jobs=1 {c['serial_median']:.2f} s, jobs=2 {c['parallel_median']:.2f} s "
        f"-> {c['serial_median'] / c['parallel_median']:.2f}x; ideal 2-way {c['ideal_median']:.2f} s, "
        f"actual/ideal {c['parallel_median'] / c['ideal_median']:.3f}"
    )
    say(f"  redux refresh (serial) {r[REDUX]['serial_median']:.2f} s")
    RESULTS["refresh"] = {
        "c": c,
        "redux": r[REDUX],
        "singles": singles,
        "speedup": c["serial_median"] / c["parallel_median"],
        "actual_over_ideal": c["parallel_median"] / c["ideal_median"],
    }


def bench_tiny(main: dict) -> None:
    say("== 4. Model.refresh() x 500 on a tiny materialized view vs a plain psycopg loop")
    r = {}
    for lib in (OURS, REDUX):
        db = make_db(main, f"bench_tiny_{SHORT[lib]}")
        r[lib] = worker("tiny", project(lib, "tiny"), main, db, {"reps": REPS, "n": 500})
        say(
            f"  {lib:18} Model.refresh {r[lib]['model_median']:.3f} s, psycopg {r[lib]['plain_median']:.3f} s, "
            f"overhead {r[lib]['overhead_pct']:+.1f}%"
        )
    RESULTS["tiny"] = {"c": r[OURS], "redux": r[REDUX]}


def _reader(server: dict, db: str, stop: threading.Event, out: dict) -> None:
    waits, errors = [], []
    with psycopg.connect(
        host=server["host"], port=server["port"], user=server["user"], dbname=db, autocommit=True
    ) as c:
        i = 0
        while not stop.is_set():
            i += 1
            t0 = time.perf_counter()
            try:
                c.execute("SELECT h FROM big_mv WHERE id = %s", [i % 1000000 + 1]).fetchall()
            except psycopg.Error as exc:
                errors.append(f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}")
            waits.append(time.perf_counter() - t0)
            time.sleep(0.005)
    out["waits"], out["errors"] = waits, errors


def bench_reader(main: dict) -> None:
    reps = max(2, min(REPS, 4))
    say("== 6. readers of a materialized view (1,000,000 rows) whose SQL changes, during sync")
    res = {}
    for lib in (OURS, REDUX):
        db = make_db(main, f"bench_reader_{SHORT[lib]}")
        first = worker("sync", project(lib, "reader", variant=1), main, db)
        assert not first["error"], first["error"]
        runs = []
        for k in range(reps):
            variant = 2 if k % 2 == 0 else 1
            stop, out = threading.Event(), {}
            t = threading.Thread(target=_reader, args=(main, db, stop, out))
            t.start()
            time.sleep(0.3)
            s = worker("sync", project(lib, "reader", variant=variant), main, db)
            time.sleep(0.3)
            stop.set()
            t.join()
            runs.append(
                {
                    "sync_seconds": s["seconds"],
                    "sync_error": s["error"],
                    "max_wait": max(out["waits"]),
                    "queries": len(out["waits"]),
                    "errors": out["errors"],
                }
            )
        mx = [x["max_wait"] for x in runs]
        errs = sum(len(x["errors"]) for x in runs)
        say(
            f"  {lib:18} sync {med([x['sync_seconds'] for x in runs]):.2f} s; reader max wait median "
            f"{med(mx) * 1000:.0f} ms (worst {max(mx) * 1000:.0f} ms); reader errors {errs} in {len(runs)} syncs"
            + (f": {sorted({e for x in runs for e in x['errors']})[:2]}" if errs else "")
        )
        res[lib] = runs
    RESULTS["reader"] = res


def machine(main: dict) -> dict:
    with psycopg.connect(host=main["host"], port=main["port"], user=main["user"], dbname="postgres") as c:
        version = c.execute("SELECT version()").fetchone()[0]
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((ln.split(":", 1)[1].strip() for ln in cpuinfo if ln.startswith("model name")), "?")
    from importlib.metadata import version as v

    import django

    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "postgresql": version,
        "python": platform.python_version(),
        "django": django.get_version(),
        "psycopg": psycopg.__version__,
        "django-pgviews-redux": v("django-pgviews-redux"),
    }


def main() -> None:
    wanted = set(sys.argv[1:]) or {"warm", "cold", "scale10k", "refresh", "tiny", "memory", "reader"}
    main_server = {
        "host": os.environ.get("PGHOST", "127.0.0.1"),
        "port": int(os.environ.get("PGPORT", 5432)),
        "user": os.environ.get("PGUSER", "postgres"),
    }
    RESULTS["machine"] = machine(main_server)
    say(json.dumps(RESULTS["machine"]))
    started = time.perf_counter()
    aux = None
    try:
        if "warm" in wanted:
            bench_warm(main_server)
        if "cold" in wanted:
            bench_cold(main_server)
        if "refresh" in wanted:
            bench_refresh(main_server)
        if "tiny" in wanted:
            bench_tiny(main_server)
        if "reader" in wanted:
            bench_reader(main_server)
        if "scale10k" in wanted or "memory" in wanted:
            major = RESULTS["machine"]["postgresql"].split()[1].split(".")[0]
            aux = pgaux.AuxServer(major, settings={"max_locks_per_transaction": "1024"})
            aux.start()
            bench_scale(
                main_server,
                {"host": "127.0.0.1", "port": aux.port, "user": "postgres"},
                with_memory="memory" in wanted,
            )
    finally:
        for server, name in DATABASES:
            if aux is None and server.get("port") != main_server["port"]:
                continue
            with contextlib.suppress(psycopg.Error):
                admin(server, f'DROP DATABASE IF EXISTS "{name}"')
        if aux is not None:
            aux.stop()
        RESULTS["total_seconds"] = time.perf_counter() - started
        path = Path(os.environ.get("BENCH_JSON", HERE / "results.json"))
        path.write_text(json.dumps(RESULTS, indent=1))
        say(f"total {RESULTS['total_seconds']:.0f} s; raw figures in {path}")


if __name__ == "__main__":
    main()
