"""The C boundary: no Python value handed to django_pgviews_c._core may crash the interpreter.

Every callable of the module (its functions, Graph's constructor, methods and attributes; new
ones are found by enumerating the module) is fed arbitrary nested values: None, ints of any
size, floats, bytes, str holding NUL, lone surrogates or 70,000 characters, tuples, lists,
dicts, and objects whose __str__, __eq__, __hash__, __bool__, __len__, __iter__, __float__ or
__index__ raise. Most inputs are shaped like a valid call with a few parts replaced, so they
reach past the first type check.

Each call runs in a worker process (re-spawned after a crash), so a segfault or an abort is a
test failure naming the function and the input, not a lost run. Any Python exception is a fine
answer; a signal death, a SystemError (a C function returning NULL without an exception, or a
value with one set) or a call that never returns is a failure.

Inputs are written as plain data; ``Ev("kind")`` stands for one of the hostile objects built
by ``_materialize`` (tests/core_boundary_inputs.py, with the shapes of the calls) in the
worker, so every failure message is a call you can paste into
``python -c`` after ``from tests.test_core_boundary import *``: ``run(CALL)``.
"""

from __future__ import annotations

import gc
import json
import os
import pickle
import selectors
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings

from tests import psycopg_compat
from tests.core_boundary_inputs import Boom, Ev, _materialize, callables, shape

ROOT = Path(__file__).resolve().parent.parent
CALL_TIMEOUT = 30.0  # seconds: generous, a loaded machine included; a hang is a failure


# ---- running one call ---------------------------------------------------------------------


def _resolve(core: Any, target: str, args: tuple, kwargs: dict) -> Any:
    """Call target ("plan", "Graph", "Graph.order", "Graph.names", ...) on materialized args."""
    if target == "__crash__":  # the harness's own test: a real segfault
        import ctypes

        return ctypes.string_at(0)
    if not target.startswith("Graph."):
        return getattr(core, target)(*args, **kwargs)
    graph = core.Graph(*args[0])
    member = target.split(".", 1)[1]
    if member == "__len__":
        return len(graph)
    attr = getattr(graph, member)
    return attr(*args[1:], **kwargs) if callable(attr) else attr


def run(call: tuple[str, tuple, dict]) -> tuple[str, str]:
    """Run one call in this process: ("ok", repr) or ("exc", "module.Type: message")."""
    from django_pgviews_c import _core

    target, args, kwargs = call
    root: list[Any] = []
    try:
        args = _materialize(args, root)
        root.extend(args if not target.startswith("Graph.") else args[1:])
        kwargs = _materialize(kwargs, root)
        root.extend(kwargs.values())
    except Boom:  # e.g. a dict whose keys collide with an object that cannot compare
        return ("skip", "the input cannot be built")
    try:
        result = _resolve(_core, target, args, kwargs)
        outcome = ("ok", type(result).__name__)
    except BaseException as exc:  # any exception is an answer; the parent judges which
        try:
            message = str(exc)[:300]
        except BaseException:
            message = "<unprintable>"
        outcome = ("exc", f"{type(exc).__module__}.{type(exc).__qualname__}: {message}")
    del args, kwargs, root
    gc.collect()  # a refcount broken by the call shows here, attributed to it
    return outcome


def _worker() -> None:
    """Serve calls from the parent: 4-byte length + pickle in, the same out (on a private fd:
    anything written to stdout by the call goes to stderr instead)."""
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    inp = sys.stdin.buffer
    while True:
        header = inp.read(4)
        if len(header) < 4:
            return
        call = pickle.loads(inp.read(struct.unpack("<I", header)[0]))
        data = pickle.dumps(run(call))
        out.write(struct.pack("<I", len(data)) + data)
        out.flush()


class Worker:
    """One long-lived worker process; a crash is reported and the next call spawns a new one."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen | None = None
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the worker; closed by close())

    def _spawn(self) -> subprocess.Popen:
        self.stderr.seek(0)
        self.stderr.truncate()
        return subprocess.Popen(
            [sys.executable, "-c", "from tests.test_core_boundary import _worker; _worker()"],
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
        )

    def _read(self, n: int, deadline: float) -> bytes:
        assert self.proc and self.proc.stdout
        buf = b""
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        try:
            while len(buf) < n:
                if not sel.select(max(0.0, deadline - time.monotonic())):
                    raise TimeoutError
                chunk = os.read(self.proc.stdout.fileno(), n - len(buf))
                if not chunk:
                    raise EOFError
                buf += chunk
        finally:
            sel.close()
        return buf

    def _stderr_tail(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")[-2000:]

    def call(self, call: tuple[str, tuple, dict], timeout: float = CALL_TIMEOUT) -> tuple[str, str]:
        """("ok"|"exc"|"skip", detail) or ("crash"|"hang", description)."""
        if self.proc is None or self.proc.poll() is not None:
            self.proc = self._spawn()
        data = pickle.dumps(call)
        try:
            assert self.proc.stdin
            self.proc.stdin.write(struct.pack("<I", len(data)) + data)
            self.proc.stdin.flush()
            deadline = time.monotonic() + timeout
            size = struct.unpack("<I", self._read(4, deadline))[0]
            return pickle.loads(self._read(size, deadline))
        except TimeoutError:
            self.close()
            return ("hang", f"no answer in {timeout:.0f} s")
        except (EOFError, BrokenPipeError):
            rc = self.proc.wait()
            self.proc = None
            how = f"signal {signal.Signals(-rc).name}" if rc < 0 else f"exit status {rc}"
            return ("crash", f"the process died ({how})\n{self._stderr_tail()}")

    def close(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


def verdict(outcome: tuple[str, str]) -> str | None:
    """Why an outcome is a failure, or None when it is a fine answer."""
    kind, detail = outcome
    if kind in ("crash", "hang"):
        return detail
    if kind == "exc" and detail.startswith("builtins.SystemError"):
        return detail
    return None


# ---- crashes known today ----------------------------------------------------------------------

S_ROW = (
    0,
    "public",
    "public",
    "S",
    None,
    None,
    None,
    None,
    None,
    None,
    None,
    None,
    None,
    None,
    None,
    "public",
    None,
    None,
)


def _mdecl(indexes: tuple = (), cidx: str | None = None) -> tuple:
    from tests.helpers import decl_tuple

    return decl_tuple(label="app.M", name="m", kind="m", indexes=indexes, concurrent_index=cidx)


def _stamp(decl: tuple) -> str:
    """The comment a sync writes on decl's object (a valid call, made here)."""
    from django_pgviews_c import _core

    stamp = _core.plan([decl], [S_ROW])["actions"][-1][2]
    return stamp.split("ARRAY[", 2)[2].split("]::text[]")[0].strip(" '") + " rw=1 def=" + "0" * 32


def _mrow(comment: str | None, index_names: list) -> tuple:
    return (
        13,
        "public",
        "m",
        "m",
        comment,
        True,
        None,
        "1",
        None,
        "postgres",
        None,
        index_names,
        [],
        None,
        None,
        "public",
        ["id"],
        ["integer"],
    )


_COPY_OUT = "COPY (SELECT 1) TO STDOUT"
_COPY_IN = "CREATE TEMP TABLE boundary_in (a int); COPY boundary_in FROM STDIN"

# (target, the exact call, what goes wrong, who fixes it). Each is a strict xfail below; a
# crash the random search can reach is also an explicit example of the property test (itself
# a strict xfail then), so both fail the same way on every run until the owner fixes it. When
# an xfail passes, the run fails: remove the entry (and its mark) then.
# Calls that crashed once and were fixed: each runs on every run, here and as an explicit
# example of its target's property test.
ONCE_CRASHED: list[tuple[str, tuple[str, tuple, dict], str]] = [
    (
        "plan",
        ("plan", ([_mdecl(indexes=(1,))], [S_ROW]), {}),
        "SIGSEGV: an index entry that is not a tuple (PyTuple_GET_ITEM on an int; plan.c fingerprints())",
    ),
    (
        "plan",
        ("plan", ([_mdecl(indexes=((None, "x"),))], [S_ROW]), {}),
        "SIGSEGV: an index name that is not a str (PyUnicode_AsUTF8 unchecked; plan.c fingerprints())",
    ),
    (
        "plan",
        ("plan", ([_mdecl(indexes=((),))], [S_ROW]), {}),
        "SIGSEGV: an empty index tuple (PyTuple_GET_ITEM out of range; plan.c fingerprints())",
    ),
    (
        "plan",
        ("plan", ([_mdecl(indexes=(("ix", None),))], [S_ROW]), {}),
        "SIGSEGV: an index template that is not a str (plan.c fingerprints())",
    ),
    (
        "plan",
        ("plan", ([_mdecl(cidx="id")], [_mrow("@stamp", [1]), S_ROW]), {}),
        "SIGSEGV: a catalog index name that is not a str (strcmp(NULL); plan.c indexes_differ())",
    ),
    (
        "run_parallel",
        ("run_parallel", (Ev("conninfo"), [_COPY_OUT], [[]], [0.0], 1), {}),
        "never returned: COPY TO STDOUT left the connection in COPY OUT state (refresh loop, pqpath.c)",
    ),
    (
        "run_parallel",
        ("run_parallel", (Ev("conninfo"), [_COPY_IN], [[]], [0.0], 1), {}),
        "never returned: COPY FROM STDIN waited for data that never came (refresh loop, pqpath.c)",
    ),
    (
        "run_parallel",
        (
            "run_parallel",
            (Ev("conninfo"), ["SELECT 1", "SELECT 2", "SELECT 3"], [[], Ev("clearing"), []], None, 1),
            {},
        ),
        "SIGSEGV: a dependency list whose __iter__ empties the statements, read by index after it "
        "(pqpath_input.c pgvc_loop_load_tasks())",
    ),
    (
        "run_parallel",
        ("run_parallel", (Ev("conninfo"), ["SELECT 1"], [[]], None, 1), {"setup": _COPY_OUT}),
        "never returned: a setup statement's COPY TO STDOUT (PQgetResult never NULL in COPY OUT "
        "state; pqconn.c pgvc_exec_wait())",
    ),
    (
        "run_parallel",
        ("run_parallel", (Ev("conninfo"), ["SELECT 1"], [[]], None, 1), {"setup": _COPY_IN}),
        "never returned: a setup statement's COPY FROM STDIN waited for rows (pqconn.c pgvc_exec_wait())",
    ),
    (
        "Graph.critical_path",
        ("Graph.critical_path", ((["a", "b", "c"], [[], ["a"], ["b"]]), [1.0, Ev("clearing"), 3.0]), {}),
        "SIGSEGV: a weight whose __float__ empties the weights, read by index after it (graph_type.c critical_path)",
    ),
]
KNOWN_CRASHES: list[tuple[str, tuple[str, tuple, dict], str]] = []
_REACHABLE: set[str] = set()  # targets whose known crash the random search reaches too
_KNOWN_TIMEOUT = 5.0  # a known hang costs this much per run (a fixed call answers in milliseconds)


def _resolve_stamps(call: tuple[str, tuple, dict]) -> tuple[str, tuple, dict]:
    """Replace the "@stamp" comment by the real stamp of the call's first declaration."""
    target, args, kwargs = call
    if target == "plan" and any(r[4] == "@stamp" for r in args[1]):
        try:
            stamp = _stamp(_mdecl(cidx="id"))
        except (TypeError, ValueError, IndexError):  # the declaration's shape changed: no stamp
            return call
        args = (args[0], [(*r[:4], stamp, *r[5:]) if r[4] == "@stamp" else r for r in args[1]])
    return target, args, kwargs


# ---- the tests --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def conninfo(django_db_setup, django_db_blocker):
    from django.db import connection

    from django_pgviews_c.refresh import connection_params

    params = connection_params(connection)
    params["connect_timeout"] = "10"
    params["options"] = "-c statement_timeout=5s"
    return params


@pytest.fixture(scope="module")
def worker(conninfo):
    w = Worker({"PGCONNECT_TIMEOUT": "10", "PGVC_BOUNDARY_CONNINFO": json.dumps(conninfo)})
    yield w
    w.close()


def test_the_module_is_enumerated():
    # Whatever _core holds is fuzzed: a new function gets the generic shape until it has its
    # own in SHAPES (a shape whose function is gone is simply unused).
    found = callables()
    assert {"plan", "split_table", "quote_ident", "run_parallel", "Graph", "Graph.order"} <= set(found)
    assert all(not name.startswith("_") for name in found if "." not in name)


def _property_param(target: str) -> Any:
    known = [w for t, _, w in KNOWN_CRASHES if t == target]
    if target in _REACHABLE and known:
        return pytest.param(target, marks=pytest.mark.xfail(strict=True, reason="; ".join(known)))
    return target


@pytest.mark.parametrize("target", [_property_param(t) for t in callables()])
def test_no_input_crashes_the_process(target, worker, conninfo):
    strategy = shape(target)(conninfo)

    def check(argkw):
        args, kwargs = argkw
        call = (target, args, kwargs)
        why = verdict(worker.call(call))
        if why is not None:
            pytest.fail(f"_core.{target} failed on\n  run({call!r})\n{why}", pytrace=False)

    check = given(strategy)(check)
    for t, call, _ in ONCE_CRASHED + (KNOWN_CRASHES if target in _REACHABLE else []):
        if t == target:
            check = example(_resolve_stamps(call)[1:])(check)
    settings(suppress_health_check=list(HealthCheck), deadline=None, database=None)(check)()


@pytest.mark.parametrize(
    "call, what",
    [
        pytest.param(c, w, marks=pytest.mark.xfail(strict=True, reason=w), id=f"{t}-{i}")
        for i, (t, c, w) in enumerate(KNOWN_CRASHES)
    ],
)
def test_known_crash_is_still_there(call, what, worker):
    call = _resolve_stamps(call)
    why = verdict(worker.call(call, timeout=_KNOWN_TIMEOUT))
    assert why is None, f"{what}: run({call!r})\n{why}"


_CLEARING_CALLBACK = """
import json, sys
from django_pgviews_c import _core

conninfo = json.loads(sys.argv[1])
def statement(i):  # long enough to live outside the small-object allocator
    return f"INSERT INTO boundary_uaf VALUES ('s{i}')" + " " * 2000 + f"-- {i}"
statements = [statement(i) for i in range(6)]
junk = []
def on_event(k, state, *_):
    if k == 0 and state == "running":
        statements.clear()  # the caller's list, emptied while the loop runs
        junk.extend("SELECT 'stale' " + "x" * (len(statement(0)) - 15) for _ in range(200))
out = _core.run_parallel(conninfo, statements, [[]] * 6, [6.0, 5.0, 4.0, 3.0, 2.0, 1.0], 1, on_event=on_event)
print(json.dumps([state for state, _, _ in out]))
"""


@pytest.mark.parametrize(
    "call, what", [pytest.param(c, w, id=f"{t}-{i}") for i, (t, c, w) in enumerate(ONCE_CRASHED)]
)
def test_a_call_that_crashed_once_does_not(call, what, worker):
    call = _resolve_stamps(call)
    why = verdict(worker.call(call))
    assert why is None, f"{what}: run({call!r})\n{why}"


def _column_call(colnames: list) -> tuple[str, tuple, dict]:
    """plan() of a materialized view in sync whose field "margin" has no column in the view,
    the view's columns being ``colnames``: the plan reports them with the missing column."""
    from tests.helpers import decl_tuple

    values = decl_tuple(
        label="app.M", name="m", kind="m", columns=(("id", "id", "integer"), ("margin", "margin", "numeric"))
    )
    row = list(_mrow(_stamp(values), []))
    row[16], row[17] = colnames, ["integer"] * len(colnames)
    return ("plan", ([values], [tuple(row), S_ROW]), {})


@pytest.mark.parametrize(
    "bad, error",
    [
        (1, "builtins.TypeError: plan: catalog[0] colnames must be str, not int"),
        (None, "builtins.TypeError: plan: catalog[0] colnames must be str, not NoneType"),
        ("\udc80", "builtins.UnicodeEncodeError: 'utf-8' codec can't encode character '\\udc80'"),
    ],
    ids=["int", "None", "lone-surrogate"],
)
def test_a_column_name_that_cannot_be_converted_fails_the_plan(bad, error, worker):
    from django_pgviews_c import _core

    # The view's column names come back in the plan's column problems, as given.
    _, args, kwargs = _column_call(["id", "é"])
    assert _core.plan(*args, **kwargs)["columns"] == [(0, "margin", "margin", "numeric", None, ("id", "é"))]
    # One that cannot be read fails the whole plan with its own error (never None in its place,
    # never a SystemError), in a worker: a crash is a failure here, not a lost run.
    kind, detail = worker.call(_column_call(["id", bad]))
    assert (kind, detail[: len(error)]) == ("exc", error)


@pytest.mark.django_db(transaction=True)
def test_a_callback_that_clears_the_statements_does_not_change_what_runs(conninfo):
    # run_parallel once kept borrowed UTF-8 pointers into `statements` while on_event ran: a
    # callback that cleared the list made the loop send freed memory to the server.
    # In a child process: under ASan the read of freed memory aborts it, not the test run.
    dbname = conninfo["dbname"]
    psycopg_compat.query(dbname, "CREATE TABLE boundary_uaf (tag text)")
    try:
        child = subprocess.run(
            [sys.executable, "-c", _CLEARING_CALLBACK, json.dumps(conninfo)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        tags = psycopg_compat.query(dbname, "SELECT tag FROM boundary_uaf ORDER BY tag")
    finally:
        psycopg_compat.query(dbname, "DROP TABLE boundary_uaf")
    assert child.returncode == 0, child.stderr[-2000:]
    assert json.loads(child.stdout) == ["ok"] * 6
    assert tags == [(f"s{i}",) for i in range(6)]


def test_a_crash_is_reported_not_lost(worker):
    # The harness itself: a call that kills the worker is a failure with the input, and the
    # next call gets a fresh worker.
    outcome = worker.call(("__crash__", (), {}))
    # A plain build dies of SIGSEGV; under ASan the sanitizer reports the SEGV and exits.
    assert outcome[0] == "crash" and "SEGV" in outcome[1]
    assert worker.call(("quote_ident", ("a b",), {})) == ("ok", "str")
    assert verdict(worker.call(("quote_ident", (Ev("str"),), {}))) is None
    assert verdict(("exc", "builtins.SystemError: error return without exception set")) is not None


_COPY_SCRIPT = """
import json, sys
from django_pgviews_c import _core

out = _core.run_parallel(json.loads(sys.argv[1]), sys.argv[2:], [[], [], []], [3.0, 2.0, 1.0], 1)
print(json.dumps([[state, (error or {}).get("message")] for state, _, error in out]))
"""


@pytest.mark.django_db(transaction=True)
def test_copy_ends_as_an_error_of_its_statement(conninfo):
    # Nothing reads COPY's rows nor sends it any: the statement fails, saying so, and the
    # connection goes on with the next one. In a child process: a hang is a timeout, not a lost run.
    child = subprocess.run(
        [sys.executable, "-c", _COPY_SCRIPT, json.dumps(conninfo), _COPY_OUT, _COPY_IN, "SELECT 1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert child.returncode == 0, child.stderr
    out = json.loads(child.stdout)
    assert [state for state, _ in out] == ["failed", "failed", "ok"], out
    assert "COPY TO STDOUT is not supported here" in out[0][1]
    assert "COPY FROM STDIN is not supported here" in out[1][1]
