"""The C core on its own: identifier quoting against the server's, table names, derived names
and the dependency graph against brute force."""

from __future__ import annotations

import itertools

import pytest
from django.db import connection
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from django_pgviews_c import _core
from django_pgviews_c.exceptions import CycleError, InvalidNameError, MissingDependencyError
from tests.helpers import decl_tuple

NAMEDATALEN = 63

# Printable text without NUL (which no identifier can hold), of at most 63 bytes in UTF-8 so
# the server keeps it whole.
_chars = st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\x00")
_ascii_ident = st.text(alphabet=st.sampled_from("abcxyz_0123456789ABCZ \"'.$-"), min_size=0, max_size=20)
_any_ident = st.text(alphabet=_chars, min_size=0, max_size=30).filter(
    lambda s: len(s.encode()) <= NAMEDATALEN
)


def _server_keywords() -> list[tuple[str, str]]:
    with connection.cursor() as cur:
        cur.execute("SELECT word, catcode::text FROM pg_catalog.pg_get_keywords() ORDER BY word")
        return cur.fetchall()


def _server_quote(names: list[str]) -> list[str]:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT pg_catalog.quote_ident(x) FROM unnest(%s::text[]) WITH ORDINALITY AS u(x, n) ORDER BY n",
            [names],
        )
        return [r[0] for r in cur.fetchall()]


def _column_name(quoted: str) -> str:
    return _column_names([quoted])[0]


def _column_names(quoted: list[str]) -> list[str]:
    """The names the server gives columns labelled with these quoted identifiers: one query."""
    with connection.cursor() as cur:
        cur.execute("SELECT " + ", ".join(f"1 AS {q}" for q in quoted))
        return [d[0] for d in cur.description]


# ---- quote_ident ------------------------------------------------------------------------------


@pytest.mark.django_db
@settings(suppress_health_check=[HealthCheck.too_slow])  # examples: the profile's
@given(st.lists(st.one_of(_ascii_ident, _any_ident), min_size=1, max_size=8))
def test_quote_ident_matches_the_server(names):
    ours = [_core.quote_ident(n) for n in names]
    assert ours == _server_quote(names)
    named = [(n, q) for n, q in zip(names, ours, strict=False) if n]  # "" is not a valid column name
    if named:
        assert _column_names([q for _, q in named]) == [n for n, _ in named]


_KEYWORDS: list[tuple[str, str]] = []


def _keywords_cached() -> list[tuple[str, str]]:
    if not _KEYWORDS:
        _KEYWORDS.extend(_server_keywords())
    return _KEYWORDS


@pytest.mark.django_db
@settings(suppress_health_check=[HealthCheck.too_slow])  # examples: the profile's
@given(st.data())
def test_quote_ident_of_keywords_and_their_variants_matches_the_server(data):
    keywords = _keywords_cached()
    word, catcode = data.draw(st.sampled_from(keywords))
    variant = data.draw(
        st.sampled_from(
            [
                word,
                word.upper(),
                word.capitalize(),
                word + "_",
                "_" + word,
                word + "1",
                "1" + word,
                word + " x",
                f'"{word}"',
            ]
        )
    )
    ours = _core.quote_ident(variant)
    server = _server_quote([variant])[0]
    if ours != server:
        # Only a bare keyword this server leaves unreserved may be quoted by us alone.
        assert variant == word and catcode == "U" and ours == f'"{word}"', (variant, ours, server)
    assert _column_name(ours) == variant


@pytest.mark.django_db
def test_quote_ident_of_every_server_keyword():
    keywords = _server_keywords()
    words = [w for w, _ in keywords]
    server = dict(zip(words, _server_quote(words), strict=False))
    extra = []
    for word, catcode in keywords:
        ours = _core.quote_ident(word)
        if ours != server[word]:
            # Only words our list quotes (reserved in some other version) may differ, and only
            # by being quoted where this server would not.
            assert catcode == "U" and ours == f'"{word}"', (word, catcode, ours, server[word])
            extra.append(word)
        # Upper case never passes bare.
        assert _core.quote_ident(word.upper()) == f'"{word.upper()}"'
    # Quoted or not, each word names itself (one query for all of them).
    assert _column_names([_core.quote_ident(w) for w in words]) == words
    # Every word the server reserves in any way is quoted by us too.
    for word, catcode in keywords:
        if catcode != "U":
            assert _core.quote_ident(word).startswith('"'), word


@pytest.mark.parametrize(
    "name, quoted",
    [
        ("plain", "plain"),
        ("_x1", "_x1"),
        ("Mixed", '"Mixed"'),
        ("1abc", '"1abc"'),
        ("with space", '"with space"'),
        ('q"uote', '"q""uote"'),
        ('""', '""""""'),
        ("select", '"select"'),
        ("", '""'),
        ("é", '"é"'),
    ],
)
def test_quote_ident_examples(name, quoted):
    assert _core.quote_ident(name) == quoted


# ---- split_table / qualified_name -------------------------------------------------------------

_part = st.text(alphabet=_chars, min_size=1, max_size=20).filter(lambda s: len(s.encode()) <= NAMEDATALEN)


@given(st.one_of(st.none(), _part), _part)
def test_split_table_inverts_qualified_name(schema, name):
    qualified = _core.qualified_name(schema, name)
    assert _core.split_table(qualified) == (schema, name)


@pytest.mark.parametrize(
    "db_table, parts",
    [
        ("foo", (None, "foo")),
        ("Foo", (None, "Foo")),
        ("s.foo", ("s", "foo")),
        ('"s.x"."a.b"', ("s.x", "a.b")),
        ('"a""b"', (None, 'a"b')),
        ("s.a.b", ("s", "a.b")),
        ('"Sch"."Na me"', ("Sch", "Na me")),
    ],
)
def test_split_table_examples(db_table, parts):
    assert _core.split_table(db_table) == parts


@pytest.mark.parametrize(
    "db_table, why",
    [
        ('"unterminated', "unterminated"),
        ("", "empty"),
        ('a"b', "stray double quote"),
        ('"a"x', "unexpected text"),
        ("s.", "empty"),
        ("x" * 64, "longer than 63 bytes"),
        ("é" * 32, "longer than 63 bytes"),
    ],
)
def test_split_table_rejects_bad_names(db_table, why):
    with pytest.raises(InvalidNameError) as info:
        _core.split_table(db_table)
    assert info.value.name == db_table
    assert why in str(info.value)


def test_split_table_accepts_exactly_63_bytes():
    name = "é" * 31 + "x"  # 63 bytes
    assert _core.split_table(name) == (None, name)
    assert _core.split_table(f"s.{name}") == ("s", name)


# ---- derived_name -----------------------------------------------------------------------------


@given(st.text(alphabet=_chars, max_size=80), st.text(alphabet=_chars, max_size=50))
def test_derived_name_fits_and_is_whole_utf8(base, suffix):
    out = _core.derived_name(base, suffix)  # a cut UTF-8 sequence would fail to decode
    assert len(out.encode()) <= NAMEDATALEN
    if len((base + suffix).encode()) <= NAMEDATALEN:
        assert out == base + suffix


def test_derived_name_never_cuts_a_long_multibyte_suffix():
    # A suffix over 40 bytes is shortened; an odd byte offset must not split a character.
    for base, suffix in [("a" * 70, "x" + "é" * 30), ("é" * 40, "xy" + "€" * 20), ("b" * 10, "x" + "é" * 40)]:
        out = _core.derived_name(base, suffix)
        assert len(out.encode()) <= NAMEDATALEN
        assert out.encode().decode() == out


@given(
    st.lists(st.text(alphabet=_chars, min_size=1, max_size=70), min_size=2, max_size=10, unique=True),
    st.sampled_from(["_pgvc_new", "_index", "", "_é"]),
)
def test_derived_name_keeps_distinct_inputs_distinct(bases, suffix):
    outs = [_core.derived_name(b, suffix) for b in bases]
    assert len(set(outs)) == len(outs)


@pytest.mark.django_db
def test_derived_names_of_long_multibyte_names_are_real_identifiers():
    base = "ü" * 40  # 80 bytes
    out = _core.derived_name(base, "_pgvc_new")
    assert out.endswith("_pgvc_new") and len(out.encode()) <= NAMEDATALEN
    assert _column_name(_core.quote_ident(out)) == out


# ---- Graph ------------------------------------------------------------------------------------


@st.composite
def dags(draw, max_nodes=12):
    """(deps, perm): deps[i] lists lower indices (a DAG declared in order); perm shuffles it."""
    n = draw(st.integers(0, max_nodes))
    deps = [sorted(draw(st.sets(st.integers(0, i - 1), max_size=min(i, 4)))) if i else [] for i in range(n)]
    perm = draw(st.permutations(range(n)))
    return deps, list(perm)


def _shuffle(deps, perm):
    """Node perm[i] of the shuffled graph is node i of the ordered one."""
    n = len(deps)
    out = [[] for _ in range(n)]
    for i in range(n):
        out[perm[i]] = sorted(perm[j] for j in deps[i])
    return out


def _graph(deps):
    names = [f"n{i}" for i in range(len(deps))]
    return _core.Graph(names, [[names[j] for j in d] for d in deps])


def _smallest_topological_order(deps):
    n, placed, order = len(deps), set(), []
    while len(order) < n:
        nxt = min(i for i in range(n) if i not in placed and all(j in placed for j in deps[i]))
        placed.add(nxt)
        order.append(nxt)
    return order


def _closure(deps, start, down):
    n = len(deps)
    adj = [[] for _ in range(n)]
    for i in range(n):
        for j in deps[i]:
            if down:
                adj[j].append(i)
            else:
                adj[i].append(j)
    seen, stack = set(), list(start)
    while stack:
        v = stack.pop()
        for w in adj[v]:
            if w not in seen:
                seen.add(w)
                stack.append(w)
    return seen


@given(dags())
def test_order_respects_every_edge_and_is_stable(dag):
    deps, perm = dag
    g = _graph(deps)
    assert g.order() == list(range(len(deps)))  # already sorted: identity
    shuffled = _shuffle(deps, perm)
    order = _graph(shuffled).order()
    assert sorted(order) == list(range(len(deps)))
    pos = {v: k for k, v in enumerate(order)}
    for i, ds in enumerate(shuffled):
        for j in ds:
            assert pos[j] < pos[i]
    # Ties keep index order: the order is the smallest topological order.
    assert order == _smallest_topological_order(shuffled)


@given(dags(), st.data())
def test_closures_levels_and_critical_path_match_brute_force(dag, data):
    deps = _shuffle(*dag)
    n = len(deps)
    g = _graph(deps)
    order = g.order()
    pos = {v: k for k, v in enumerate(order)}
    start = data.draw(st.lists(st.integers(0, n - 1), max_size=3)) if n else []
    for down, method in ((True, g.dependants), (False, g.dependencies)):
        reach = _closure(deps, start, down)
        got = method(start)
        assert set(got) == reach - set(start)
        assert got == sorted(got, key=pos.__getitem__)
        with_self = method(start, include_self=True)
        assert set(with_self) == reach | set(start)
        assert with_self == sorted(with_self, key=pos.__getitem__)
    # levels: the longest chain of dependencies below each node.
    levels = [0] * n
    for v in order:
        levels[v] = max((levels[j] + 1 for j in deps[v]), default=0)
    assert g.levels() == levels
    # critical_path: the heaviest chain from a node up through its dependants.
    weights = data.draw(st.lists(st.floats(0, 10, allow_nan=False), min_size=n, max_size=n))
    users = [[i for i in range(n) if v in deps[i]] for v in range(n)]
    chain = [0.0] * n
    for v in reversed(order):
        chain[v] = weights[v] + max((chain[u] for u in users[v]), default=0.0)
    assert g.critical_path(weights) == pytest.approx(chain)
    unit = [0] * n
    for v in reversed(order):
        unit[v] = 1 + max((unit[u] for u in users[v]), default=0)
    assert g.critical_path() == [float(x) for x in unit]


@given(dags(max_nodes=10), st.data())
def test_cycle_error_names_a_real_cycle(dag, data):
    deps = [list(d) for d in _shuffle(*dag)]
    n = len(deps)
    assume(n >= 1)
    # Close a cycle: some node comes to depend on one of its dependants (or on itself).
    a = data.draw(st.integers(0, n - 1))
    below = sorted(_closure(deps, [a], down=True) | {a})
    b = data.draw(st.sampled_from(below))
    assert b not in deps[a]
    deps[a].append(b)
    g = _graph(deps)
    with pytest.raises(CycleError) as info:
        g.order()
    path = info.value.path
    assert len(path) >= 2 and path[0] == path[-1]
    assert len(set(path[:-1])) == len(path) - 1
    idx = [int(p[1:]) for p in path]
    for x, y in itertools.pairwise(idx):
        assert y in deps[x], (path, deps)
    assert " -> ".join(path) in str(info.value)
    # Every method that needs the order raises it too.
    for call in (g.levels, g.critical_path, lambda: g.dependants([0])):
        with pytest.raises(CycleError):
            call()


def test_many_edges_grow_the_edge_list_and_every_one_counts():
    # 400 nodes reading up to 25 before them: 9,700 edges, the edge list grown seven times over
    # (pgvc_edges_push, shared by Graph, the planner and the refresh schedule).
    n, width = 400, 25
    deps = [list(range(max(0, i - width), i)) for i in range(n)]
    names = [f"v{n - i:04d}" for i in range(n)]
    order = _core.Graph(names, [[names[j] for j in d] for d in deps]).order()
    assert order == list(range(n))
    schedule = _core.Schedule(deps)
    ran = []
    while (i := schedule.next()) is not None:
        assert all(j in ran for j in deps[i])
        ran.append(i)
        schedule.done(i, True)
    assert sorted(ran) == list(range(n))


def test_missing_dependency_names_both_ends():
    with pytest.raises(MissingDependencyError) as info:
        _core.Graph(["app.A", "app.B"], [[], ["app.Nope"]])
    assert info.value.view == "app.B" and info.value.dependency == "app.Nope"
    assert "app.B" in str(info.value) and "app.Nope" in str(info.value)


def test_graph_rejects_bad_input():
    with pytest.raises(ValueError, match="named twice"):
        _core.Graph(["a", "a"], [[], []])
    with pytest.raises(ValueError, match="differ in length"):
        _core.Graph(["a"], [])
    g = _core.Graph(["a", "b"], [[], ["a"]])
    assert len(g) == 2 and g.names == ("a", "b")
    with pytest.raises(IndexError):
        g.dependants([5])
    with pytest.raises(ValueError):
        g.critical_path([1.0])


# ---- plan() on hand-made declarations and catalog rows -----------------------------------------
# Declaration: (label, schema, name, kind, sql, dependencies, with_data, tablespace, indexes,
# concurrent_index, its tablespace, db_table). Catalog row: (oid, schema, name, relkind, comment,
# populated, tablespace, rewrite xmin, md5 of viewdef (only when the rule changed), owner, acl,
# index names, oids it reads, full definition, index definitions, current schema); relkind 'S'
# rows list the existing schemas.

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


def _row(oid, name, kind, comment, refs=(), indexes=(), populated=True, defmd5=None):
    return (
        oid,
        "public",
        name,
        kind,
        comment,
        populated,
        None,
        "1",
        defmd5,
        "postgres",
        None,
        list(indexes),
        list(refs),
        None,
        None,
        "public",
        None,
        None,
    )


_DECLS = [
    decl_tuple(label="app.A", name="a"),
    decl_tuple(label="app.B", name="b", sql="SELECT id FROM a", dependencies=("app.A",)),
    decl_tuple(
        label="app.M",
        name="m",
        kind="m",
        sql="SELECT id FROM b",
        dependencies=("app.B",),
        concurrent_index="id",
    ),
]


def _stamps(decls):
    """The fingerprint notes a cold plan would write, per declaration (our comment's last line)."""
    stamp = _core.plan(decls, [_SCHEMA_ROW])["actions"][-1]
    assert stamp[0] == "stamp"
    notes = stamp[2].split("ARRAY[", 2)[2].split("]::text[]")[0]
    return [n.strip(" '") + " rw=1 def=" + "0" * 32 for n in notes.split("', '")]


def _synced_catalog(decls=_DECLS):
    a, b, m = _stamps(decls)
    return [
        _row(11, "a", "v", a),
        _row(12, "b", "v", b, refs=[11]),
        _row(13, "m", "m", m, refs=[12], indexes=["m_id_index"]),
        _SCHEMA_ROW,
    ]


def test_plan_cold_creates_in_dependency_order():
    decls = [_DECLS[2], _DECLS[1], _DECLS[0]]  # declared backwards
    p = _core.plan(decls, [_SCHEMA_ROW])
    assert p["statuses"] == ["CREATED"] * 3
    assert p["order"] == [2, 1, 0]
    ops = [(a[0], a[1]) for a in p["actions"]]
    assert ops == [("create", 2), ("create", 1), ("create", 0), ("index", 0), ("stamp", -1)]
    assert p["actions"][0][2] == "CREATE VIEW public.a AS\nSELECT 1 AS id"
    assert p["actions"][3][2] == "CREATE UNIQUE INDEX m_id_index ON public.m (id)"
    assert all(a[3] for a in p["actions"])  # every action says what it locks


def test_plan_warm_does_nothing():
    p = _core.plan(_DECLS, _synced_catalog())
    assert p["actions"] == [] and p["statuses"] == ["EXISTS"] * 3


def test_plan_changed_view_rebuilds_what_reads_it():
    decls = list(_DECLS)
    decls[0] = decl_tuple(label="app.A", name="a", sql="SELECT 1 AS id, 2 AS two")
    p = _core.plan(decls, _synced_catalog(), chain=False)
    assert p["statuses"][0] == "UPDATED" and p["reasons"][0] == "definition changed"
    ops = [(a[0], a[1]) for a in p["actions"]]
    assert ops[0] == ("replace", 0) and ("refresh", 2) in ops and ops[-1] == ("stamp", -1)
    assert p["actions"][0][2].startswith("CREATE OR REPLACE VIEW public.a AS")
    # Built beside in a scratch schema: nothing readers wait on before phase 1.
    p = _core.plan(decls, _synced_catalog())
    ops = [(a[0], a[1], a[5]) for a in p["actions"]]
    assert ("build", 2, 0) in ops and ("swap", 2, 1) in ops
    assert all(phase == 1 for op, _, phase in ops if op in ("drop", "swap"))


def test_plan_hand_made_change_and_unpopulated_matview():
    cat = _synced_catalog()
    cat[0] = _row(11, "a", "v", cat[0][4], defmd5="f" * 32)  # the rule changed, its text too
    cat[2] = _row(13, "m", "m", cat[2][4], refs=[12], indexes=["m_id_index"], populated=False)
    p = _core.plan(_DECLS, cat, chain=False)
    assert p["statuses"][0] == "UPDATED" and "database" in p["reasons"][0]
    assert ("refresh", 2) in [(a[0], a[1]) for a in p["actions"]]
    # Same definition, new rule row (dump and restore): only a new stamp.
    cat[0] = _row(11, "a", "v", cat[0][4], defmd5="0" * 32)
    cat[2] = _synced_catalog()[2]
    p = _core.plan(_DECLS, cat)
    assert [a[0] for a in p["actions"]] == ["stamp"] and p["statuses"] == ["EXISTS"] * 3


def test_plan_refuses_to_drop_an_unmanaged_dependant():
    from django_pgviews_c.exceptions import DependantObjectError, PlanError

    decls = list(_DECLS)
    decls[2] = decl_tuple(
        label="app.M",
        name="m",
        kind="m",
        sql="SELECT id, 1 AS x FROM b",
        dependencies=("app.B",),
        concurrent_index="id",
    )
    cat = _synced_catalog() + [_row(20, "user_v", "v", None, refs=[13])]
    with pytest.raises(DependantObjectError) as info:
        _core.plan(decls, cat)
    assert info.value.details == [("public", "user_v", "app.M", "v")]
    assert "public.user_v" in str(info.value) and "app.M" in str(info.value)
    # A table where a view is declared is never replaced.
    table = _row(30, "a", "r", None)
    with pytest.raises(PlanError, match="not a view"):
        _core.plan(_DECLS[:1], [table, _SCHEMA_ROW])


def test_plan_long_quoted_names_get_distinct_concurrent_index_names():
    # The concurrent index name comes from db_table; quoted db_tables may take 257 bytes.
    schema = '"' * 60
    decls = [
        (
            f"app.M{k}",
            schema,
            '"' * 40 + k,
            "m",
            "SELECT 1 AS id",
            (),
            True,
            None,
            (),
            "id",
            None,
            _core.qualified_name(schema, '"' * 40 + k),
            (),
        )
        for k in "ab"
    ]
    row = (
        None,
        schema,
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
    p = _core.plan(decls, [_SCHEMA_ROW, row])
    names = [
        a[2].split(" ON ")[0].removeprefix("CREATE UNIQUE INDEX ") for a in p["actions"] if a[0] == "index"
    ]
    assert len(names) == 2 and names[0] != names[1]
    for quoted in names:
        assert _core.split_table(quoted)[1].endswith("_index")
