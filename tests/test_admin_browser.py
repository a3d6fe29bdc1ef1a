"""The admin's Views page: Django's test client (permissions, POSTs, messages) and a real
Chromium (log in, press Refresh, see the last refresh change), in a project with the admin
(tests/adminproject) run as its own pytest session on its own test database."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests import psycopg_compat

HERE = Path(__file__).parent
ROOT = HERE.parent
SUFFIX = os.environ.get("PGVIEWS_DB_SUFFIX", "")
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture
def adminproject(tmp_path):
    dest = tmp_path / "adminproject"
    shutil.copytree(HERE / "adminproject", dest, ignore=shutil.ignore_patterns("__pycache__"))
    db = "pgvc_adminproj" + SUFFIX
    yield dest, db
    for name in (f"test_{db}", db):
        psycopg_compat.drop_database(name)


def run_inner(project: Path, db: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHONPATH": str(project), "ADMINPROJ_DB": db, "PYTHONDONTWRITEBYTECODE": "1"}
    environ.pop("DJANGO_SETTINGS_MODULE", None)
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", *args],
        cwd=project,
        env=environ,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_views_page_with_the_test_client(adminproject):
    project, db = adminproject
    done = run_inner(project, db, "inner_views_page.py", "--create-db")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "10 passed" in done.stdout, done.stdout


@pytest.fixture(scope="session")
def chromium():
    """Debian's chromium, installed by tools/install_chromium.sh (apt-get, when root)."""
    try:
        import playwright  # noqa: F401
    except ImportError:
        pytest.skip("the playwright package is not installed (pip install -e '.[test]')")
    done = subprocess.run(
        [str(ROOT / "tools" / "install_chromium.sh")], capture_output=True, text=True, timeout=900
    )
    if done.returncode != 0:
        pytest.skip(f"no chromium for the browser test: {(done.stdout + done.stderr).strip()}")
    return done.stdout.strip().splitlines()[-1]


def test_views_page_in_chromium(adminproject, chromium):
    project, db = adminproject
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "admin_views_page.png"
    shot.unlink(missing_ok=True)
    done = run_inner(
        project, db, "-s", "inner_browser.py", "--create-db", CHROMIUM=chromium, SCREENSHOT=str(shot)
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout, done.stdout
    assert shot.stat().st_size > 10_000
    print(f"\nscreenshot of the admin Views page: {shot}")
