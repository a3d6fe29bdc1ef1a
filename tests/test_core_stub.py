"""django_pgviews_c/_core.pyi against the built module: the same public names, and for every
function and method the same parameters (names, kinds, defaults) as the signature the C
docstrings declare. A stub that drifts from csrc/ would let mypy pass calls the core rejects."""

from __future__ import annotations

import ast
import inspect
import typing
from pathlib import Path

import pytest

from django_pgviews_c import _core

STUB = Path(_core.__file__).with_name("_core.pyi")
# Names the stub adds for typing only: none exists at run time.
STUB_ONLY = {"PlanResult", "QueryName"}


def _stub() -> ast.Module:
    return ast.parse(STUB.read_text(encoding="utf-8"))


def _public(names: typing.Iterable[str]) -> set[str]:
    return {n for n in names if not n.startswith("_")}


def _stub_names(tree: ast.Module) -> set[str]:
    names = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return _public(names)


def _stub_params(fn: ast.FunctionDef, method: bool) -> list[tuple[str, str, str | None]]:
    """(name, kind, default) of each parameter, as inspect.Parameter would say them."""
    a = fn.args
    positional = a.posonlyargs + a.args
    if method:
        positional = positional[1:]  # self / cls
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(a.defaults)) + list(a.defaults)
    out = [
        (p.arg, "POSITIONAL_OR_KEYWORD", None if d is None else ast.unparse(d))
        for p, d in zip(positional, defaults, strict=True)
    ]
    if a.vararg:
        out.append((a.vararg.arg, "VAR_POSITIONAL", None))
    for p, d in zip(a.kwonlyargs, a.kw_defaults, strict=True):
        out.append((p.arg, "KEYWORD_ONLY", None if d is None else ast.unparse(d)))
    return out


def _runtime_params(obj: typing.Any) -> list[tuple[str, str, str | None]]:
    sig = inspect.signature(obj)
    return [
        (p.name, p.kind.name, None if p.default is inspect.Parameter.empty else repr(p.default))
        for p in sig.parameters.values()
    ]


def test_stub_names_the_module_public_names():
    assert _stub_names(_stub()) - STUB_ONLY == _public(dir(_core))


def _functions() -> list[tuple[str, ast.FunctionDef, bool]]:
    found = []
    for node in _stub().body:
        if isinstance(node, ast.FunctionDef):
            found.append((node.name, node, False))
        elif isinstance(node, ast.ClassDef) and node.name in ("Graph", "Schedule"):
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and not any(
                    isinstance(d, ast.Name) and d.id == "property" for d in item.decorator_list
                ):
                    found.append((f"{node.name}.{item.name}", item, True))
    return found


@pytest.mark.parametrize(("name", "fn", "method"), _functions(), ids=[f[0] for f in _functions()])
def test_stub_parameters_match_the_core(name, fn, method):
    if name.endswith(".__len__"):
        pytest.skip("a slot: no text signature")
    owner: typing.Any = _core
    attr = name
    if "." in name:
        cls, attr = name.split(".")
        owner = getattr(_core, cls)
        if attr == "__new__":
            attr = ""
    target = getattr(owner, attr) if attr else owner
    assert _stub_params(fn, method) == _runtime_params(target), name


def test_stub_query_names_are_the_core_query_names():
    tree = _stub()
    alias = next(
        n for n in tree.body if isinstance(n, ast.AnnAssign) and getattr(n.target, "id", "") == "QueryName"
    )
    assert isinstance(alias.value, ast.Subscript)
    literal = ast.literal_eval(alias.value.slice)
    assert tuple(literal) == _core.query_names()


def test_stub_plan_action_fields_are_the_core_fields():
    tree = _stub()
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "PlanAction")
    props = [n.name for n in cls.body if isinstance(n, ast.FunctionDef)]
    assert tuple(props) == tuple(_core.PlanAction.__match_args__)
