"""Build the C core, django_pgviews_c._core, against libpq.

libpq is found through pg_config: $PG_CONFIG when set, else the pg_config on PATH. It is looked
up only when the extension is built (an sdist needs no libpq), and a missing pg_config or missing
headers stop the build before the compiler runs, with what to install on each platform.

The build folder is keyed by the libpq it was built against: a rebuild with another PG_CONFIG
(or other PGVIEWS_DEV / PGVIEWS_SANITIZE flags) recompiles and relinks everything instead of
reusing objects and a RUNPATH that point at the previous libpq.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

# Every C file of csrc/ is part of the extension (and so of the ASan and valgrind builds, which
# run this file): a new one needs no list updated.
CSRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "csrc")
SOURCES = sorted(name for name in os.listdir(CSRC) if name.endswith(".c"))
HEADERS = sorted(name for name in os.listdir(CSRC) if name.endswith(".h"))

NO_LIBPQ = """\
django-pgviews-c: cannot build the C extension: {reason}.

It needs the PostgreSQL client library (libpq) and its headers, found through pg_config.
Install them with your system's package manager:

    Debian, Ubuntu:    apt-get install libpq-dev
    Fedora, RHEL:      dnf install libpq-devel
    Alpine:            apk add libpq-dev
    macOS (Homebrew):  brew install libpq   (then PG_CONFIG=$(brew --prefix libpq)/bin/pg_config)

or point PG_CONFIG at the pg_config of another libpq (a PostgreSQL installation of your own):

    PG_CONFIG=/path/to/bin/pg_config pip install django-pgviews-c

A C compiler is needed too (Debian: build-essential, Fedora: gcc, Alpine: build-base).
"""


class LibpqNotFound(SystemExit):
    def __init__(self, reason: str) -> None:
        super().__init__(NO_LIBPQ.format(reason=reason))


def find_pg_config() -> str:
    configured = os.environ.get("PG_CONFIG")
    if configured:
        exe = shutil.which(configured)
        if exe is None:
            raise LibpqNotFound(f"PG_CONFIG={configured} is not an executable pg_config")
        return exe
    exe = shutil.which("pg_config")
    if exe is None:
        raise LibpqNotFound("pg_config was not found on PATH and PG_CONFIG is not set")
    return exe


def pg_config(exe: str, flag: str) -> str:
    try:
        return subprocess.run([exe, flag], check=True, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as exc:
        raise LibpqNotFound(f"{exe} {flag} failed ({exc})") from None


class BuildExt(build_ext):
    """build_ext that finds libpq when it runs, and never reuses a build made for another one."""

    def run(self) -> None:
        # Looked up here, not in finalize_options: building the sdist or the metadata also
        # finalizes build_ext, and must not need libpq.
        exe = find_pg_config()
        include_dir = pg_config(exe, "--includedir")
        lib_dir = pg_config(exe, "--libdir")
        if not os.path.isfile(os.path.join(include_dir, "libpq-fe.h")):
            raise LibpqNotFound(f"libpq-fe.h is not in {include_dir} (the include folder {exe} names)")
        flags = compile_flags()
        config = {
            "pg_config": exe,
            "version": pg_config(exe, "--version"),
            "include_dir": include_dir,
            "lib_dir": lib_dir,
            "flags": flags,
            "python": sys.version,
        }
        # One build folder per libpq and flags: objects of another build are never reused.
        key = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]
        stamp = f"{self.build_temp}.last-build.json"
        self.build_temp = f"{self.build_temp}-{key}"
        for ext in self.extensions:
            ext.include_dirs.append(include_dir)
            ext.library_dirs.append(lib_dir)
            ext.runtime_library_dirs.append(lib_dir)
            ext.extra_compile_args.extend(flags[0])
            ext.extra_link_args.extend(flags[1])
        # The target .so does not say what it was linked against: relink whenever the last build
        # of this Python (recorded beside its build folders) was made for another libpq.
        recorded = json.dumps(config, sort_keys=True)
        try:
            with open(stamp) as f:
                previous = f.read()
        except OSError:
            previous = None
        if previous != recorded:
            self.force = True
        super().run()
        os.makedirs(os.path.dirname(stamp) or ".", exist_ok=True)
        with open(stamp, "w") as f:
            f.write(recorded)


def compile_flags() -> tuple[list[str], list[str]]:
    compile_args = ["-std=c11", "-fvisibility=hidden", "-Wall", "-Wextra"]
    link_args: list[str] = []
    if os.environ.get("PGVIEWS_DEV"):
        # -UNDEBUG: the core's asserts (invariants the static analyzer is shown) run in
        # development and test builds; Python's own CFLAGS define NDEBUG for release ones.
        compile_args += ["-Werror", "-O1", "-g", "-UNDEBUG"]
    sanitize = os.environ.get("PGVIEWS_SANITIZE")
    if sanitize:
        compile_args += [f"-fsanitize={sanitize}", "-fno-omit-frame-pointer", "-g", "-O1"]
        link_args += [f"-fsanitize={sanitize}"]
    return compile_args, link_args


setup(
    cmdclass={"build_ext": BuildExt},
    ext_modules=[
        Extension(
            "django_pgviews_c._core",
            sources=[f"csrc/{name}" for name in SOURCES],
            depends=[f"csrc/{name}" for name in HEADERS],
            libraries=["pq"],
        )
    ],
)
