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
by ``_materialize`` in the worker, so every failure message is a call you can paste into
``python -c`` after ``from tests.test_core_boundary import *``: ``run(CALL)``.
"""

from __future__ import annotations

import gc
import json
import operator
import os
import pickle
import selectors
import signal
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests import psycopg_compat

ROOT = Path(__file__).resolve().parent.parent
CALL_TIMEOUT = 30.0  # seconds: generous, a loaded machine included; a hang is a failure

# ---- hostile objects ----------------------------------------------------------------------


class Boom(Exception):
    """What every hostile dunder raises."""


def _boom(*_a: Any, **_k: Any) -> Any:
    raise Boom("hostile object")


class Evil:
    """Every protocol raises."""

    __str__ = __repr__ = __eq__ = __ne__ = __lt__ = __bool__ = __len__ = __iter__ = _boom
    __float__ = __index__ = __int__ = __getitem__ = __contains__ = __call__ = _boom
    __hash__ = _boom  # type: ignore[assignment]


class EvilEq:
    """Hashes like "a" (so it collides with the name "a" in a dict) but cannot compare."""

    __eq__ = __ne__ = __str__ = __repr__ = _boom

    def __hash__(self) -> int:
        return hash("a")


class EvilStr(str):
    """A str (PyUnicode_Check passes) whose hash, comparison and conversions raise."""

    __hash__ = __eq__ = __ne__ = __str__ = __repr__ = __len__ = __iter__ = _boom  # type: ignore[assignment]


class EvilInt(int):
    """An int whose conversions and truth raise."""

    __index__ = __int__ = __float__ = __bool__ = __repr__ = __str__ = __hash__ = __eq__ = _boom  # type: ignore[assignment]


class EvilFloat(float):
    __float__ = __bool__ = __repr__ = __str__ = _boom  # type: ignore[assignment]


class EvilList(list):
    """A list subclass: PyList_Check passes, iterating or measuring it raises."""

    __iter__ = __len__ = __getitem__ = __repr__ = __bool__ = _boom  # type: ignore[assignment]


class EvilTuple(tuple):
    __iter__ = __len__ = __getitem__ = __repr__ = __hash__ = __eq__ = _boom  # type: ignore[assignment]


class EvilDict(dict):
    __iter__ = __len__ = __getitem__ = __repr__ = keys = items = values = _boom  # type: ignore[assignment]


class ShortSeq:
    """A sequence that claims ten items and has none."""

    def __len__(self) -> int:
        return 10

    def __getitem__(self, i: int) -> Any:
        raise IndexError(i)


class Clearing:
    """Empties the lists the call was given when converted or iterated, then answers: a C loop
    that still reads those lists by index reads freed memory."""

    def __init__(self, root: list[Any]) -> None:
        self.root = root

    def _clear(self) -> None:
        for arg in self.root:
            if isinstance(arg, list) and not isinstance(arg, EvilList):
                arg.clear()
        _ = ["SELECT 'stale'" + "-" * 600 for _ in range(64)]  # reuse what was freed

    def __iter__(self) -> Any:
        self._clear()
        return iter(())

    def __float__(self) -> float:
        self._clear()
        return 1.0

    def __index__(self) -> int:
        self._clear()
        return 0


@dataclass(frozen=True)
class Ev:
    """A hostile value in an input; the worker builds the object it names."""

    kind: str


# Kinds whose object can be a dict key (its hash works).
_KEY_KINDS = ("eq",)
_VALUE_KINDS = (
    "evil", "eq", "str", "int", "float", "list", "tuple", "dict", "short", "int_subclass_big",
    "cb_ok", "cb_raise", "cb_clear", "cb_mutate", "cb_interrupt", "clearing",
)  # fmt: skip


def _callback(kind: str, root: list[Any]) -> Any:
    """on_event callbacks that misbehave: raise, or change the lists the C loop is reading."""

    def cb(*_event: Any) -> None:
        if kind == "cb_raise":
            raise Boom("callback")
        if kind == "cb_interrupt":
            raise KeyboardInterrupt
        for arg in root:
            if isinstance(arg, list) and not isinstance(arg, EvilList):
                if kind == "cb_clear":
                    arg.clear()
                elif kind == "cb_mutate":
                    arg[:] = [("x" * 600 + str(i)) if isinstance(v, str) else None for i, v in enumerate(arg)]
        if kind != "cb_ok":
            # Reuse what was freed, so a stale pointer reads someone else's text.
            _ = ["SELECT 'stale'" + "-" * 600 for _ in range(64)]

    return cb


def _materialize(value: Any, root: list[Any]) -> Any:
    if isinstance(value, Ev):
        k = value.kind
        if k.startswith("cb_"):
            return _callback(k, root)
        if k == "clearing":
            return Clearing(root)
        if k == "conninfo":  # the test database's libpq keywords, given to the worker
            return json.loads(os.environ["PGVC_BOUNDARY_CONNINFO"])
        return {
            "evil": Evil,
            "eq": EvilEq,
            "str": lambda: EvilStr("app.A"),
            "int": lambda: EvilInt(0),
            "float": lambda: EvilFloat(1.0),
            "list": lambda: EvilList(["SELECT 1"]),
            "tuple": lambda: EvilTuple(("a", "b")),
            "dict": lambda: EvilDict(dbname="x"),
            "short": ShortSeq,
            "int_subclass_big": lambda: EvilInt(2**80),
        }[k]()
    if isinstance(value, list):
        return [_materialize(v, root) for v in value]
    if isinstance(value, tuple):
        return tuple(_materialize(v, root) for v in value)
    if isinstance(value, dict):
        return {_materialize(k, root): _materialize(v, root) for k, v in value.items()}
    return value


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


# ---- what the calls look like ---------------------------------------------------------------

_NASTY_CHARS = st.characters(blacklist_categories=())  # surrogates and control characters too
_texts = st.one_of(
    st.text(max_size=12),
    st.text(alphabet=_NASTY_CHARS, max_size=12),
    st.sampled_from(["", "\x00", "a\x00b", "\udc80", "é", '"', "'", "\\", ".", "a.b", '"a"."b"', "select"]),
    st.builds(
        operator.mul,
        st.sampled_from(["a", "é", "\x00", "\udc80", "'", '"', "\\", "€", ".", "ab."]),
        st.sampled_from([63, 64, 200, 513, 1025, 70_000]),
    ),
)
_ints = st.one_of(st.integers(-3, 70), st.integers(), st.sampled_from([2**31, 2**63, -(2**63) - 1, 2**64]))
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    _ints,
    st.floats(),
    st.binary(max_size=16),
    _texts,
    st.sampled_from([Ev(k) for k in _VALUE_KINDS]),
)
_keys = st.one_of(st.none(), _ints, _texts, st.sampled_from([Ev(k) for k in _KEY_KINDS]))
anything = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.dictionaries(_keys, inner, max_size=3),
    ),
    max_leaves=12,
)


def sometimes(valid: st.SearchStrategy, odds: int = 8) -> st.SearchStrategy:
    """Mostly the valid value; one time in `odds`, anything at all."""
    # A wide range taken modulo: hypothesis draws the ends of a small range far more often.
    return st.integers(0, 1 << 16).flatmap(lambda k: anything if k % odds == 1 else valid)


def _random_kwargs(names: tuple[str, ...] = ()) -> st.SearchStrategy:
    return st.dictionaries(
        st.one_of(st.sampled_from(names or ("x",)), st.text(max_size=5)), anything, max_size=2
    )


def _generic(_conninfo: dict) -> st.SearchStrategy:
    return st.tuples(st.lists(anything, max_size=4).map(tuple), _random_kwargs())


def _strings(n: int, kw: tuple[str, ...]) -> Any:
    def build(_conninfo: dict) -> st.SearchStrategy:
        positional = st.tuples(st.lists(sometimes(_texts, 4), min_size=n, max_size=n).map(tuple), st.just({}))
        keywords = st.tuples(st.just(()), st.fixed_dictionaries({k: sometimes(_texts, 4) for k in kw}))
        return mostly(st.one_of(positional, keywords), _generic(_conninfo))

    return build


def _fingerprint(_conninfo: dict) -> st.SearchStrategy:
    return st.tuples(st.lists(sometimes(st.one_of(st.none(), _texts), 4), max_size=5).map(tuple), st.just({}))


_LABELS = ["app.A", "app.B", "app.C"]
_SQL = st.sampled_from(
    [
        "SELECT 1 AS id",
        "SELECT 1/0",
        "SELECT pg_backend_pid()",
        "not sql at all",
        "",
        "SELECT 1; SELECT 2",
        "SELECT 1 AS id;",
        "COPY (SELECT 1) TO STDOUT",
        "CREATE TEMP TABLE boundary_c (a int); COPY boundary_c FROM STDIN",
        "LISTEN boundary",
        "BEGIN",
        "SET lock_timeout = 1",
    ]
)


def _decl(i: int) -> st.SearchStrategy:
    from django_pgviews_c import _core
    from tests.helpers import decl_tuple

    label = _LABELS[i]
    name = f"v{i}"
    index = st.tuples(
        sometimes(st.sampled_from(["ix_a", "i" * 70, "é" * 40]), 20),
        # Segments: text, and the slots 0 (the table) and 1 (the index name).
        sometimes(st.sampled_from([("CREATE INDEX ", 1, " ON ", 0, " (id)"), ("x",), (), (2,)]), 20),
    )
    column = st.tuples(
        sometimes(st.sampled_from(["id", "margin", "é" * 40]), 20),
        sometimes(st.sampled_from(["id", "Margin", "c" * 70]), 20),
        sometimes(st.sampled_from(["integer", "numeric(10, 2)", "text", None]), 20),
    )
    by_name = {
        "label": sometimes(st.just(label), 40),
        "schema": sometimes(st.sampled_from([None, "public", "other", "é" * 40]), 40),
        "name": sometimes(st.sampled_from([name, "n" * 70, "é" * 40]), 40),
        "kind": sometimes(st.sampled_from(["v", "m"]), 40),
        "sql": sometimes(_SQL, 40),
        "dependencies": sometimes(
            st.lists(sometimes(st.sampled_from(_LABELS + ["app.Nope"])), max_size=3).map(tuple), 40
        ),
        "with_data": sometimes(st.booleans(), 40),
        "tablespace": sometimes(st.sampled_from([None, "ts"]), 40),
        "indexes": sometimes(st.lists(sometimes(index), max_size=2).map(tuple), 20),
        "concurrent_index": sometimes(st.sampled_from([None, "id", "x" * 70]), 40),
        "concurrent_index_tablespace": sometimes(st.sampled_from([None, "ts"]), 40),
        "db_table": sometimes(st.just(name), 40),
        "columns": sometimes(st.lists(sometimes(column), max_size=2).map(tuple), 20),
    }
    # The planner's own list of fields, put in its order by the tests' one builder: a field it
    # gains is fuzzed generically until it has a strategy here.
    fields = {field: by_name.get(field, anything) for field in _core.DECL_FIELDS}
    return sometimes(st.fixed_dictionaries(fields).map(lambda values: decl_tuple(**values)), 40)


_SCHEMA_ROW = (
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
_COMMENTS = st.one_of(
    st.none(),
    _texts,
    st.builds(
        lambda user, body, rest: f"{user}django-pgviews-c:1 body={body}{rest}",
        st.sampled_from(["", "mine\n", "django-pgviews-c:1\n"]),
        st.sampled_from(["", "0" * 32, "f" * 40, "zz"]),
        st.sampled_from(["", " idx=", " idx=" + "1" * 32 + " rw=1 def=" + "2" * 32, " def=", " " * 3]),
    ),
)


def _row(i: int) -> st.SearchStrategy:
    fields = [
        sometimes(st.sampled_from([11 + i, 2**40, -1]), 40),
        sometimes(st.sampled_from(["public", "other"]), 40),
        sometimes(st.sampled_from([f"v{i}", "x", "é" * 40]), 40),
        sometimes(st.sampled_from(["v", "m", "v", "m", "r", "S", ""]), 40),
        sometimes(_COMMENTS, 40),
        sometimes(st.booleans(), 40),
        sometimes(st.sampled_from([None, "ts"]), 40),
        sometimes(st.sampled_from([None, "1", "2"]), 40),
        sometimes(st.sampled_from([None, "0" * 32]), 40),
        sometimes(st.sampled_from([None, "postgres", "é"]), 40),
        sometimes(
            st.one_of(
                st.none(),
                st.lists(
                    sometimes(
                        st.sampled_from(["=r/postgres", "bob=arwdDxtm*/postgres", '"a""b"=r/x', "=", "x=Q/y"])
                    ),
                    max_size=3,
                ),
            ),
            20,
        ),
        sometimes(st.lists(sometimes(st.sampled_from(["v0_id_index", "ix_a", "é"])), max_size=2), 20),
        sometimes(st.lists(sometimes(st.sampled_from([11, 12, 13, 99, -1])), max_size=3), 20),
        sometimes(st.sampled_from([None, "SELECT 1 AS id"]), 40),
        sometimes(
            st.one_of(
                st.none(),
                st.lists(sometimes(st.sampled_from(["CREATE INDEX ix_a ON public.v0 (id)"])), max_size=2),
            ),
            20,
        ),
        sometimes(st.sampled_from(["public", None]), 40),
        sometimes(st.sampled_from([[], ["id"], ["id", "Margin"], ["é" * 40]]), 40),  # column names
        sometimes(st.sampled_from([[], ["integer"], ["integer", "numeric"]]), 40),  # their types
    ]
    return sometimes(st.tuples(*fields), 40)


def _plan(_conninfo: dict) -> st.SearchStrategy:
    decls = st.lists(st.integers(0, 2), max_size=3, unique=True).flatmap(
        lambda ix: st.tuples(*[_decl(i) for i in ix])
    )
    rows = st.lists(st.integers(0, 2), max_size=3, unique=True).flatmap(
        lambda ix: st.tuples(*[_row(i) for i in ix])
    )
    kw = st.fixed_dictionaries(
        {},
        optional={
            k: sometimes(st.booleans(), 4)
            for k in ("force", "update", "check_sql_changed", "restore_dependants", "build_beside", "chain")
        }
        | {"recreate": sometimes(st.lists(st.integers(-1, 3), max_size=3).map(tuple), 4)}
        | {
            k: sometimes(st.one_of(st.none(), st.lists(st.integers(-1, 3), max_size=3)), 4)
            for k in ("defer", "swap_pending")
        },
    )
    shaped = st.tuples(
        st.tuples(
            sometimes(decls.map(list), 20),
            sometimes(
                st.tuples(rows, st.integers(0, 255)).map(
                    lambda rb: [*rb[0], _SCHEMA_ROW] if rb[1] % 10 else list(rb[0])
                ),
                20,
            ),
        ),
        kw,
    )
    return mostly(shaped, _generic(_conninfo))


def mostly(shaped: st.SearchStrategy, generic: st.SearchStrategy) -> st.SearchStrategy:
    """The shaped call three times in four, the generic one otherwise."""
    return st.integers(0, 1 << 16).flatmap(lambda k: generic if k % 4 == 1 else shaped)


def _conninfos(conninfo: dict) -> st.SearchStrategy:
    return sometimes(
        st.one_of(
            st.just(conninfo),
            st.dictionaries(st.sampled_from(list(conninfo)), sometimes(_texts, 3), max_size=2).map(
                lambda d: {**conninfo, **d}
            ),
        ),
        6,
    )


def _run_parallel(conninfo: dict) -> st.SearchStrategy:
    def shaped(n: int) -> st.SearchStrategy:
        args = st.tuples(
            _conninfos(conninfo),
            sometimes(st.lists(sometimes(_SQL, 12), min_size=n, max_size=n), 8),
            sometimes(
                st.lists(
                    sometimes(st.lists(sometimes(st.integers(-1, n)), max_size=2), 8), min_size=n, max_size=n
                ),
                8,
            ),
            sometimes(st.lists(sometimes(st.floats(-10, 10), 8), min_size=n, max_size=n), 8),
            sometimes(st.integers(-1, 4), 8),
        )
        kw = st.fixed_dictionaries(
            {},
            optional={
                "setup": sometimes(
                    st.sampled_from([None, "SET statement_timeout = '10s'", "garbage", "BEGIN"]), 6
                ),
                "on_event": st.one_of(
                    st.none(),
                    st.sampled_from(
                        [Ev("cb_ok"), Ev("cb_raise"), Ev("cb_clear"), Ev("cb_mutate"), Ev("cb_interrupt")]
                    ),
                    anything,
                ),
            },
        )
        return st.tuples(args, kw)

    return mostly(st.integers(0, 4).flatmap(shaped), _generic(conninfo))


def _connect_loop(conninfo: dict) -> st.SearchStrategy:
    # jobs stays small: each one is a real connection to the test server, which other tests share.
    jobs = st.one_of(st.integers(-2, 3), st.sampled_from([0, 1001, 1 << 40]), st.none(), st.text(max_size=2))
    args = st.tuples(st.one_of(_conninfos(conninfo), st.none(), st.lists(anything, max_size=2)), jobs)
    kw = st.fixed_dictionaries(
        {}, optional={"session": sometimes(st.just({"TimeZone": "UTC"}), 4), "setup": sometimes(st.none(), 4)}
    )
    return st.tuples(args, kw)


def _close_loop_connections(conninfo: dict) -> st.SearchStrategy:
    return st.tuples(st.tuples(anything), st.just({}))


def _execute(conninfo: dict) -> st.SearchStrategy:
    shaped = st.tuples(st.tuples(_conninfos(conninfo), sometimes(_SQL, 6)), st.just({}))
    return mostly(shaped, _generic(conninfo))


_NAMES = ["a", "b", "c", "d"]


def _graph_args() -> st.SearchStrategy:
    def build(n: int) -> st.SearchStrategy:
        names = _NAMES[:n]
        dep = sometimes(st.sampled_from(names + ["zz"]) if names else st.just("zz"), 10)
        return st.tuples(
            sometimes(st.just(names), 8),
            sometimes(st.lists(sometimes(st.lists(dep, max_size=2), 8), min_size=n, max_size=n), 8),
        )

    return st.integers(0, 4).flatmap(build)


def _graph_ctor(_conninfo: dict) -> st.SearchStrategy:
    return mostly(st.tuples(_graph_args(), st.just({})), _generic(_conninfo))


def _graph_member(member: str) -> Any:
    indices = sometimes(st.lists(sometimes(st.integers(-2, 5)), max_size=3), 6)
    per_member = {
        "dependants": st.tuples(indices, sometimes(st.booleans(), 4)).map(
            lambda t: t[:1] if t[1] is False else t
        ),
        "dependencies": st.tuples(indices, sometimes(st.booleans(), 4)).map(
            lambda t: t[:1] if t[1] is False else t
        ),
        "critical_path": st.one_of(
            st.just(()),
            st.tuples(sometimes(st.lists(sometimes(st.floats(), 8), max_size=5), 6)),
        ),
    }

    def build(_conninfo: dict) -> st.SearchStrategy:
        valid = st.integers(1, 4).map(lambda n: (_NAMES[:n], [[]] + [[_NAMES[k - 1]] for k in range(1, n)]))
        graph = st.one_of(valid, valid, _graph_args())
        margs = per_member.get(member, st.just(()))
        margs = mostly(margs, st.lists(anything, max_size=3).map(tuple))
        kw = st.one_of(st.just({}), st.just({}), _random_kwargs(("include_self", "weights", "indices")))
        return st.tuples(st.tuples(graph, margs).map(lambda gm: (gm[0], *gm[1])), kw)

    return build


def callables() -> list[str]:
    """Every callable of the module: functions, Graph's constructor, methods and attributes."""
    from django_pgviews_c import _core

    names = [n for n, v in vars(_core).items() if callable(v) and not n.startswith("_") and n != "Graph"]
    names.append("Graph")
    names += [f"Graph.{m}" for m in vars(_core.Graph) if not m.startswith("_")] + ["Graph.__len__"]
    return sorted(names)


SHAPES: dict[str, Any] = {
    "quote_ident": _strings(1, ("name",)),
    "quote_literal": _strings(1, ("value",)),
    "split_table": _strings(1, ("db_table",)),
    "qualified_name": _strings(2, ("schema", "name")),
    "derived_name": _strings(2, ("base", "suffix")),
    "fingerprint": _fingerprint,
    "plan": _plan,
    "run_parallel": _run_parallel,
    "connect_loop": _connect_loop,
    "close_loop_connections": _close_loop_connections,
    "execute": _execute,
    "Graph": _graph_ctor,
}


def shape(target: str) -> Any:
    if target.startswith("Graph."):
        return _graph_member(target.split(".", 1)[1])
    return SHAPES.get(target, _generic)


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
