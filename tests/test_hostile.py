"""Declarations reach SQL only as quoted identifiers, bound literals or the user's own view SQL;
and no Python value handed to the planner can crash the interpreter."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from django.db import models
from django.db.models import Q

from django_pgviews_c import _core
from django_pgviews_c.exceptions import PlanError
from tests.helpers import ViewSet, catalog_rows, decl_tuple, execute, snapshot

pytestmark = pytest.mark.django_db


@pytest.fixture
def canary():
    execute(
        "CREATE TABLE canary (id int); CREATE TABLE t_src (id int PRIMARY KEY, label text);"
        "INSERT INTO t_src VALUES (1, 'a'), (2, 'b')"
    )
    yield
    assert catalog_rows("SELECT to_regclass('canary') IS NOT NULL") == [(True,)], (
        "the canary table was dropped"
    )


@pytest.mark.parametrize(
    "concurrent_index",
    ["id); DROP TABLE canary; --", "id, (SELECT 1)", "id desc", "", "id,", '"unterminated'],
)
def test_concurrent_index_that_is_not_a_column_list_is_refused(canary, concurrent_index):
    before = snapshot()
    vs = ViewSet()
    vs.view("M", "SELECT id FROM t_src", materialized=True, concurrent_index=concurrent_index)
    with pytest.raises(PlanError) as err:
        vs.sync()
    assert "viewtest.M" in str(err.value) and "concurrent_index" in str(err.value)
    assert "Nothing was changed" in str(err.value)
    assert snapshot() == before


def test_concurrent_index_columns_are_quoted(canary):
    execute('CREATE TABLE t_cols (id int, "Mixed Case" int)')
    vs = ViewSet()
    vs.view(
        "M",
        'SELECT id, "Mixed Case", 1 AS "select" FROM t_cols',
        materialized=True,
        concurrent_index=' ID , "Mixed Case",select',
    )
    r = vs.sync()
    sql = next(a.sql for a in r.actions if a.op == "index")
    assert '(id, "Mixed Case", "select")' in sql
    (definition,) = catalog_rows(
        "SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = 't_m'::regclass"
    )[0]
    assert definition.startswith("CREATE UNIQUE INDEX") and '(id, "Mixed Case", "select")' in definition
    assert vs.sync().actions == []


def test_index_template_slots_are_placed_by_position(canary):
    """A condition's string literal holding the old placeholder text stays a literal, even with a
    db_table that would break out of it."""
    table = "x'); DROP TABLE canary; --"
    vs = ViewSet()
    vs.view(
        "M",
        "SELECT id, label FROM t_src",
        materialized=True,
        db_table=table,
        id=models.IntegerField(primary_key=True),
        label=models.TextField(),
        indexes=[models.Index(fields=["label"], name="m_label_idx", condition=Q(label="\x01T\x01\x01N\x01"))],
    )
    vs.sync()
    (definition,) = catalog_rows(
        "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i WHERE i.indrelid = %s::regclass",
        [_core.qualified_name(None, table)],
    )[0]
    assert "\x01T\x01\x01N\x01" in definition
    assert vs.sync().actions == []


@pytest.mark.parametrize("where", ["sql", "db_table", "param", "index"])
def test_nul_byte_in_a_declaration_is_refused_naming_the_view(canary, where):
    before = snapshot()
    vs = ViewSet()
    attrs = {}
    sql = "SELECT id FROM t_src"
    if where == "sql":
        sql = "SELECT id FROM t_src\x00 WHERE false"
    if where == "param":
        from django_pgviews_c.view import ViewSQL

        attrs["get_sql"] = classmethod(
            lambda cls: ViewSQL("SELECT id FROM t_src WHERE label <> %s", ["a\x00b"])
        )
    if where == "db_table":
        attrs["db_table"] = "t_m\x00x"
    if where == "index":
        attrs["id"] = models.IntegerField(primary_key=True)
        attrs["indexes"] = [models.Index(fields=["id"], name="m_id\x00idx")]
    vs.view("M", sql, materialized=True, **attrs)
    with pytest.raises(PlanError) as err:
        vs.sync()
    assert "viewtest.M" in str(err.value) and "NUL" in str(err.value)
    assert snapshot() == before


def test_long_non_ascii_labels_are_kept_whole(canary):
    execute("CREATE SCHEMA s_long")
    name = "Vue" + "é" * 120
    vs = ViewSet()
    vs.view(name, "SELECT id FROM t_src", db_table="s_long.a")
    vs.view(
        "M",
        "SELECT count(*) AS n FROM s_long.a",
        materialized=True,
        db_table="s_long.m",
        dependencies=(f"viewtest.{name}",),
    )
    vs.sync()
    vs.view(name, "SELECT id, 1 AS extra FROM t_src", db_table="s_long.a")
    r = vs.sync()
    assert r.reasons["viewtest.M"] == f"re-populated: it reads viewtest.{name}, which changed"


# ---- malformed input to _core.plan, each in a subprocess: a crash is a failure, not a lost run

_SCHEMA_ROW = (
    None,
    "public",
    None,
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


def _decl(**over):
    """A materialized view "app.V" (fields as _core.DECL_FIELDS names them), over replacing any."""
    return decl_tuple(**{"kind": "m", "sql": "SELECT 1", **over})


def _plan_in_subprocess(decls: list, catalog: list) -> str:
    code = textwrap.dedent(
        f"""
        import django
        from django.conf import settings
        settings.configure()
        from django_pgviews_c import _core
        try:
            _core.plan({decls!r}, {catalog!r})
        except Exception as exc:
            print(type(exc).__name__, exc)
        else:
            print("OK")
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"the interpreter died ({done.returncode}): {done.stderr[-2000:]}"
    return done.stdout.strip()


@pytest.mark.parametrize(
    ("decl", "expected"),
    [
        (_decl(indexes=(1,)), "TypeError"),
        (_decl(indexes=((None, "x"),)), "TypeError"),
        (_decl(indexes=(("i", ("CREATE INDEX ", 7)),)), "ValueError"),
        (_decl(indexes=(("i", (b"x",)),)), "TypeError"),
        (_decl(dependencies=[1]), "TypeError"),
        (_decl(dependencies=(1,)), "TypeError"),
        (_decl(with_data="yes"), "TypeError"),
        (_decl(kind="mv"), "ValueError"),
        (_decl(label=None), "TypeError"),
        (_decl(sql="SELECT\x00 1"), "PlanError"),
        (_decl(indexes=(("i" * 64, ("CREATE INDEX ", 1, " ON ", 0, " (x)")),)), "PlanError"),
        (_decl(label="app." + "ü" * 300, concurrent_index="a; b"), "PlanError"),
        ("not a tuple", "TypeError"),
        (_decl()[:5], "TypeError"),
    ],
)
def test_malformed_declarations_raise_instead_of_crashing(decl, expected):
    out = _plan_in_subprocess([decl], [_SCHEMA_ROW])
    assert out.split()[0] == expected, out


@pytest.mark.parametrize(
    "row",
    [
        (
            1,
            "public",
            "v",
            "m",
            None,
            True,
            None,
            None,
            None,
            None,
            [1],
            [],
            [],
            None,
            None,
            "public",
            [],
            [],
        ),
        (
            1,
            "public",
            "v",
            "m",
            None,
            True,
            None,
            None,
            None,
            None,
            None,
            [None],
            [],
            None,
            None,
            "public",
            [],
            [],
        ),
        (
            1,
            "public",
            "v",
            "m",
            None,
            True,
            None,
            None,
            None,
            None,
            None,
            [],
            ["x"],
            None,
            None,
            "public",
            [],
            [],
        ),
        (
            "1",
            "public",
            "v",
            "m",
            None,
            True,
            None,
            None,
            None,
            None,
            None,
            [],
            [],
            None,
            None,
            "public",
            [],
            [],
        ),
        (
            1,
            "public",
            "v",
            "m",
            None,
            "t",
            None,
            None,
            None,
            None,
            None,
            [],
            [],
            None,
            None,
            "public",
            [],
            [],
        ),
        (1, None, "v", "m", None, True, None, None, None, None, None, [], [], None, None, "public", [], []),
        (
            1,
            "public",
            "v",
            "m",
            None,
            True,
            None,
            None,
            None,
            None,
            None,
            [],
            [],
            None,
            None,
            "public",
            [1],
            [2],
        ),
    ],
)
def test_malformed_catalog_rows_raise_instead_of_crashing(row):
    out = _plan_in_subprocess([_decl()], [row, _SCHEMA_ROW])
    assert out.split()[0] == "TypeError", out


def test_plan_survives_arbitrary_values():
    """hypothesis feeds plan() declaration and catalog tuples whose fields are arbitrary nested
    values (and well-formed ones with one field replaced), in a subprocess: any crash fails."""
    code = textwrap.dedent(
        f"""
        from django.conf import settings
        settings.configure()
        from hypothesis import given, settings as hsettings, strategies as st, HealthCheck
        from django_pgviews_c import _core

        leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8), st.binary(max_size=4),
                         st.floats(allow_nan=True))
        value = st.recursive(leaf, lambda kids: st.one_of(st.lists(kids, max_size=3),
                             st.tuples(kids, kids), st.tuples(kids, kids, kids)), max_leaves=8)
        good_decl = {_decl()!r}
        good_row = {(1, "public", "v", "m", None, True, None, None, None, None, None, [], [], None, None, "public", ["id"], ["integer"])!r}
        schema_row = {_SCHEMA_ROW!r}

        def mutate(base, data):
            k = data.draw(st.integers(0, len(base) - 1))
            return base[:k] + (data.draw(value),) + base[k + 1:]

        @hsettings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
        @given(st.data())
        def run(data):
            decls = data.draw(st.one_of(st.builds(mutate, st.just(good_decl), st.just(data)), value))
            row = data.draw(st.one_of(st.builds(mutate, st.just(good_row), st.just(data)), value))
            try:
                _core.plan([decls], [row, schema_row])
            except Exception:
                pass
            try:
                _core.plan([good_decl], [good_row, schema_row], adopt=data.draw(value), recreate=[])
            except Exception:
                pass

        run()
        print("survived")
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"the interpreter died ({done.returncode}): {done.stderr[-3000:]}"
    assert "survived" in done.stdout
