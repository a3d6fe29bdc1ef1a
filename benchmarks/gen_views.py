"""Generate a Django project with N view models in a dependency graph.

The same project is generated for either library; only the import line and INSTALLED_APPS
differ. Usage (also imported by bench.py):

    python gen_views.py DIR --lib django_pgviews_c --views 1000 --levels 15 --matview-ratio 0.2

Kinds of project:
  graph    N views over table bench_base, level by level; a view at level k reads one view of
           level k-1, every third one a second one too (declared in `dependencies`); every 5th
           view is materialized (20%) with concurrent_index = "id".
  refresh  8 CPU-heavy independent materialized views over bench_big plus 2 dependants.
  tiny     one tiny materialized view (Model.refresh overhead).
  reader   one materialized view of 1,000,000 rows; --variant changes its SQL.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

LIBS = ("django_pgviews", "django_pgviews_c")

SETTINGS = """\
import os
SECRET_KEY = "bench"
DEBUG = False
USE_TZ = True
INSTALLED_APPS = ["{lib}", "bv"]
DATABASES = {{
    "default": {{
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ["BENCH_DB"],
        "HOST": os.environ.get("PGHOST", "127.0.0.1"),
        "PORT": os.environ.get("PGPORT", "5432"),
        "USER": os.environ.get("PGUSER", "postgres"),
        "PASSWORD": os.environ.get("PGPASSWORD", ""),
    }}
}}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
MATERIALIZED_VIEWS_CHECK_SQL_CHANGED = True
LOGGING = {{"version": 1, "disable_existing_loggers": False}}
"""

MANAGE = """\
#!/usr/bin/env python
import os, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchsettings")
from django.core.management import execute_from_command_line
execute_from_command_line(sys.argv)
"""

HEADER = """\
from django.db import models
from {lib} import view as pg

"""

FIELDS = """\
    id = models.IntegerField(primary_key=True)
    grp = models.IntegerField()
    val = models.BigIntegerField()
"""


def graph_specs(n: int, levels: int, matview_ratio: float, seed: int = 1) -> list[dict]:
    """The views, in dependency order: name, sql, deps (indexes), materialized."""
    rng = random.Random(seed)
    every = round(1 / matview_ratio) if matview_ratio > 0 else 0
    by_level: list[list[int]] = [[] for _ in range(levels)]
    specs: list[dict] = []
    for i in range(n):
        level = i * levels // n
        name = f"bv_{i:05d}"
        mat = bool(every) and i % every == every - 1
        if level == 0:
            deps: list[int] = []
            sql = f"SELECT id, grp, val + {i} AS val FROM bench_base WHERE grp <> {i % 7}"
        else:
            below = by_level[level - 1]
            deps = [rng.choice(below)]
            if i % 3 == 0:
                other = rng.choice(below)
                if other != deps[0]:
                    deps.append(other)
            if len(deps) == 1:
                sql = f"SELECT id, grp, val + {i} AS val FROM {specs[deps[0]]['name']}"
            else:
                a, b = (specs[d]["name"] for d in deps)
                sql = f"SELECT a.id, a.grp, a.val + b.val AS val FROM {a} a JOIN {b} b ON a.id = b.id"
        by_level[level].append(i)
        specs.append({"name": name, "sql": sql, "deps": deps, "mat": mat, "level": level})
    return specs


def ddl(specs: list[dict]) -> str:
    """Plain DDL equivalent to a cold sync (views, materialized views, unique indexes)."""
    out = []
    for s in specs:
        if s["mat"]:
            out.append(f"CREATE MATERIALIZED VIEW {s['name']} AS {s['sql']} WITH DATA;")
            out.append(f"CREATE UNIQUE INDEX {s['name']}_id_index ON {s['name']} (id);")
        else:
            out.append(f"CREATE VIEW {s['name']} AS {s['sql']};")
    return "\n".join(out) + "\n"


def model_source(lib: str, specs: list[dict]) -> str:
    parts = [HEADER.format(lib=lib)]
    for i, s in enumerate(specs):
        base = "pg.MaterializedView" if s["mat"] else "pg.View"
        deps = ", ".join(f'"bv.V{d:05d}"' for d in s["deps"])
        extra = '    concurrent_index = "id"\n' if s["mat"] else ""
        parts.append(
            f"class V{i:05d}({base}):\n"
            f"    dependencies = [{deps}]\n{extra}"
            f'    sql = "{s["sql"]}"\n{FIELDS}'
            f'    class Meta:\n        db_table = "{s["name"]}"\n        managed = False\n\n'
        )
    return "".join(parts)


REFRESH_HEAVY = (
    "SELECT id % 1000 AS k, count(*) AS n, max(md5(md5(id::text || '{i}'))) AS h FROM bench_big GROUP BY 1"
)
REFRESH_COLS = "    k = models.IntegerField(primary_key=True)\n    n = models.BigIntegerField()\n    h = models.TextField()\n"


def refresh_source(lib: str, heavy: int = 8) -> str:
    parts = [HEADER.format(lib=lib)]
    for i in range(heavy):
        parts.append(
            f"class Heavy{i}(pg.MaterializedView):\n"
            f'    sql = "{REFRESH_HEAVY.format(i=i)}"\n{REFRESH_COLS}'
            f'    class Meta:\n        db_table = "heavy_{i}"\n        managed = False\n\n'
        )
    parts.append(
        "class Dep0(pg.MaterializedView):\n"
        '    dependencies = ["bv.Heavy0", "bv.Heavy1"]\n'
        '    sql = "SELECT a.k, a.n + b.n AS n, a.h || b.h AS h FROM heavy_0 a JOIN heavy_1 b ON a.k = b.k"\n'
        f'{REFRESH_COLS}    class Meta:\n        db_table = "dep_0"\n        managed = False\n\n'
        "class Dep1(pg.MaterializedView):\n"
        '    dependencies = ["bv.Heavy2"]\n'
        '    sql = "SELECT k, n, h FROM heavy_2 WHERE k % 2 = 0"\n'
        f'{REFRESH_COLS}    class Meta:\n        db_table = "dep_1"\n        managed = False\n\n'
    )
    return "".join(parts)


def tiny_source(lib: str) -> str:
    return HEADER.format(lib=lib) + (
        "class Tiny(pg.MaterializedView):\n"
        '    sql = "SELECT 1 AS id, 2 AS n"\n'
        "    id = models.IntegerField(primary_key=True)\n    n = models.IntegerField()\n"
        '    class Meta:\n        db_table = "tiny_mv"\n        managed = False\n'
    )


def reader_source(lib: str, variant: int) -> str:
    return HEADER.format(lib=lib) + (
        "class Big(pg.MaterializedView):\n"
        '    concurrent_index = "id"\n'
        f"    sql = \"SELECT id, md5(id::text || '{variant}') AS h FROM generate_series(1, 1000000) AS id\"\n"
        "    id = models.IntegerField(primary_key=True)\n    h = models.TextField()\n"
        '    class Meta:\n        db_table = "big_mv"\n        managed = False\n'
    )


def generate(
    directory: Path,
    lib: str,
    kind: str = "graph",
    views: int = 1000,
    levels: int = 15,
    matview_ratio: float = 0.2,
    variant: int = 1,
) -> Path:
    if lib not in LIBS:
        raise ValueError(f"lib must be one of {LIBS}")
    directory = Path(directory)
    (directory / "bv").mkdir(parents=True, exist_ok=True)
    (directory / "benchsettings.py").write_text(SETTINGS.format(lib=lib))
    (directory / "manage.py").write_text(MANAGE)
    (directory / "bv" / "__init__.py").write_text("")
    if kind == "graph":
        source = model_source(lib, graph_specs(views, levels, matview_ratio))
    elif kind == "refresh":
        source = refresh_source(lib)
    elif kind == "tiny":
        source = tiny_source(lib)
    elif kind == "reader":
        source = reader_source(lib, variant)
    else:
        raise ValueError(kind)
    (directory / "bv" / "models.py").write_text(source)
    return directory


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("dir")
    p.add_argument("--lib", choices=LIBS, default="django_pgviews_c")
    p.add_argument("--kind", default="graph", choices=["graph", "refresh", "tiny", "reader"])
    p.add_argument("--views", type=int, default=1000)
    p.add_argument("--levels", type=int, default=15)
    p.add_argument("--matview-ratio", type=float, default=0.2)
    p.add_argument("--variant", type=int, default=1)
    a = p.parse_args()
    print(generate(Path(a.dir), a.lib, a.kind, a.views, a.levels, a.matview_ratio, a.variant))


if __name__ == "__main__":
    main()
