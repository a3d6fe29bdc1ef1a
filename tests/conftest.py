from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# Under pytest-xdist each worker gets databases, roles and ports of its own: every test reads
# PGVIEWS_DB_SUFFIX when its module is imported, after this.
if os.environ.get("PYTEST_XDIST_WORKER") and not os.environ.get("PGVIEWS_XDIST_SUFFIXED"):
    os.environ["PGVIEWS_DB_SUFFIX"] = (
        os.environ.get("PGVIEWS_DB_SUFFIX", "") + "_" + os.environ["PYTEST_XDIST_WORKER"]
    )
    os.environ["PGVIEWS_XDIST_SUFFIXED"] = "1"
from hypothesis import HealthCheck, settings

# Under valgrind everything runs ~50 times slower: a few examples still walk every path.
settings.register_profile("valgrind", max_examples=5, deadline=None, suppress_health_check=list(HealthCheck))
settings.register_profile("default", deadline=None)
# The matrix and the sanitizer runs (.ci/run): the same properties with fewer examples each; the
# full count runs in `make test`.
settings.register_profile("quick", max_examples=20, deadline=None)
settings.load_profile("default")


def pytest_report_header(config):
    import django

    from django_pgviews_c import _core

    try:
        import psycopg

        driver = f"psycopg {psycopg.__version__} ({psycopg.pq.__impl__}, libpq {psycopg.pq.version()})"
    except ImportError:
        import psycopg2

        driver = f"psycopg2 {psycopg2.__version__} (libpq {psycopg2.extensions.libpq_version()})"
    try:
        # pytest-django blocks Django's connection outside tests: ask the server directly.
        from tests import psycopg_compat

        server = psycopg_compat.query("postgres", "SHOW server_version")[0][0]
    except Exception as exc:  # the header must not hide the real failure
        server = f"unreachable ({exc})"
    return [
        f"PostgreSQL server {server}; Django {django.__version__}; {driver}",
        f"django_pgviews_c._core built against libpq headers {_core.PG_VERSION_BUILT}, "
        f"runs libpq {_core.libpq_version()}",
    ]


@pytest.fixture
def cursor(db):
    from django.db import connection

    with connection.cursor() as cur:
        yield cur


@contextlib.contextmanager
def _server_env() -> Iterator[None]:
    """Under `make test-asan` the sanitizer is preloaded into this process: not into the
    server's programs (postgres -V never returns with it)."""
    preload = os.environ.pop("LD_PRELOAD", None)
    try:
        yield
    finally:
        if preload is not None:
            os.environ["LD_PRELOAD"] = preload


@pytest.fixture(scope="module")
def small_server(request):
    """A private server (tools/pgreplica.py) of the requesting module's own, that refuses
    connections for its limit: max_connections is the module's MAX_CONNECTIONS, none reserved for
    superusers. Stopped after the module."""
    # The private server is driven through psycopg 3 (tools/pgreplica.py); what its tests check,
    # the C core's own libpq connections, does not depend on the driver: the psycopg2 session skips.
    pytest.importorskip("psycopg", reason="tools/pgreplica.py drives its private server with psycopg 3")
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
    import pgreplica

    reason = pgreplica.cannot_run()
    if reason:
        pytest.skip(reason)
    settings = {"max_connections": str(request.module.MAX_CONNECTIONS), "superuser_reserved_connections": "0"}
    with _server_env():
        cluster = pgreplica.Cluster(settings=settings).start()
    try:
        yield cluster
    finally:
        with _server_env():
            cluster.stop()
