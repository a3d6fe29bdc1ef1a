"""The refresh loop's C boundary: whatever run_parallel and Graph are handed, they answer with
TypeError/ValueError (never a crash), and what they read stays theirs while Python code runs."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from django.db import connection

from django_pgviews_c import _core
from django_pgviews_c.refresh import connection_params
from tests.helpers import catalog_rows, execute

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def log_table(transactional_db):
    execute("CREATE TABLE rb_log (tag text)")
    yield
    execute("DROP TABLE IF EXISTS rb_log")


def _fresh(text: str) -> str:
    # Built at run time, so the list holds the only reference and clearing it frees the text.
    return "".join(list(text))


def test_a_callback_that_clears_the_statements_changes_nothing(log_table):
    statements = [_fresh(f"INSERT INTO rb_log VALUES ('statement-{k:04d}')") for k in range(6)]
    deps = [[], [0], [1], [2], [3], [4]]
    conninfo = {k: _fresh(v) for k, v in connection_params(connection).items()}
    garbage = []

    def on_event(k, state, seconds, error):
        statements.clear()
        deps.clear()
        conninfo.clear()
        # Reuse the memory the texts were in.
        garbage.extend(_fresh("X" * 60) for _ in range(200))

    out = _core.run_parallel(conninfo, statements, deps, None, 1, on_event=on_event)
    assert [state for state, _, _ in out] == ["ok"] * 6
    rows = catalog_rows("SELECT tag FROM rb_log ORDER BY tag")
    assert rows == [(f"statement-{k:04d}",) for k in range(6)]


def test_a_reconnect_after_the_callback_cleared_conninfo(log_table):
    # Statement 0 ends its own session: the loop reconnects from the conninfo it copied.
    conninfo = {k: _fresh(v) for k, v in connection_params(connection).items()}

    def on_event(k, state, seconds, error):
        conninfo.clear()
        conninfo["host"] = "nowhere.invalid"

    out = _core.run_parallel(
        conninfo,
        ["SELECT pg_terminate_backend(pg_backend_pid())", "INSERT INTO rb_log VALUES ('after')"],
        [[], []],
        [2.0, 1.0],
        1,
        on_event=on_event,
    )
    assert out[0][0] == "failed" and out[0][2]["connection_lost"]
    assert out[1][0] == "ok"
    assert catalog_rows("SELECT tag FROM rb_log") == [("after",)]


_HOSTILE = textwrap.dedent(
    """
    import itertools
    from django_pgviews_c import _core

    class Evil:
        def __index__(self): raise RuntimeError("index")
        def __float__(self): raise RuntimeError("float")
        def __len__(self): return 10**9
        def __iter__(self): raise RuntimeError("iter")
        def __hash__(self): raise RuntimeError("hash")
        def __eq__(self, other): raise RuntimeError("eq")

    values = [None, 0, -1, 2**70, 1.5, float("nan"), "x", "a\\x00b", "\\udcff", b"SELECT 1",
              [], [None], [[None]], [[-1]], [[2**70]], [["0"]], [1.5], {}, {"a": 1}, {1: "a"},
              {"host": "a\\x00"}, {"connect_timeout": "soon"}, (), Evil(), [Evil()], [[Evil()]],
              object(), range(3)]
    base = [{"dbname": "never"}, ["SELECT 1"], [[]], [0.0], 1]
    refused = 0
    for pos in range(5):
        for v in values:
            args = list(base)
            args[pos] = v
            try:
                _core.run_parallel(*args)
            except (TypeError, ValueError, IndexError, OverflowError, RuntimeError):
                refused += 1
            except Exception as exc:  # a connection error: the arguments were accepted
                assert type(exc).__name__ == "ConnectionLostError", repr(exc)
    for key in ("setup", "on_event", "session", "guard", "on_notice", "lock_retries",
                "lock_timeout_ms", "last_lock_timeout_ms"):
        for v in values:
            try:
                _core.run_parallel({"dbname": "never", "host": "/nonexistent"}, ["SELECT 1"], [[]],
                                   None, 1, **{key: v})
            except (TypeError, ValueError, IndexError, OverflowError, RuntimeError):
                refused += 1
            except Exception as exc:
                assert type(exc).__name__ == "ConnectionLostError", repr(exc)
    for names, deps in itertools.product(values, values):
        try:
            g = _core.Graph(names, deps)
        except (TypeError, ValueError, RuntimeError, OverflowError, LookupError) as exc:
            refused += 1
            continue
        except Exception as exc:
            assert type(exc).__name__ in ("MissingDependencyError",), repr(exc)
            continue
        for method in ("dependants", "dependencies", "critical_path", "project"):
            for v in values:
                try:
                    getattr(g, method)(v)
                except (TypeError, ValueError, IndexError, OverflowError, RuntimeError,
                        AttributeError):
                    refused += 1
                except Exception as exc:
                    assert type(exc).__name__ == "CycleError", repr(exc)
    print("refused", refused)
    """
)


def test_any_value_is_refused_never_a_crash():
    proc = subprocess.run(
        [sys.executable, "-c", _HOSTILE],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PGCONNECT_TIMEOUT": "2", **__import__("os").environ},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "refused" in proc.stdout


def test_arguments_are_named_in_the_error():
    with pytest.raises(TypeError, match=r"statements\[1\] must be a str"):
        _core.run_parallel({}, ["SELECT 1", 2], [[], []], None, 1)
    with pytest.raises(ValueError, match=r"statements\[0\] contains a NUL byte"):
        _core.run_parallel({}, ["SELECT 1\x00; DROP TABLE x"], [[]], None, 1)
    with pytest.raises(TypeError, match="conninfo must be a dict of str to str"):
        _core.run_parallel({"port": 5432}, ["SELECT 1"], [[]], None, 1)
    with pytest.raises(TypeError, match=r"priority\[0\] must be a number"):
        _core.run_parallel({}, ["SELECT 1"], [[]], ["high"], 1)
    with pytest.raises(ValueError, match="connect_timeout"):
        _core.run_parallel({"connect_timeout": "soon"}, ["SELECT 1"], [[]], None, 1)
    with pytest.raises(TypeError, match="on_event"):
        _core.run_parallel({}, ["SELECT 1"], [[]], None, 1, on_event=3)


def test_text_that_has_no_utf8_is_named_in_the_error():
    # A lone surrogate cannot be sent: the error says which argument holds it (the codec's own
    # error, its cause, says where), as for any other value the loop refuses.
    with pytest.raises(
        ValueError, match=r"^run_parallel: statements\[1\] is not valid text: 'utf-8' codec"
    ) as info:
        _core.run_parallel({}, ["SELECT 1", "SELECT '\udcff'"], [[], []], None, 1)
    assert isinstance(info.value.__cause__, UnicodeEncodeError)
    with pytest.raises(ValueError, match=r"^run_parallel: guard\[0\] is not valid text"):
        _core.run_parallel({}, ["SELECT 1"], [[]], None, 1, guard=["\udcff"])
    with pytest.raises(ValueError, match=r"^run_parallel: session is not valid text"):
        _core.run_parallel({}, ["SELECT 1"], [[]], None, 1, session={"TimeZone": "\udcff"})


def test_connect_loop_names_itself_in_the_error():
    # connect_loop reads its arguments as run_parallel does; its errors named run_parallel.
    with pytest.raises(TypeError, match=r"^connect_loop: conninfo must be a dict of str to str"):
        _core.connect_loop({"port": 5432}, 1)
    with pytest.raises(ValueError, match=r"^connect_loop: setup contains a NUL byte"):
        _core.connect_loop({}, 1, setup="SELECT 1\x00")
    with pytest.raises(ValueError, match=r"^connect_loop: conninfo is not valid text"):
        _core.connect_loop({"host": "\udcff"}, 1)
    with pytest.raises(ValueError, match=r"^connect_loop: connect_timeout is not an integer"):
        _core.connect_loop({"connect_timeout": "soon"}, 1)
