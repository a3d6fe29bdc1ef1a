"""The loop's own connections get the session Django's connection gets (time zone, assume_role,
isolation level, OPTIONS), again after a reconnect; the server's notices go to the logger."""

from __future__ import annotations

import logging
import os

import pytest
from django.db import connection

from django_pgviews_c import _core
from django_pgviews_c.refresh import connection_params, refresh_views, session_settings
from tests.helpers import ViewSet, catalog_rows, execute

SUFFIX = os.environ.get("PGVIEWS_DB_SUFFIX", "")


@pytest.fixture
def new_york(transactional_db):
    """The database's default TimeZone is America/New_York; Django (USE_TZ) sets UTC."""
    name = connection.settings_dict["NAME"]
    execute(f"ALTER DATABASE \"{name}\" SET timezone = 'America/New_York'")
    execute(
        "CREATE TABLE t_tzsrc (ts timestamptz); "
        "INSERT INTO t_tzsrc VALUES ('2024-01-01 02:00:00+00'), ('2024-06-30 23:30:00+00')"
    )
    yield
    execute(f'ALTER DATABASE "{name}" RESET timezone')
    execute("DROP TABLE IF EXISTS t_tzsrc CASCADE")


def test_jobs_2_computes_what_jobs_1_computes(new_york):
    vs = ViewSet()
    a = vs.view("TzDay", "SELECT ts::date AS d FROM t_tzsrc", materialized=True)
    b = vs.view("TzHour", "SELECT extract(hour FROM ts)::int AS h FROM t_tzsrc", materialized=True)
    vs.sync()
    refresh_views([a, b], jobs=1)
    one = (
        catalog_rows("SELECT d::text FROM t_tzday ORDER BY 1"),
        catalog_rows("SELECT h FROM t_tzhour ORDER BY 1"),
    )
    assert one[0] == [("2024-01-01",), ("2024-06-30",)]
    refresh_views([a, b], jobs=2)
    two = (
        catalog_rows("SELECT d::text FROM t_tzday ORDER BY 1"),
        catalog_rows("SELECT h FROM t_tzhour ORDER BY 1"),
    )
    assert two == one


def test_the_session_is_set_again_after_a_reconnect(new_york):
    execute("CREATE TABLE t_tzlog (tz text)")
    try:
        out = _core.run_parallel(
            connection_params(connection),
            [
                "INSERT INTO t_tzlog SELECT current_setting('TimeZone')",
                "SELECT pg_terminate_backend(pg_backend_pid())",
                "INSERT INTO t_tzlog SELECT current_setting('TimeZone')",
            ],
            [[], [0], []],
            [3.0, 2.0, 1.0],
            1,
            session=session_settings(connection),
        )
        assert [s for s, _, _ in out] == ["ok", "failed", "ok"]
        assert catalog_rows("SELECT tz FROM t_tzlog") == [("UTC",), ("UTC",)]
    finally:
        execute("DROP TABLE t_tzlog")


def test_the_session_binds_each_statement_and_outlives_none(transactional_db):
    """Each statement runs in the session (the isolation level included: it binds the statement's
    own transaction); none of it, nor a guarded statement's lock_timeout, stays on the server
    connection (behind PgBouncer's transaction pooling it would reach the next client)."""
    execute("CREATE TABLE t_sesslog (k int, tz text, iso text, lt text, usr text)")
    row = (
        "SELECT current_setting('TimeZone'), current_setting('transaction_isolation'), "
        "current_setting('lock_timeout'), current_user::text"
    )
    try:
        out = _core.run_parallel(
            connection_params(connection),
            [
                f"INSERT INTO t_sesslog SELECT 1, * FROM ({row}) s",
                f"INSERT INTO t_sesslog SELECT 2, * FROM ({row}) s",
            ],
            [[], [0]],
            [2.0, 1.0],
            1,
            session={"TimeZone": "Asia/Tokyo", "default_transaction_isolation": "repeatable read"},
            guard=["t_sesslog", None],
            lock_timeout_ms=1234,
        )
        assert [s for s, _, _ in out] == ["ok", "ok"], out
        rows = catalog_rows("SELECT k, tz, iso, lt FROM t_sesslog ORDER BY k")
        assert rows[0] == (1, "Asia/Tokyo", "repeatable read", "1234ms")
        assert rows[1][:3] == (2, "Asia/Tokyo", "repeatable read")
        assert rows[1][3] != "1234ms"  # the guard of statement 1 ended with it, on the same connection
    finally:
        execute("DROP TABLE t_sesslog")


@pytest.fixture
def roles(transactional_db):
    owner, login = f"pgvc_owner{SUFFIX}", f"pgvc_login{SUFFIX}"
    for role in (login, owner):
        execute(f"DROP ROLE IF EXISTS {role}")
    execute(f"CREATE ROLE {owner} NOLOGIN; CREATE ROLE {login} LOGIN NOINHERIT IN ROLE {owner}")
    execute("CREATE TABLE t_rolesrc (v int); INSERT INTO t_rolesrc VALUES (1)")
    execute(f"GRANT SELECT ON t_rolesrc TO {owner}")
    for name in ("t_role_a", "t_role_b"):
        execute(f"CREATE MATERIALIZED VIEW {name} AS SELECT v FROM t_rolesrc")
        execute(f"ALTER MATERIALIZED VIEW {name} OWNER TO {owner}")
    yield owner, login
    execute("DROP TABLE t_rolesrc CASCADE")
    execute(f"DROP ROLE {login}; DROP ROLE {owner}")


def test_assume_role_reaches_the_loop(roles):
    owner, login = roles
    vs = ViewSet()
    models = [vs.view(n, "SELECT v FROM t_rolesrc", materialized=True) for n in ("Role_A", "Role_B")]
    execute("INSERT INTO t_rolesrc VALUES (2)")
    settings = connection.settings_dict
    saved = settings["USER"], dict(settings["OPTIONS"])
    settings["USER"] = login
    try:
        settings["OPTIONS"]["assume_role"] = owner
        result = refresh_views(models, jobs=2)
    finally:
        settings["USER"], settings["OPTIONS"] = saved
    assert sorted(result.refreshed) == ["viewtest.Role_A", "viewtest.Role_B"]
    assert catalog_rows("SELECT count(*) FROM t_role_a") == [(2,)]
    assert catalog_rows("SELECT count(*) FROM t_role_b") == [(2,)]


def test_an_option_the_loop_does_not_know_is_refused_by_name(transactional_db):
    settings = connection.settings_dict
    saved = dict(settings["OPTIONS"])
    settings["OPTIONS"]["no_such_keyword"] = "1"
    try:
        params = connection_params(connection)
    finally:
        settings["OPTIONS"] = saved
    assert params["no_such_keyword"] == "1"
    with pytest.raises(Exception, match='invalid connection option "no_such_keyword"'):
        _core.run_parallel(params, ["SELECT 1", "SELECT 2"], [[], []], None, 2)


def test_isolation_level_and_options_reach_the_loop(transactional_db):
    settings = connection.settings_dict
    saved = dict(settings["OPTIONS"])
    from django.db.backends.postgresql.psycopg_any import IsolationLevel

    settings["OPTIONS"].update(isolation_level=IsolationLevel.REPEATABLE_READ, options="-c work_mem=7MB")
    try:
        params, session = connection_params(connection), session_settings(connection)
    finally:
        settings["OPTIONS"] = saved
    execute("CREATE TABLE t_iso (iso text, wm text)")
    try:
        out = _core.run_parallel(
            params,
            [
                "INSERT INTO t_iso SELECT current_setting('transaction_isolation'), current_setting('work_mem')"
            ],
            [[]],
            None,
            1,
            session=session,
        )
        assert out[0][0] == "ok"
        assert catalog_rows("SELECT iso, wm FROM t_iso") == [("repeatable read", "7MB")]
    finally:
        execute("DROP TABLE t_iso")


def test_server_warnings_go_to_the_logger_not_stderr(transactional_db, caplog, capfd):
    execute(
        "CREATE FUNCTION public.pgvc_warn() RETURNS int LANGUAGE plpgsql AS "
        "$$BEGIN RAISE WARNING 'careful with %', 'this'; RETURN 1; END$$"
    )
    try:
        vs = ViewSet()
        models = [vs.view(n, "SELECT public.pgvc_warn() AS x", materialized=True) for n in ("WarnA", "WarnB")]
        vs.sync()
        capfd.readouterr()
        with caplog.at_level(logging.INFO, logger="django_pgviews_c.refresh"):
            refresh_views(models, jobs=2)
        out, err = capfd.readouterr()
    finally:
        execute("DROP FUNCTION public.pgvc_warn() CASCADE")
    assert "careful" not in err
    warnings = [
        r for r in caplog.records if r.name == "django_pgviews_c.refresh" and r.levelno == logging.WARNING
    ]
    assert sorted(r.getMessage() for r in warnings) == [
        "viewtest.WarnA: WARNING: careful with this",
        "viewtest.WarnB: WARNING: careful with this",
    ]
