"""One library, one generated project, one task; run by bench.py in its own process.

    BENCH_DB=... python worker.py TASK PROJECT_DIR [JSON_ARGS]

Prints one line "RESULT <json>" at the end.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time


def _setup(project: str) -> str:
    sys.path.insert(0, project)
    os.environ["DJANGO_SETTINGS_MODULE"] = "benchsettings"
    import django
    from django.conf import settings

    django.setup()
    return settings.INSTALLED_APPS[0]


def _sync_fn(lib: str):
    if lib == "django_pgviews_c":
        from django_pgviews_c.sync import sync_pgviews

        return lambda: sync_pgviews("default")
    from django_pgviews.models import ViewSyncer

    return lambda: ViewSyncer().run(
        force=False, update=True, using="default", materialized_views_check_sql_changed=True
    )


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _recreate(db: str, template: str) -> None:
    import psycopg
    from django.db import connection

    connection.close()
    with psycopg.connect(dbname="postgres", autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{db}"')
        c.execute(f'CREATE DATABASE "{db}" TEMPLATE "{template}"')


def task_sync(lib: str, args: dict) -> dict:
    sync = _sync_fn(lib)
    from django.db import connection

    connection.ensure_connection()
    t0 = time.perf_counter()
    error = None
    try:
        sync()
    except Exception as exc:  # reported, not raised: the driver prints it
        error = f"{type(exc).__name__}: {exc}"
    return {"seconds": time.perf_counter() - t0, "error": error}


def task_warm(lib: str, args: dict) -> dict:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    sync = _sync_fn(lib)
    connection.ensure_connection()
    sync()  # make sure it is synced (and warm the caches)
    times = []
    for _ in range(args.get("reps", 5)):
        t0 = time.perf_counter()
        sync()
        times.append(time.perf_counter() - t0)
    # Django's log misses what runs on the driver's cursor directly (redux does that for most of
    # its queries), so also count every execute() the driver sees.
    import psycopg

    seen: list[str] = []
    original = psycopg.Cursor.execute

    def counting(self, query, *a, **k):
        seen.append(query if isinstance(query, str) else str(query))
        return original(self, query, *a, **k)

    psycopg.Cursor.execute = counting
    try:
        with CaptureQueriesContext(connection) as ctx:
            sync()
    finally:
        psycopg.Cursor.execute = original
    driver_ddl = [
        q
        for q in seen
        if q.lstrip().upper().startswith(("CREATE", "DROP", "ALTER", "REFRESH", "COMMENT", "DO"))
    ]
    sqls = [q["sql"].lstrip().upper() for q in ctx.captured_queries]
    ddl = [s for s in sqls if s.startswith(("CREATE", "DROP", "ALTER", "REFRESH", "COMMENT", "DO"))]
    return {
        "times": times,
        "median": statistics.median(times),
        "queries": len(sqls),
        "ddl": len(ddl),
        "driver_queries": len(seen),
        "driver_ddl": len(driver_ddl),
    }


def task_cold(lib: str, args: dict) -> dict:
    from django.db import connection

    sync = _sync_fn(lib)
    db = os.environ["BENCH_DB"]
    times, errors = [], []
    for _ in range(args.get("reps", 5)):
        _recreate(db, args["template"])
        connection.ensure_connection()
        t0 = time.perf_counter()
        try:
            sync()
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
            break
        times.append(time.perf_counter() - t0)
    return {"times": times, "median": statistics.median(times) if times else None, "errors": errors}


def task_memory(lib: str, args: dict) -> dict:
    from django.db import connection

    sync = _sync_fn(lib)
    connection.ensure_connection()
    base = _status_kb("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:  # reset VmHWM to the current RSS
        f.write("5")
    t0 = time.perf_counter()
    sync()
    seconds = time.perf_counter() - t0
    peak = _status_kb("VmHWM")
    return {"rss_after_startup_kb": base, "peak_kb": peak, "increase_kb": peak - base, "seconds": seconds}


def _ideal(durations: dict[str, float], deps: dict[str, list[str]], workers: int) -> float:
    """Critical-path-first list scheduling with zero overhead: the makespan."""
    dependants: dict[str, list[str]] = {k: [] for k in durations}
    for k, ds in deps.items():
        for d in ds:
            dependants[d].append(k)
    memo: dict[str, float] = {}

    def rank(k: str) -> float:
        if k not in memo:
            memo[k] = durations[k] + max((rank(c) for c in dependants[k]), default=0.0)
        return memo[k]

    done_at: dict[str, float] = {}
    free = [0.0] * workers
    pending = set(durations)
    now = 0.0
    running: list[tuple[float, str]] = []
    while pending or running:
        ready = [k for k in pending if all(d in done_at and done_at[d] <= now for d in deps.get(k, []))]
        ready.sort(key=lambda k: -rank(k))
        idle = [i for i, t in enumerate(free) if t <= now]
        for i, k in zip(idle, ready, strict=False):
            free[i] = now + durations[k]
            done_at[k] = free[i]
            pending.discard(k)
            running.append((free[i], k))
        running = [(t, k) for t, k in running if t > now]
        later = [t for t, _ in running] + [t for t in free if t > now]
        if not later:
            if pending:
                raise RuntimeError("cycle")
            break
        now = min(later)
    return max(done_at.values())


SERIAL = "SET max_parallel_workers_per_gather = 0"


def task_refresh(lib: str, args: dict) -> dict:
    from django.db import connection

    connection.ensure_connection()
    _sync_fn(lib)()
    with connection.cursor() as c:
        c.execute(SERIAL)
    out: dict = {"serial": [], "parallel": [], "ideal": [], "singles": []}
    if lib == "django_pgviews_c":
        from django.apps import apps

        from django_pgviews_c.dependencies import view_graph  # noqa: F401
        from django_pgviews_c.refresh import refresh_views
        from django_pgviews_c.view import MaterializedView

        mv = [m for m in apps.get_models() if issubclass(m, MaterializedView)]
        deps = {m._meta.label: list(m._dependencies) for m in mv}
        for _ in range(args.get("reps", 3)):
            r1 = refresh_views(jobs=1)
            ideal = _ideal(dict(r1.seconds), deps, 2)
            r2 = refresh_views(jobs=2, setup=SERIAL)
            assert not r2.failed, r2.failed
            out["serial"].append(r1.wall)
            out["parallel"].append(r2.wall)
            out["ideal"].append(ideal)
            out["singles"].append(dict(r1.seconds))
    else:
        from django_pgviews.models import ViewRefresher

        for _ in range(args.get("reps", 3)):
            t0 = time.perf_counter()
            ViewRefresher().run(concurrently=False, using="default")
            out["serial"].append(time.perf_counter() - t0)
    for key in ("serial", "parallel", "ideal"):
        out[key + "_median"] = statistics.median(out[key]) if out[key] else None
    return out


def task_tiny(lib: str, args: dict) -> dict:
    import psycopg
    from bv.models import Tiny
    from django.db import connection

    connection.ensure_connection()
    _sync_fn(lib)()
    n = args.get("n", 500)
    plain = psycopg.connect(dbname=os.environ["BENCH_DB"], autocommit=True)
    cur = plain.cursor()
    sql = "REFRESH MATERIALIZED VIEW tiny_mv"

    # Each REFRESH commits; with synchronous_commit on, the WAL flush per commit varies by more
    # than the overhead being measured, so both sides run with it off.
    cur.execute("SET synchronous_commit = off")
    with connection.cursor() as c:
        c.execute("SET synchronous_commit = off")
    chunk = 25

    def model_chunk() -> float:
        t0 = time.perf_counter()
        for _ in range(chunk):
            Tiny.refresh()
        return time.perf_counter() - t0

    def plain_chunk() -> float:
        t0 = time.perf_counter()
        for _ in range(chunk):
            cur.execute(sql)
        return time.perf_counter() - t0

    for _ in range(50):  # warm up both paths
        Tiny.refresh()
        cur.execute(sql)
    model_t, plain_t = [], []
    for _ in range(args.get("reps", 5)):
        # n refreshes each, interleaved in chunks of 25 so drift in the server hits both alike
        m = p = 0.0
        for k in range(n // chunk):
            if k % 2:
                m += model_chunk()
                p += plain_chunk()
            else:
                p += plain_chunk()
                m += model_chunk()
        model_t.append(m)
        plain_t.append(p)
    plain.close()
    m, p = statistics.median(model_t), statistics.median(plain_t)
    return {
        "model": model_t,
        "plain": plain_t,
        "model_median": m,
        "plain_median": p,
        "overhead_pct": (m / p - 1) * 100,
    }


TASKS = {
    "sync": task_sync,
    "warm": task_warm,
    "cold": task_cold,
    "memory": task_memory,
    "refresh": task_refresh,
    "tiny": task_tiny,
}


def main() -> None:
    task, project = sys.argv[1], sys.argv[2]
    args = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
    lib = _setup(project)
    result = TASKS[task](lib, args)
    result["lib"] = lib
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
