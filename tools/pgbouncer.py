#!/usr/bin/env python3
"""Start PgBouncer in front of a PostgreSQL server, for tests (tests/test_pgbouncer.py).

    python tools/pgbouncer.py --mode transaction   # runs until Ctrl-C; prints its settings

``find_pgbouncer()`` returns Debian's pgbouncer, installing it with apt-get when this runs as
root and it is missing; it raises ``Unavailable`` (with the reason) when it cannot be had.
``PgBouncer(upstream, mode)`` writes a configuration in a temporary folder, starts pgbouncer on a
free port of 127.0.0.1 in the foreground, and waits until its log says it is up. Authentication
is ``trust`` (the upstream must trust the user too, as the test server does). PgBouncer refuses
to run as root: as root it is started with ``-u`` as the owner of the upstream's socket folder,
else ``postgres`` or ``nobody``.
"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODES = ("session", "transaction", "statement")
START_TIMEOUT = 30  # seconds


class Unavailable(RuntimeError):
    """pgbouncer is not installed and cannot be installed here."""


def log(message: str) -> None:
    print(f"pgbouncer.py: {message}", file=sys.stderr, flush=True)


def find_pgbouncer() -> str:
    """Path of the pgbouncer executable; installs Debian's package when missing and root."""
    for candidate in (shutil.which("pgbouncer"), "/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise Unavailable(
            "pgbouncer is not installed (Debian: apt-get install pgbouncer), and this is not root"
        )
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    # Installing must not start the packaged service (it would hold port 6432 for good).
    policy = Path("/usr/sbin/policy-rc.d")
    added_policy = not policy.exists()
    if added_policy:
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    try:
        install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "pgbouncer"]
        log("installing pgbouncer (apt-get)")
        proc = subprocess.run(install, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True)
            proc = subprocess.run(install, env=env, capture_output=True, text=True)
    finally:
        if added_policy:
            policy.unlink(missing_ok=True)
    if proc.returncode != 0:
        raise Unavailable(f"apt-get install pgbouncer failed: {proc.stderr.strip()[-300:]}")
    found = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not os.access(found, os.X_OK):
        raise Unavailable("apt-get installed pgbouncer, but no pgbouncer executable was found")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run_as(upstream: dict) -> str | None:
    """The user to run pgbouncer as (None: as this process). Behind a unix socket, the owner of
    its folder (the embedded server's folder admits no one else); else postgres or nobody."""
    if os.geteuid() != 0:
        return None
    host = str(upstream.get("host") or "")
    if host.startswith("/"):
        owner = pwd.getpwuid(os.stat(host).st_uid).pw_name
        if owner != "root":
            return owner
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise Unavailable("pgbouncer does not run as root, and there is no 'postgres' or 'nobody' user")


class PgBouncer:
    """One pgbouncer process in front of ``upstream`` (libpq settings: host, port, user)."""

    def __init__(self, upstream: dict, mode: str = "transaction", pool_size: int = 10, **settings: object):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        self.executable = find_pgbouncer()
        self.upstream = upstream
        self.mode = mode
        self.pool_size = pool_size
        self.extra = settings
        self.host = "127.0.0.1"
        self.port = 0
        self.folder: Path | None = None
        self.process: subprocess.Popen | None = None

    @property
    def logfile(self) -> Path:
        assert self.folder is not None
        return self.folder / "pgbouncer.log"

    def config(self) -> str:
        up = self.upstream
        user = str(up.get("user") or "postgres")
        upstream = f"host={up['host']} port={up['port']} user={user}"
        if up.get("password"):
            upstream += f" password={up['password']}"
        lines = [
            "[databases]",
            f"* = {upstream}",
            "[pgbouncer]",
            f"listen_addr = {self.host}",
            f"listen_port = {self.port}",
            "unix_socket_dir =",
            "auth_type = trust",
            f"auth_file = {self.folder}/userlist.txt",
            f"admin_users = {user}",
            f"pool_mode = {self.mode}",
            f"default_pool_size = {self.pool_size}",
            "max_client_conn = 200",
            f"logfile = {self.logfile}",
            f"pidfile = {self.folder}/pgbouncer.pid",
        ]
        lines += [f"{key} = {value}" for key, value in self.extra.items()]
        return "\n".join(lines) + "\n"

    def start(self) -> PgBouncer:
        self.folder = Path(tempfile.mkdtemp(prefix=f"pgbouncer-{self.mode}-"))
        self.port = free_port()
        user = str(self.upstream.get("user") or "postgres")
        (self.folder / "userlist.txt").write_text(f'"{user}" ""\n')
        (self.folder / "pgbouncer.ini").write_text(self.config())
        args = [self.executable]
        run_as = _run_as(self.upstream)
        if run_as:
            entry = pwd.getpwnam(run_as)
            for path in (self.folder, *self.folder.iterdir()):
                os.chown(path, entry.pw_uid, entry.pw_gid)
            args += ["-u", run_as]
        args.append(str(self.folder / "pgbouncer.ini"))
        # PgBouncer in the foreground writes every log line to stderr as well as to its logfile:
        # to a pipe nobody drains it would block, and stop answering, once the pipe's 64 KiB are
        # full (a few hundred connections). A file takes them.
        with open(self.folder / "stderr.log", "wb") as stderr:
            self.process = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr
            )
        deadline = time.monotonic() + START_TIMEOUT
        while True:  # wait for the log's "process up" (or the process to die)
            if self.process.poll() is not None:
                err = (self.folder / "stderr.log").read_text(errors="replace")
                raise RuntimeError(
                    f"pgbouncer exited with {self.process.returncode}: {err.strip()}{self._log_tail()}"
                )
            if self.logfile.exists() and "process up" in self.logfile.read_text(errors="replace"):
                break
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"pgbouncer did not start within {START_TIMEOUT}s{self._log_tail()}")
            time.sleep(0.05)
        where = f"{self.host}:{self.port}"
        log(f"pgbouncer ({self.mode} pooling) on {where}, in front of {up_text(self.upstream)}")
        return self

    def _log_tail(self) -> str:
        try:
            return "\n" + "\n".join(self.logfile.read_text(errors="replace").splitlines()[-10:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # immediate shutdown
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None

    def __enter__(self) -> PgBouncer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def up_text(settings: dict) -> str:
    return f"PostgreSQL at {settings['host']}:{settings['port']}"


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import pgserver

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=MODES, default="transaction")
    parser.add_argument("--embedded", action="store_true", help="in front of the embedded PostgreSQL 18")
    args = parser.parse_args(argv)
    try:
        bouncer = PgBouncer(pgserver.ensure_server("embedded" if args.embedded else None), args.mode)
        bouncer.start()
    except (Unavailable, RuntimeError) as exc:
        log(f"error: {exc}")
        return 1
    print(f"export PGHOST={bouncer.host} PGPORT={bouncer.port}", flush=True)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        bouncer.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
