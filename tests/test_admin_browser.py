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
    assert "14 passed" in done.stdout, done.stdout


def test_views_page_refreshes_outside_atomic_requests(adminproject):
    """With ATOMIC_REQUESTS a failed refresh would abort the request's transaction and take its
    history record with it: the page runs outside it."""
    project, db = adminproject
    done = run_inner(
        project,
        db,
        "inner_views_page.py",
        "--create-db",
        "-k",
        "failed or stale",
        ADMINPROJ_ATOMIC_REQUESTS="1",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 passed" in done.stdout, done.stdout


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


def test_make_admin_sets_up_the_demo_and_serves_its_views_page():
    """What `make admin` runs: the demo's set-up (twice in a row works), the superuser
    admin / admin, and the development server on 127.0.0.1 with the Views page."""
    import http.cookiejar
    import re
    import socket
    import time
    import urllib.parse
    import urllib.request

    db = "pgvc_demo" + SUFFIX
    demo = ROOT / "demo_project"
    environ = {**os.environ, "PGVIEWS_DEMO_DB": db, "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    environ.pop("DJANGO_SETTINGS_MODULE", None)
    manage = [sys.executable, str(demo / "manage.py"), "demo_admin"]
    server = None
    try:
        first = subprocess.run(
            [*manage, "--no-serve"], cwd=demo, env=environ, capture_output=True, text=True, timeout=300
        )
        assert first.returncode == 0, first.stdout + first.stderr
        assert "Login:  admin / admin  (superuser created)" in first.stdout
        # New events make EventMatView stale; the players' tables did not change.
        assert "  refreshed newsletter.EventMatView\n" in first.stdout
        assert "  skipped   newsletter.SeasonStats: fresh\n" in first.stdout

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = subprocess.Popen(
            [*manage, "--port", str(port)],
            cwd=demo,
            env=environ,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        out = []
        for line in server.stdout:
            out.append(line)
            if line.startswith("Serving on 127.0.0.1"):
                break
        text = "".join(out)
        assert server.poll() is None, text
        url = f"http://127.0.0.1:{port}/admin/django_pgviews_c/databaseview/"
        assert f"Admin:  {url}\n" in text and "(superuser reset)" in text
        assert "  skipped   newsletter.SeasonStats: fresh\n" in text  # the second run too

        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        login = f"http://127.0.0.1:{port}/admin/login/"
        deadline = time.monotonic() + 60
        while True:  # the server listens shortly after it says so
            try:
                page = opener.open(login, timeout=10).read().decode()
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None, "the server did not answer"
                time.sleep(0.1)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
        form = {"csrfmiddlewaretoken": token, "username": "admin", "password": "admin", "next": url}
        request = urllib.request.Request(
            login, urllib.parse.urlencode(form).encode(), headers={"Referer": login}
        )
        with opener.open(request, timeout=30) as response:
            assert response.url == url
            page = response.read().decode()
        assert re.findall(r'data-view="([^"]+)"', page) == [
            "newsletter.EventView",
            "newsletter.EventMatView",
            "newsletter.SeasonStats",
        ]
        assert page.count('value="Refresh"') == 2
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
            server.stdout.close()
        psycopg_compat.drop_database(db)
