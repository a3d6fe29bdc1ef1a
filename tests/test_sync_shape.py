"""The code stays readable: one concern per module, no per-instance state kept in the sync's
class attributes (where one Syncer would share it with the next), no function of the C core or
of the package over 60 lines, and no file of either over 700 lines: a long function is split
into named steps, a long file by concern."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

from django_pgviews_c import executor, order, report, sync, syncresult

MAX_LINES = 60
MAX_FILE_LINES = 700
ROOT = Path(__file__).resolve().parent.parent


def _source_files() -> dict[str, int]:
    paths = [*ROOT.glob("csrc/*.c"), *ROOT.glob("csrc/*.h"), *(ROOT / "django_pgviews_c").rglob("*.py")]
    return {
        path.relative_to(ROOT).as_posix(): len(path.read_text(encoding="utf-8").splitlines())
        for path in paths
    }


# The first line of a function's head (clang-format's layout): at column 0, a name before "(".
C_HEAD = re.compile(r"^[A-Za-z_][\w \t*]*?\b(\w+)\(")


def _c_functions(text: str) -> dict[str, int]:
    """{name: lines from the head's first line to the closing brace} of each function defined in
    a C file: a "{" alone at column 0 opens a body, the next "}" alone at column 0 closes it."""
    lines = text.splitlines()
    found = {}
    for i, line in enumerate(lines):
        if line != "{":
            continue
        start = i - 1
        while start > 0 and lines[start][:1] in (" ", "\t"):  # a head wrapped onto more lines
            start -= 1
        end = lines.index("}", i)
        head = C_HEAD.match(lines[start])
        if head:
            found[head.group(1)] = end - start + 1
    return found


def test_no_function_of_the_core_is_over_60_lines():
    sizes = {
        f"{path.name} {name}": n
        for path in sorted(ROOT.glob("csrc/*.c"))
        for name, n in _c_functions(path.read_text(encoding="utf-8")).items()
    }
    assert "queries.c pgvc_query_sql" in sizes and "graph.c pgvc_graph_order" in sizes  # found
    assert len(sizes) > 250
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}


def test_no_function_of_the_package_is_over_60_lines():
    paths = sorted((ROOT / "django_pgviews_c").rglob("*.py"))
    long = [
        f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {node.end_lineno - node.lineno + 1} lines"
        for path in paths
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno - node.lineno + 1 > MAX_LINES
    ]
    assert len(paths) > 30  # the package is found
    assert long == []


def test_no_file_of_the_core_or_the_package_is_over_700_lines():
    sizes = _source_files()
    assert "csrc/ddl.c" in sizes and "django_pgviews_c/sync.py" in sizes  # the files are found
    over = {name: n for name, n in sizes.items() if n > MAX_FILE_LINES}
    assert over == {}


def test_sync_classes_keep_state_on_the_instance():
    classes = [sync.Syncer, executor.Executor, report.Progress, order.LearnedOrder]
    shared = {
        f"{cls.__name__}.{name}"
        for cls in classes
        for name, value in vars(cls).items()
        if not name.startswith("__")
        and not callable(value)
        and not isinstance(value, (property, staticmethod))
    }
    assert shared == set()


def test_two_syncers_share_nothing_they_learn():
    from django.db import connection

    first = sync.Syncer(connection, [], set())
    second = sync.Syncer(connection, [], set())
    first.order.learn(0, 1)
    first.chain = False
    first.progress.rehearsing = True
    assert second.order.after == [] and second.chain and not second.progress.rehearsing
    assert inspect.getmodule(sync.SyncResult) is syncresult  # re-exported where it is imported from
