"""The C core's argument errors name the function, the argument and its whole value: a NUL byte,
a lone surrogate (no UTF-8) or a priority too large for a float is never Python's own
"embedded null character", a bare UnicodeEncodeError or "int too large to convert to float"."""

from __future__ import annotations

from typing import Any

import pytest

from django_pgviews_c import _core
from django_pgviews_c.exceptions import InvalidNameError

NUL = "a\x00b"
SURROGATE = "a\udc80b"


def test_a_nul_byte_in_query_sql_schema_names_the_schema_and_shows_it_whole():
    with pytest.raises(InvalidNameError) as info:
        _core.query_sql("history_functions", schema=NUL)
    assert info.value.what == "schema"
    assert info.value.name == NUL
    assert str(info.value) == "invalid schema 'a\\x00b': contains a NUL byte"


def test_a_nul_byte_in_query_sql_tables_names_the_item():
    with pytest.raises(InvalidNameError) as info:
        _core.query_sql("history_insert_many", tables=["public.v", NUL])
    assert str(info.value) == "invalid tables[1] 'a\\x00b': contains a NUL byte"


def test_a_nul_byte_in_refresh_sql_shows_the_whole_db_table():
    with pytest.raises(InvalidNameError) as info:
        _core.refresh_sql(NUL)
    assert info.value.name == NUL
    assert str(info.value) == "invalid db_table 'a\\x00b': contains a NUL byte"


TEXT_CALLS: list[tuple[str, str, Any]] = [
    ("quote_ident", "name", lambda s: _core.quote_ident(s)),
    ("quote_literal", "value", lambda s: _core.quote_literal(s)),
    ("split_table", "db_table", lambda s: _core.split_table(s)),
    ("qualified_name", "schema", lambda s: _core.qualified_name(s, "v")),
    ("qualified_name", "name", lambda s: _core.qualified_name("public", s)),
    ("derived_name", "base", lambda s: _core.derived_name(s, "_x")),
    ("derived_name", "suffix", lambda s: _core.derived_name("v", s)),
    ("aside_statement", "op", lambda s: _core.aside_statement(s, "public", "v", "m")),
    ("aside_statement", "name", lambda s: _core.aside_statement("drop", "public", s, "m")),
    ("aside_statement", "kind", lambda s: _core.aside_statement("drop", "public", "v", kind=s)),
    ("grant_statements", "owner", lambda s: _core.grant_statements("public", "v", "v", [], s)),
    ("comment_statement", "old", lambda s: _core.comment_statement("public", "v", "v", s, "x")),
    ("build_check_statement", "sql", lambda s: _core.build_check_statement("public", "v", s)),
]


@pytest.mark.parametrize(("fn", "arg", "call"), TEXT_CALLS, ids=[f"{f}-{a}" for f, a, _ in TEXT_CALLS])
def test_a_nul_byte_names_the_function_and_the_argument(fn: str, arg: str, call: Any):
    with pytest.raises(ValueError, match=rf"^{fn}: {arg} contains a NUL byte: 'a\\x00b'$"):
        call(NUL)


@pytest.mark.parametrize(("fn", "arg", "call"), TEXT_CALLS, ids=[f"{f}-{a}" for f, a, _ in TEXT_CALLS])
def test_text_without_utf8_names_the_function_and_the_argument(fn: str, arg: str, call: Any):
    with pytest.raises(ValueError, match=rf"^{fn}: {arg} is not valid text: ") as info:
        call(SURROGATE)
    assert isinstance(info.value.__cause__, UnicodeEncodeError)


@pytest.mark.parametrize(("name", "arg"), [("history_insert", "table"), ("history_functions", "schema")])
def test_query_sql_text_without_utf8_names_the_argument(name: str, arg: str):
    with pytest.raises(ValueError, match=rf"^query_sql: {arg} is not valid text: "):
        _core.query_sql(name, **{arg: SURROGATE})


def test_a_priority_too_large_for_a_float_names_its_index():
    with pytest.raises(OverflowError, match=r"^run_parallel: priority\[1\] is too large for a float"):
        _core.Schedule([[], []], [1, 10**400])
