"""The package's SQL text lives in the C core: _core.query_sql() hands each query out by name,
and no Python module of the package writes SQL beyond transaction control."""

import ast
import re
from pathlib import Path

import pytest

from django_pgviews_c import _core
from django_pgviews_c.exceptions import InvalidNameError

PACKAGE = Path(_core.__file__).resolve().parent

# Text that reads as SQL: a statement keyword at the start, or a catalog read anywhere.
_SQL = re.compile(
    r"^[\s;]*(SELECT|WITH|INSERT|UPDATE|DELETE|CREATE|DROP|ALTER|REFRESH|TRUNCATE|GRANT|REVOKE|LOCK|"
    r"COMMENT ON|SET|RESET|DO|CALL|COPY|VACUUM|ANALYZE|EXPLAIN)\b"
    r"|\b(INSERT INTO|DELETE FROM|WITH RECURSIVE|FROM pg_catalog\.|JOIN pg_catalog\.)"
)
# Transaction control, which stays beside the code that decides it: savepoints, advisory locks,
# and settings local to the transaction (lock_timeout, jit, synchronous_commit).
_TRANSACTION_CONTROL = re.compile(
    r"(RELEASE |ROLLBACK TO )?SAVEPOINT \w+"
    r"|SELECT pg_catalog\.pg_(try_)?advisory(_xact)?_lock\(%s\)"
    r"|SELECT pg_catalog\.pg_advisory_unlock\(%s\)"
    r"|SELECT pg_catalog\.set_config\('lock_timeout', %s, true\)"
    r"|SET LOCAL \w+ = \w+;\n"
)
# Advice shown to the user: a statement with a <placeholder> for them to fill in, never run.
_ADVICE = re.compile(r"<[a-z][^<>]*>")


def _strings(tree: ast.AST):
    """(line, text) of every string literal that is not a docstring; an f-string's replacement
    fields read as {}."""
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    inside_fstring = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            parts = []
            for value in node.values:
                inside_fstring.add(id(value))
                parts.append(value.value if isinstance(value, ast.Constant) else "{}")
            yield node.lineno, "".join(parts)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
            and id(node) not in inside_fstring
        ):
            yield node.lineno, node.value


def sql_outside_transaction_control(root: Path) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for line, text in _strings(tree):
            if _ADVICE.search(text):
                continue
            if _SQL.search(text) and not _TRANSACTION_CONTROL.fullmatch(
                text.strip() + ("\n" if text.endswith("\n") else "")
            ):
                found.append(f"{path.relative_to(root.parent)}:{line}: {text.strip()[:70]!r}")
    return sorted(found, key=lambda f: (f.split(":")[0], int(f.split(":")[1])))


def test_package_holds_no_sql_beyond_transaction_control():
    found = sql_outside_transaction_control(PACKAGE)
    assert found == [], "SQL text belongs in csrc/ (queries.c, sqlgen.c...):\n" + "\n".join(found)


def test_the_scan_finds_sql_text(tmp_path):
    # The guard above would pass on an empty scan: it must see each way SQL can be written.
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "m.py").write_text(
        '"""SELECT in a docstring is prose."""\n'
        'A = "SELECT 1"\n'
        'B = f"DROP VIEW {name}"\n'
        'C = "x" " FROM pg_catalog.pg_class"\n'
        'D = "SAVEPOINT s"\n'
        'E = "SET LOCAL jit = off;\\n"\n'
        'F = "a view cannot SELECT ... FOR UPDATE"\n'
        'G = "ALTER FUNCTION f SET search_path = <the schemas its body uses>"\n'
    )
    found = sql_outside_transaction_control(pkg)
    assert [f.split(":")[1] for f in found] == ["2", "3", "4"]


def test_every_query_name_gives_text():
    names = _core.query_names()
    assert len(names) == len(set(names)) >= 10
    for name in names:
        kwargs = {
            "lock_guard": {"ms": 200},
            "exact_function": {"schema": "public"},
            "exact_forget": {"schema": "public"},
            "exact_drop_function": {"schema": "public"},
            "exact_trigger": {"table": "app_t", "schema": "public"},
            "exact_untrigger": {"table": "app_t"},
            "history_insert_many": {"tables": ["app_view", "app_other"]},
            "history_functions": {"schema": "public", "table": "public.django_pgviews_c_exact"},
            "history_drop_functions": {"schema": "public"},
            "history_run_function": {"schema": "public"},
            "history_drop_run_function": {"schema": "public"},
            "history_refresh_function": {"schema": "public", "table": "public.django_pgviews_c_exact"},
            "history_drop_refresh_function": {"schema": "public"},
        }.get(name, {})
        if name in ("history_insert_counted", "history_insert_captured") or name.startswith("drop_"):
            kwargs = {"table": "app_view"}
        text = _core.query_sql(name, **kwargs)
        assert isinstance(text, str) and _SQL.search(text), name


def test_unknown_query_name_is_named():
    with pytest.raises(ValueError, match=r"no query named 'lock_holder'"):
        _core.query_sql("lock_holder")
    with pytest.raises(ValueError, match="no query named"):
        _core.query_sql("lock_holders\0x")
    with pytest.raises(TypeError):
        _core.query_sql(None)


def test_query_arguments_are_checked():
    with pytest.raises(ValueError, match=r"'history_insert_counted'.*needs table"):
        _core.query_sql("history_insert_counted")
    with pytest.raises(ValueError, match=r"'lock_holders'.*takes no table"):
        _core.query_sql("lock_holders", table="t")
    with pytest.raises(ValueError, match=r"'lock_guard'.*needs ms"):
        _core.query_sql("lock_guard")
    for bad in (-1, 2**31, 2**70):
        with pytest.raises(ValueError, match="between 0 and 2147483647"):
            _core.query_sql("lock_guard", ms=bad)
    for bad in ("200", 2.5, True):
        with pytest.raises(ValueError, match="needs ms"):
            _core.query_sql("lock_guard", ms=bad)
    with pytest.raises(ValueError, match="takes no ms"):
        _core.query_sql("status_sizes", ms=1)
    with pytest.raises(ValueError, match=r"'exact_trigger'.*needs schema"):
        _core.query_sql("exact_trigger", table="t")
    with pytest.raises(ValueError, match=r"'exact_untrigger'.*takes no schema"):
        _core.query_sql("exact_untrigger", table="t", schema="public")
    with pytest.raises(ValueError, match=r"schema s\$x, whose name holds a '\$'"):
        _core.query_sql("exact_function", schema="s$x")
    with pytest.raises(ValueError, match=r"'history_insert_many'.*needs tables"):
        _core.query_sql("history_insert_many")
    with pytest.raises(ValueError, match=r"'history_insert_counted'.*takes no tables"):
        _core.query_sql("history_insert_counted", table="t", tables=["t"])
    with pytest.raises(ValueError, match="one relation or more"):
        _core.query_sql("history_insert_many", tables=[])
    for bad in ("t", b"t", 5, ["t", 5], ["t", None]):
        with pytest.raises(TypeError, match="'history_insert_many'"):
            _core.query_sql("history_insert_many", tables=bad)
    with pytest.raises(ValueError, match=r"'history_functions'.*needs table"):
        _core.query_sql("history_functions", schema="public")
    with pytest.raises(ValueError, match=r"'history_drop_functions'.*needs schema"):
        _core.query_sql("history_drop_functions")


def test_the_history_functions_quote_their_schemas_and_pick_a_free_dollar_tag():
    text = _core.query_sql(
        "history_functions", schema='s"$pgvc$', table='"c$pgvc1$"."django_pgviews_c_exact"'
    )
    assert 'FUNCTION "s""$pgvc$".django_pgviews_c_capture(' in text
    assert 'INSERT INTO "s""$pgvc$".django_pgviews_c_refresh' in text
    assert 'FROM "c$pgvc1$".django_pgviews_c_exact e' in text
    # A body's tag is one it does not hold: the capture's body names "c$pgvc1$", the record's
    # "s""$pgvc$".
    capture, record = text.split(";\nCREATE OR REPLACE FUNCTION ")
    assert " AS $pgvc$DECLARE" in capture and capture.endswith("END$pgvc$")
    assert " AS $pgvc1$DECLARE" in record and record.endswith("END$pgvc1$")
    assert _core.query_sql("history_drop_functions", schema="S").startswith(
        'DROP FUNCTION IF EXISTS "S".django_pgviews_c_capture(pg_catalog.regclass, pg_catalog.name[], boolean), '
    )


def test_the_run_function_quotes_its_schema_and_picks_a_free_dollar_tag():
    text = _core.query_sql("history_run_function", schema='s"$pgvc$')
    assert text.startswith(
        'CREATE OR REPLACE FUNCTION "s""$pgvc$".django_pgviews_c_record_run(p_views text[], '
    )
    assert 'INSERT INTO "s""$pgvc$".django_pgviews_c_refresh' in text
    assert " AS $pgvc1$DECLARE" in text and text.endswith("END$pgvc1$")
    assert _core.query_sql("history_drop_run_function", schema="S") == (
        'DROP FUNCTION IF EXISTS "S".django_pgviews_c_record_run(text[], text[], timestamp with time zone[],'
        " double precision[], pg_catalog.regclass[], boolean[], text[], boolean[], text[], text[], text[],"
        " bigint, integer, integer)"
    )
    with pytest.raises(ValueError, match=r"'history_run_function'.*needs schema"):
        _core.query_sql("history_run_function")


def test_counted_table_is_quoted_by_the_core():
    text = _core.query_sql("history_insert_counted", table='sales."Daily Totals"')
    assert 'count(*) FROM sales."Daily Totals")' in text
    with pytest.raises(InvalidNameError, match='a"b'):
        _core.query_sql("history_insert_counted", table='a"b')
    assert _core.query_sql("drop_view", table='s."V w"') == 'DROP VIEW IF EXISTS s."V w"'
    assert _core.query_sql("drop_materialized_view_cascade", table="m") == (
        "DROP MATERIALIZED VIEW IF EXISTS m CASCADE"
    )
    assert "200 THEN s.u ELSE 200 END" in _core.query_sql("lock_guard", ms=200)
    many = _core.query_sql("history_insert_many", tables=["plain", 'sales."Daily Totals"'])
    assert "count(*) FROM plain)" in many and 'count(*) FROM sales."Daily Totals")' in many
    # One row of the single insert's parameters per table, then keep - 1 once.
    assert many.count("%s") == 2 * 12 + 1
    for bad in (['a"b'], ["ok", 'a"b'], ["x\0y"]):
        with pytest.raises(InvalidNameError):
            _core.query_sql("history_insert_many", tables=bad)
