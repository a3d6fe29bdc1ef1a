"""The documentation's Python examples run.

Every fenced ```python block of README.md and docs/*.md runs, in order, in a throwaway Django
project against the real database, with apps `newsletter` and `myapp`. A block whose text names
"newsletter" is declared in that app, any other in `myapp`; blocks share one namespace, as the
examples do. Of each block, the imports, classes and functions run first; when it declared
models, `manage.py check` (its warnings included, so a view whose Meta drops `managed = False`
fails), `migrate --run-syncdb` (the tables of the models it declared) and `sync_pgviews` follow;
then its other statements run.

README.md runs with both apps empty: a reader copies its examples into a project of their own,
so every model they read is declared in README.md itself (docs/getting-started.md is README.md,
included). The pages of docs/ read models declared once for them all: `newsletter.Event` and
`myapp.Customer` (_MODELS), the ones README.md shows.

A block preceded by `<!-- not-run: reason -->` is skipped; use it sparingly, for what cannot run
here (a settings fragment of another project, a shell command written as Python).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests import psycopg_compat

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)
_NOT_RUN = re.compile(r"<!--\s*not-run:\s*(.+?)\s*-->\s*$")


def python_blocks(path: Path) -> list[dict]:
    """The ```python blocks of a Markdown file: line, code, and why not run (or None)."""
    text = path.read_text()
    blocks = []
    for m in _FENCE.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        before = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        skip = _NOT_RUN.search(before)
        blocks.append({"line": line, "code": m.group(1), "not_run": skip.group(1) if skip else None})
    return blocks


_MODELS = {
    "newsletter": """
        from django.db import models


        class Event(models.Model):
            event = models.CharField(max_length=100)
            count = models.IntegerField(default=0)
        """,
    "myapp": """
        from django.db import models


        class Customer(models.Model):
            name = models.CharField(max_length=100)
            post_code = models.CharField(max_length=20)
            is_preferred = models.BooleanField(default=False)
            created_at = models.DateTimeField(auto_now_add=True)
        """,
}

_SETTINGS = """
import os

DATABASES = {{
    "default": {{
        "ENGINE": "django.db.backends.postgresql",
        "NAME": {name!r},
        "USER": os.environ.get("PGUSER", "postgres"),
        "PASSWORD": os.environ.get("PGPASSWORD", ""),
        "HOST": os.environ.get("PGHOST", "127.0.0.1"),
        "PORT": os.environ.get("PGPORT", "5432"),
    }}
}}
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.postgres",
    "django_pgviews_c",
    "newsletter",
    "myapp",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {{
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {{
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        }},
    }}
]
SECRET_KEY = "docs"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
MIN_CUSTOMER_DATE = "2020-01-01"
"""

_RUNNER = r"""
import ast, json, sys, traceback

import django

django.setup()

from django.apps import apps
from django.core.management import call_command

call_command("migrate", run_syncdb=True, verbosity=0)
namespace = {}
for app in ("newsletter", "myapp"):
    module = sys.modules[f"{app}.models"]
    namespace.update({k: v for k, v in vars(module).items() if not k.startswith("_")})

for block in json.load(open(sys.argv[1])):
    app = "newsletter" if "newsletter" in block["code"] else "myapp"
    namespace["__name__"] = f"{app}.models"
    try:
        tree = ast.parse(block["code"])
        first = (ast.Import, ast.ImportFrom, ast.ClassDef, ast.FunctionDef)
        declarations = [n for n in tree.body if isinstance(n, first)]
        statements = [n for n in tree.body if not isinstance(n, first)]
        for node in declarations:  # a class declared again replaces the earlier one
            if isinstance(node, ast.ClassDef):
                apps.all_models[app].pop(node.name.lower(), None)
        apps.clear_cache()
        before = set(apps.all_models[app])
        exec(compile(ast.Module(declarations, []), f"block at line {block['line']}", "exec"), namespace)
        if set(apps.all_models[app]) != before or any(isinstance(n, ast.ClassDef) for n in declarations):
            call_command("check", fail_level="WARNING", verbosity=0)
            call_command("migrate", run_syncdb=True, verbosity=0)  # the tables of its models
            call_command("sync_pgviews", verbosity=0)
        exec(compile(ast.Module(statements, []), f"block at line {block['line']}", "exec"), namespace)
        print(json.dumps({"line": block["line"], "ok": True}), flush=True)
    except BaseException:
        print(json.dumps({"line": block["line"], "ok": False, "error": traceback.format_exc()}), flush=True)

# What a reader of the examples expects to find: every view they declared, in the database.
from django.db import connection
from django_pgviews_c.view import View

declared = sorted(m._meta.db_table for m in apps.get_models() if issubclass(m, View))
with connection.cursor() as cur:
    cur.execute("SELECT relname::text FROM pg_class WHERE relkind IN ('v', 'm') AND relname = ANY(%s)", [declared])
    found = sorted(r[0] for r in cur.fetchall())
print(json.dumps({"declared": declared, "found": found}), flush=True)
"""


#: The documents whose examples must declare every model they read (no _MODELS supplied).
SELF_CONTAINED = {ROOT / "README.md"}


def _documents() -> list:
    return [pytest.param(p, id=str(p.relative_to(ROOT))) for p in DOCS if python_blocks(p)]


def test_every_document_is_read():
    # README.md has examples; a docs/ page without any is read and passes.
    assert python_blocks(ROOT / "README.md")
    assert all(p.exists() for p in DOCS)
    # getting-started.md is README.md itself, whose examples run self-contained.
    assert (
        ROOT / "docs" / "getting-started.md"
    ).read_text().strip() == '{% include-markdown "../README.md" %}'


@pytest.mark.parametrize("path", _documents())
def test_python_examples_run(path, tmp_path):
    blocks = [b for b in python_blocks(path) if not b["not_run"]]
    name = "pgvc_docs" + os.environ.get("PGVIEWS_DB_SUFFIX", "")
    for app, source in _MODELS.items():
        (tmp_path / app).mkdir()
        (tmp_path / app / "__init__.py").write_text("")
        models_py = "" if path in SELF_CONTAINED else textwrap.dedent(source)
        (tmp_path / app / "models.py").write_text(models_py)
    (tmp_path / "docsettings.py").write_text(_SETTINGS.format(name=name))
    (tmp_path / "blocks.json").write_text(json.dumps(blocks))
    (tmp_path / "runner.py").write_text(_RUNNER)
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="docsettings", PYTHONPATH=f"{tmp_path}{os.pathsep}{ROOT}")
    psycopg_compat.recreate_database(name)
    try:
        proc = subprocess.run(
            [sys.executable, str(tmp_path / "runner.py"), str(tmp_path / "blocks.json")],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        psycopg_compat.drop_database(name)
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    results = [r for r in lines if "line" in r]
    failed = [r for r in results if not r["ok"]]
    report = "\n".join(f"{path.name} line {r['line']}:\n{r['error']}" for r in failed)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not failed, report
    assert [r["line"] for r in results] == [b["line"] for b in blocks], proc.stderr[-3000:]
    views = lines[-1]
    assert views["found"] == views["declared"]
