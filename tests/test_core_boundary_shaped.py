"""The C boundary (tests/test_core_boundary.py), for the entry points that came after its
shapes were written: run_parallel's later keywords (guard, session, on_notice, on_refused, the
lock timeouts, connections), _core.Schedule stepped through next() and done(), and the
statement builders of the aside and restore code and of query_sql. test_core_boundary gives
them its generic shape only, which seldom gets past their argument parsing; here each gets a
shape that mostly looks like a valid call, with a few parts replaced by anything at all.

The calls run in test_core_boundary's worker process (a crash or a hang is a failure naming the
call); "Schedule.drive" is this file's own target: Schedule(*args[0]), then each step of args[1]
("next",) or ("done", index, ok) called on it."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import core_boundary_inputs as inputs
from tests import test_core_boundary as boundary
from tests.core_boundary_inputs import Ev, _conninfos, _texts, anything, mostly, sometimes
from tests.test_core_boundary import verdict

_resolve_plain = boundary._resolve


def _resolve(core: Any, target: str, args: tuple, kwargs: dict) -> Any:
    if target != "Schedule.drive":
        return _resolve_plain(core, target, args, kwargs)
    schedule = core.Schedule(*args[0], **kwargs)
    for step in args[1]:
        if step and step[0] == "next":
            schedule.next()
        else:
            schedule.done(*step[1:])
    return schedule


def _worker() -> None:
    boundary._resolve = _resolve
    boundary._worker()


class Worker(boundary.Worker):
    def _spawn(self) -> Any:
        import subprocess
        import sys

        self.stderr.seek(0)
        self.stderr.truncate()
        return subprocess.Popen(
            [sys.executable, "-c", "from tests.test_core_boundary_shaped import _worker; _worker()"],
            cwd=boundary.ROOT,
            env=self.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
        )


# ---- shapes ------------------------------------------------------------------------------------

_CALLBACKS = st.one_of(
    st.none(),
    st.sampled_from([Ev("cb_ok"), Ev("cb_raise"), Ev("cb_clear"), Ev("cb_mutate"), Ev("cb_interrupt")]),
    anything,
)
_SQL = st.sampled_from(
    ["SELECT 1", "SELECT 1/0", "DO $$BEGIN RAISE NOTICE 'n'; END$$", "LOCK TABLE pg_class", "garbage", ""]
)


def _run_parallel(conninfo: dict) -> st.SearchStrategy:
    def shaped(n: int) -> st.SearchStrategy:
        args = st.tuples(
            _conninfos(conninfo),
            sometimes(st.lists(sometimes(_SQL, 12), min_size=n, max_size=n), 8),
            sometimes(st.just([[]] * n), 8),
            st.none(),
            sometimes(st.integers(1, 3), 8),
        )
        names = st.sampled_from([None, "pg_class", "public.nowhere", '"odd"."name"', "a" * 300])
        kw = st.fixed_dictionaries(
            {},
            optional={
                "guard": sometimes(st.lists(sometimes(names, 8), min_size=n, max_size=n), 6),
                "session": sometimes(
                    st.dictionaries(
                        st.sampled_from(["TimeZone", "search_path", "work_mem", "x.y"]), _texts, max_size=2
                    ),
                    6,
                ),
                "on_event": _CALLBACKS,
                "on_notice": _CALLBACKS,
                "on_refused": _CALLBACKS,
                "lock_retries": sometimes(st.integers(-1, 3), 4),
                "lock_timeout_ms": sometimes(st.integers(-1, 50), 4),
                "last_lock_timeout_ms": sometimes(st.integers(-1, 100), 4),
                "connections": st.one_of(st.none(), anything),
            },
        )
        return st.tuples(args, kw)

    return st.integers(0, 3).flatmap(shaped)


def _schedule_drive(_conninfo: dict) -> st.SearchStrategy:
    def shaped(n: int) -> st.SearchStrategy:
        deps = st.lists(
            sometimes(st.lists(sometimes(st.integers(-1, n)), max_size=3), 8), min_size=n, max_size=n
        )
        prio = st.one_of(st.none(), st.lists(sometimes(st.floats(), 8), min_size=n, max_size=n))
        index = sometimes(st.integers(-1, n), 6)
        step = st.one_of(st.just(("next",)), st.tuples(st.just("done"), index, sometimes(st.booleans(), 6)))
        return st.tuples(
            st.tuples(st.tuples(sometimes(deps, 8), prio), st.lists(step, max_size=2 * n + 2)), st.just({})
        )

    return st.integers(0, 6).flatmap(shaped)


_KINDS = sometimes(st.sampled_from(["v", "m"]), 6)
_SCHEMA = st.one_of(st.none(), _texts)
_ACL = sometimes(
    st.lists(
        sometimes(
            st.sampled_from(
                ["bob=r/alice", '"a""b"=arwdDxt*/alice', "=r/alice", "bob=", "=", '"', "é=é/é", "x=r*w/"]
            ),
            4,
        ),
        max_size=3,
    ),
    6,
)


def _positional(*parts: st.SearchStrategy) -> st.SearchStrategy:
    return st.tuples(st.tuples(*parts), st.just({}))


def _statement_builders() -> dict[str, Any]:
    text = sometimes(_texts, 6)
    return {
        "aside_statement": _positional(
            sometimes(st.sampled_from(["drop", "refresh"]), 4), _SCHEMA, text, _KINDS
        ),
        "grant_statements": _positional(_SCHEMA, text, _KINDS, _ACL, st.one_of(st.none(), text)),
        "restore_statements": _positional(
            _SCHEMA,
            text,
            _KINDS,
            text,
            sometimes(st.booleans(), 4),
            st.one_of(st.none(), text),
            sometimes(st.lists(text, max_size=2), 6),
            st.one_of(st.none(), text),
            _ACL,
            st.one_of(st.none(), text),
        ),
        "comment_statement": _positional(
            _SCHEMA, text, _KINDS, st.one_of(st.none(), text), st.one_of(st.none(), text)
        ),
        "build_check_statement": _positional(_SCHEMA, text, text),
        "refresh_sql": _positional(text, sometimes(st.booleans(), 4)),
    }


def _query_sql(_conninfo: dict) -> st.SearchStrategy:
    from django_pgviews_c import _core

    kw = st.fixed_dictionaries(
        {},
        optional={
            "table": st.one_of(st.none(), _texts),
            "ms": sometimes(st.integers(-1, 2**31), 4),
            "schema": st.one_of(st.none(), _texts),
            "tables": sometimes(st.lists(sometimes(_texts, 6), max_size=3), 4),
        },
    )
    return st.tuples(st.tuples(sometimes(st.sampled_from(sorted(_core.query_names())), 8)), kw)


SHAPES: dict[str, Any] = {
    "run_parallel": _run_parallel,
    "Schedule.drive": _schedule_drive,
    "query_sql": _query_sql,
    **{
        name: (lambda shape: lambda _c: mostly(shape, inputs._generic(_c)))(s)
        for name, s in _statement_builders().items()
    },
}


# ---- the tests -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def worker(conninfo):
    import json

    w = Worker({"PGCONNECT_TIMEOUT": "10", "PGVC_BOUNDARY_CONNINFO": json.dumps(conninfo)})
    yield w
    w.close()


@pytest.fixture(scope="module")
def conninfo(django_db_setup, django_db_blocker):
    from django.db import connection

    from django_pgviews_c.refresh import connection_params

    params = connection_params(connection)
    params["connect_timeout"] = "10"
    params["options"] = "-c statement_timeout=5s"
    return params


def test_every_entry_point_has_a_shape_here_or_there():
    # A new function of _core gets a shape of its own, in one file or the other, not only the
    # generic one (which seldom gets past the argument parsing).
    from django_pgviews_c import _core

    # Schedule's constructor is driven by "Schedule.drive"; PlanAction is plan()'s result type.
    shaped = set(SHAPES) | set(inputs.SHAPES) | {"Schedule", "PlanAction"}
    takes_nothing = {"catalog_sql", "query_names", "populated_sql", "lock_holders_sql", "libpq_version"}
    takes_nothing |= {"aside_sql", "aside_relations_sql", "aside_lock_sql", "freshness_sql"}
    missing = [n for n in inputs.callables() if "." not in n and n not in shaped | takes_nothing]
    assert missing == []
    assert set(vars(_core.Schedule)) & {"next", "done"} == {"next", "done"}


@pytest.mark.parametrize("target", sorted(SHAPES))
def test_no_shaped_input_crashes_the_process(target, worker, conninfo):
    strategy = SHAPES[target](conninfo)

    def check(argkw: tuple) -> None:
        args, kwargs = argkw
        call = (target, args, kwargs)
        why = verdict(worker.call(call))
        if why is not None:
            pytest.fail(f"_core.{target} failed on\n  run({call!r})\n{why}", pytrace=False)

    check = given(strategy)(check)
    settings(suppress_health_check=list(HealthCheck), deadline=None, database=None)(check)()
