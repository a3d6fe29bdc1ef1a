"""A private PostgreSQL cluster of the same major version as the main server, started with
max_locks_per_transaction raised, for the 10,000-view cold sync (one transaction creating
10,000 views needs more lock slots than the default 64 x max_connections give).

It lives in a temp directory, listens on 127.0.0.1:PORT and is stopped and removed by stop().
Other settings are initdb's defaults, like the main Debian cluster (fsync on)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path


def _bindir(major: str) -> Path:
    for candidate in (Path(f"/usr/lib/postgresql/{major}/bin"),):
        if (candidate / "initdb").exists():
            return candidate
    out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def _as_postgres(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:  # initdb refuses to run as root
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


class AuxServer:
    def __init__(self, major: str, port: int = 55439, settings: dict[str, str] | None = None) -> None:
        self.bindir = _bindir(major)
        self.port = port
        self.settings = settings or {}
        self.dir = Path(tempfile.mkdtemp(prefix="bench_pg_"))
        self.data = self.dir / "data"

    def start(self) -> None:
        """A new cluster in the temp directory (initdb), then the server started on it."""
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        subprocess.run(
            _as_postgres(
                [
                    str(self.bindir / "initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--no-sync",
                ]
            ),
            check=True,
            stdout=subprocess.DEVNULL,
        )
        self.resume()

    def resume(self) -> None:
        """Start the server on the cluster start() made (again after pause())."""
        opts = f"-c port={self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.dir}"
        for k, v in self.settings.items():
            opts += f" -c {k}={v}"
        subprocess.run(
            _as_postgres(
                [
                    str(self.bindir / "pg_ctl"),
                    "-D",
                    str(self.data),
                    "-w",
                    "-l",
                    str(self.dir / "log"),
                    "-o",
                    opts,
                    "start",
                ]
            ),
            check=True,
            stdout=subprocess.DEVNULL,
        )

    def pause(self) -> None:
        """Stop the server, keeping its data directory (for single-user runs, or resume())."""
        subprocess.run(
            _as_postgres([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"]),
            check=True,
            stdout=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        subprocess.run(
            _as_postgres([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "stop"]),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        shutil.rmtree(self.dir, ignore_errors=True)
