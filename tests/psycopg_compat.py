"""Direct connections for tests that work outside Django's test database (subprocess projects),
with psycopg 3 or psycopg2, whichever is installed."""

from __future__ import annotations

import os
from typing import Any

try:
    import psycopg as _driver

    def _connect(dbname: str) -> Any:
        return _driver.connect(_conninfo(dbname), autocommit=True)
except ImportError:  # psycopg2
    import psycopg2 as _driver

    def _connect(dbname: str) -> Any:
        conn = _driver.connect(_conninfo(dbname))
        conn.autocommit = True
        return conn


def _conninfo(dbname: str) -> str:
    parts = {
        "dbname": dbname,
        "host": os.environ.get("PGHOST", "127.0.0.1"),
        "port": os.environ.get("PGPORT", "5432"),
        "user": os.environ.get("PGUSER", "postgres"),
    }
    if os.environ.get("PGPASSWORD"):
        parts["password"] = os.environ["PGPASSWORD"]
    return " ".join(f"{k}='{v}'" for k, v in parts.items())


def query(dbname: str, sql: str, params: Any = None, setup: str | None = None) -> list[tuple]:
    """Run one statement on a new connection (after ``setup``, on the same connection)."""
    conn = _connect(dbname)
    try:
        cur = conn.cursor()
        if setup:
            cur.execute(setup)
        cur.execute(sql, params)
        return [tuple(r) for r in cur.fetchall()] if cur.description else []
    finally:
        conn.close()


def recreate_database(name: str) -> None:
    drop_database(name)
    query("postgres", f'CREATE DATABASE "{name}"')


def drop_database(name: str) -> None:
    query("postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
