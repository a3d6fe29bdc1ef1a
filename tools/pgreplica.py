#!/usr/bin/env python3
"""Private PostgreSQL servers for tests and benchmarks: a primary alone (``Cluster``), or a
primary and hot standby (``ReplicaPair``, streaming replication).

The primary is made with ``initdb``, the standby with ``pg_basebackup -R`` (which writes
``standby.signal`` and ``primary_conninfo``), each on a free local port, all in one temporary
folder that ``stop()`` removes. ``initdb`` and ``postgres`` refuse to run as root: as root the
servers run as the ``postgres`` user (``runuser``). Binaries come from ``$PGREPLICA_BINDIR``, else
the first of /usr/lib/postgresql/<N>/bin (newest first), else the ``pg_config --bindir`` on PATH.

Use::

    with Cluster(settings={"autovacuum_naptime": "1"}) as cluster:
        cluster.primary    # {"host", "port", "user", "dbname"}: libpq settings
        cluster.log()      # the server's log

    with ReplicaPair(standby_settings={"max_standby_streaming_delay": "500ms"}) as pair:
        pair.primary    # {"host", "port", "user"}: libpq settings (database "postgres")
        pair.replica
        pair.wait_replayed()   # until the standby has replayed all the primary has written

    python tools/pgreplica.py   # start a pair, print its settings, stop it on Ctrl-C
"""

from __future__ import annotations

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

__all__ = ["Cluster", "ReplicaPair", "ReplicaError", "Readers", "find_bindir", "cannot_run"]

SERVER_USER = "postgres"
START_TIMEOUT = 60  # seconds, for each server to accept connections
# A throwaway cluster needs no durability; the standby settings below are what the tests vary.
PRIMARY_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "wal_level": "replica",
    "max_wal_senders": "4",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "on",  # pg_basebackup needs it
    "shared_buffers": "32MB",
    "max_connections": "40",
    "autovacuum": "off",  # the measurements must not depend on when autovacuum wakes up
}
STANDBY_SETTINGS = {
    "hot_standby": "on",
    "max_standby_streaming_delay": "30s",  # PostgreSQL's default
    "hot_standby_feedback": "off",  # PostgreSQL's default
}


class ReplicaError(RuntimeError):
    """A server could not be made or started (the message carries its log)."""


def find_bindir() -> Path | None:
    env = os.environ.get("PGREPLICA_BINDIR")
    if env:
        return Path(env)
    root = Path("/usr/lib/postgresql")
    if root.is_dir():
        versions = sorted((p for p in root.iterdir() if p.name.isdigit()), key=lambda p: -int(p.name))
        for version in versions:
            if (version / "bin" / "pg_basebackup").exists():
                return version / "bin"
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        if out.returncode == 0 and (Path(out.stdout.strip()) / "initdb").exists():
            return Path(out.stdout.strip())
    return None


def cannot_run() -> str | None:
    """Why no private server can run here (a test skips with it), or None."""
    if find_bindir() is None:
        return "no PostgreSQL server binaries (initdb, pg_basebackup) on this machine"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            return "running as root without a postgres user to run the servers as"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Cluster:
    """A private primary, alone: ``settings`` are added to (and override) PRIMARY_SETTINGS."""

    def __init__(self, *, bindir: Path | None = None, settings: dict[str, str] | None = None) -> None:
        self.bindir = Path(bindir) if bindir else find_bindir()
        if self.bindir is None or not (self.bindir / "initdb").exists():
            raise ReplicaError("no PostgreSQL binaries (initdb, pg_basebackup) found; set PGREPLICA_BINDIR")
        self.primary_settings = {**PRIMARY_SETTINGS, **(settings or {})}
        self.base: Path | None = None
        self.primary: dict = {}
        self._started: list[Path] = []

    # -- running commands as the server's user ---------------------------------------------

    def _as_server_user(self, args: list[str]) -> list[str]:
        if os.geteuid() != 0:
            return args
        return ["runuser", "-u", SERVER_USER, "--", *args]

    def _run(self, args: list[str], what: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        proc = subprocess.run(
            self._as_server_user(args), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        if proc.returncode != 0:
            raise ReplicaError(f"{what} failed (exit {proc.returncode}):\n{proc.stdout}")

    def _pg_ctl_start(self, datadir: Path, name: str) -> None:
        log = self.base / f"{name}.log"
        try:
            self._run(
                [str(self.bindir / "pg_ctl"), "-D", str(datadir), "-l", str(log), "-w",
                 "-t", str(START_TIMEOUT), "start"],
                f"starting the {name}",
            )  # fmt: skip
        except ReplicaError as exc:
            text = log.read_text() if log.exists() else ""
            raise ReplicaError(f"{exc}\n{name} log:\n{text}") from None
        self._started.append(datadir)

    def _append_conf(self, datadir: Path, settings: dict[str, str]) -> None:
        with open(datadir / "postgresql.auto.conf", "a") as conf:
            for key, value in settings.items():
                conf.write(f"{key} = {value}\n")

    # -- life cycle ----------------------------------------------------------------------------

    def start(self) -> Cluster:
        self.base = Path(tempfile.mkdtemp(prefix="pgreplica-"))
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        if os.geteuid() == 0:
            entry = pwd.getpwnam(SERVER_USER)
            os.chown(self.base, entry.pw_uid, entry.pw_gid)
        primary_dir = self.base / "primary"
        primary_port = _free_port()
        self._run(
            [str(self.bindir / "initdb"), "-D", str(primary_dir), "-U", SERVER_USER, "-A", "trust",
             "--no-sync", "-E", "UTF8", "--locale=C"],
            "initdb of the primary",
        )  # fmt: skip
        with open(primary_dir / "pg_hba.conf", "a") as hba:
            hba.write(f"host replication {SERVER_USER} 127.0.0.1/32 trust\n")
        self._append_conf(
            primary_dir,
            {**self.primary_settings, "port": str(primary_port), "unix_socket_directories": f"'{self.base}'"},
        )
        self._pg_ctl_start(primary_dir, "primary")
        self.primary = {"host": "127.0.0.1", "port": primary_port, "user": SERVER_USER, "dbname": "postgres"}

    def stop(self) -> None:
        """Stop the servers (immediate shutdown) and remove the folder."""
        for datadir in reversed(self._started):
            try:
                self._run(
                    [str(self.bindir / "pg_ctl"), "-D", str(datadir), "-m", "immediate", "-w", "stop"], "stop"
                )
            except ReplicaError as exc:  # say so, and still stop the other server
                print(f"pgreplica: could not stop the server in {datadir}: {exc}", file=sys.stderr)
        self._started.clear()
        if self.base is not None:
            shutil.rmtree(self.base, ignore_errors=True)
            self.base = None

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- queries -------------------------------------------------------------------------------

    @staticmethod
    def connect(settings: dict, *, dbname: str | None = None, autocommit: bool = True):
        import psycopg

        params = {**settings}
        if dbname:
            params["dbname"] = dbname
        return psycopg.connect(**params, autocommit=autocommit, connect_timeout=5)

    def log(self, name: str = "primary") -> str:
        path = self.base / f"{name}.log" if self.base else None
        return path.read_text() if path and path.exists() else ""


class ReplicaPair(Cluster):
    """A private primary and a hot standby made from it with pg_basebackup -R."""

    def __init__(
        self,
        *,
        bindir: Path | None = None,
        primary_settings: dict[str, str] | None = None,
        standby_settings: dict[str, str] | None = None,
    ) -> None:
        super().__init__(bindir=bindir, settings=primary_settings)
        self.standby_settings = {**STANDBY_SETTINGS, **(standby_settings or {})}
        self.replica: dict = {}

    def __enter__(self) -> ReplicaPair:
        self.start()
        return self

    def _start(self) -> None:
        super()._start()
        replica_dir = self.base / "replica"
        replica_port = _free_port()
        while replica_port == self.primary["port"]:
            replica_port = _free_port()
        self._run(
            [str(self.bindir / "pg_basebackup"), "-D", str(replica_dir), "-R", "-X", "stream",
             "-h", "127.0.0.1", "-p", str(self.primary["port"]), "-U", SERVER_USER, "-c", "fast",
             "--no-sync"],
            "pg_basebackup of the standby",
        )  # fmt: skip
        self._append_conf(replica_dir, {**self.standby_settings, "port": str(replica_port)})
        self._pg_ctl_start(replica_dir, "standby")
        self.replica = {"host": "127.0.0.1", "port": replica_port, "user": SERVER_USER, "dbname": "postgres"}
        self._wait_streaming()

    def _wait_streaming(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            with self.connect(self.primary) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"
                ).fetchone()
            if row[0] >= 1:
                return
            if time.monotonic() > deadline:
                raise ReplicaError(f"the standby does not stream from the primary:\n{self.log('standby')}")
            time.sleep(0.1)

    def wait_replayed(self, timeout: float = 60) -> None:
        """Until the standby has replayed everything the primary has written so far."""
        with self.connect(self.primary) as conn:
            target = conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
        deadline = time.monotonic() + timeout
        with self.connect(self.replica) as conn:
            while True:
                done = conn.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [target]).fetchone()[0]
                if done:
                    return
                if time.monotonic() > deadline:
                    raise ReplicaError(f"the standby did not replay up to {target} in {timeout}s")
                time.sleep(0.05)


class Readers:
    """Threads that run ``query`` in a loop on ``settings`` (the standby) until stopped, and
    count what happened: reads that succeeded, reads canceled by a conflict with recovery
    (SQLSTATE 40001 or 40P01, or the connection closed for that reason), other errors, and how long
    each read took (a read that waits on a replayed lock simply takes longer)."""

    def __init__(self, settings: dict, query: str, *, threads: int = 2) -> None:
        import threading

        self.settings = settings
        self.query = query
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.ok: list[float] = []
        self.canceled: list[str] = []
        self.other: list[str] = []
        self.first_read = threading.Event()
        self.threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(threads)]

    def __enter__(self) -> Readers:
        for thread in self.threads:
            thread.start()
        if not self.first_read.wait(30):
            raise ReplicaError(f"no read succeeded on the standby: {self.other[:3]}")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(60)

    def _loop(self) -> None:
        import psycopg

        conn = None
        while not self.stopping.is_set():
            try:
                if conn is None or conn.closed:
                    conn = ReplicaPair.connect(self.settings)
                started = time.perf_counter()
                conn.execute(self.query).fetchall()
                elapsed = time.perf_counter() - started
                with self.lock:
                    self.ok.append(elapsed)
                self.first_read.set()
            except psycopg.Error as exc:
                text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                conflict = exc.sqlstate in ("40001", "40P01") or "conflict with recovery" in text
                detail = getattr(exc.diag, "message_detail", None)
                if detail:
                    text += f" ({detail})"
                with self.lock:
                    (self.canceled if conflict else self.other).append(f"{exc.sqlstate}: {text}")
        if conn is not None:
            conn.close()

    def summary(self) -> dict:
        with self.lock:
            ok = sorted(self.ok)
        return {
            "reads": len(ok),
            "canceled": len(self.canceled),
            "other_errors": len(self.other),
            "median_s": ok[len(ok) // 2] if ok else None,
            "max_s": ok[-1] if ok else None,
            "errors": sorted(set(self.canceled + self.other)),
        }


def main() -> int:
    pair = ReplicaPair().start()
    print(f"primary: host=127.0.0.1 port={pair.primary['port']} user={SERVER_USER}", flush=True)
    print(f"standby: host=127.0.0.1 port={pair.replica['port']} user={SERVER_USER}", flush=True)
    try:
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        pair.stop()
    return 0


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    sys.exit(main())
