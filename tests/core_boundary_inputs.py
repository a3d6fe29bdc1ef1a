"""The inputs of the C boundary tests (tests/test_core_boundary.py and
tests/test_core_boundary_shaped.py): the hostile objects a worker builds from ``Ev("kind")``,
and the shape of a valid call of each ``_core`` callable, with strategies that replace a few of
its parts, so inputs reach past the first type check.
"""

from __future__ import annotations

import json
import operator
import os
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

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
