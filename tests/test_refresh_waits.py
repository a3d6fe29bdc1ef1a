"""Every wait of the refresh loop is bounded and answers Ctrl-C: connecting to a server that
never answers, and cancelling through a network that has frozen."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from django.db import connection

from django_pgviews_c.refresh import connection_params
from tests import processes, psycopg_compat

ROOT = Path(__file__).resolve().parent.parent


class Silent:
    """A TCP server that accepts connections and never says a word."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self.event = threading.Condition()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.event:
                self.accepted.append(conn)
                self.event.notify_all()

    def wait_for(self, count: int, timeout: float = 20) -> None:
        with self.event:
            assert self.event.wait_for(lambda: len(self.accepted) >= count, timeout), "no connection came"

    def close(self) -> None:
        self.sock.close()
        for c in self.accepted:
            c.close()


class Proxy(Silent):
    """Forwards to the real server until frozen; then forwards nothing and answers nobody."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.frozen = threading.Event()
        super().__init__()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.event:
                self.accepted.append(conn)
                self.event.notify_all()
            if self.frozen.is_set():
                continue
            host, port = self.target
            if host.startswith("/"):  # a server on a unix socket (the embedded PostgreSQL 18)
                upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                upstream.connect(f"{host}/.s.PGSQL.{port}")
            else:
                upstream = socket.create_connection(self.target)
            self.accepted.append(upstream)
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                return
            if not data or self.frozen.is_set():
                return
            try:
                dst.sendall(data)
            except OSError:
                return


def _settings_module(tmp_path: Path, name: str, port: int, options: dict | None = None) -> str:
    (tmp_path / f"{name}.py").write_text(
        "from tests.settings import *  # noqa\n"
        f"DATABASES = {{'default': dict(DATABASES['default'], HOST='127.0.0.1', PORT='{port}', "
        f"OPTIONS={options or {}!r})}}\n"
    )
    return name


def _command(tmp_path: Path, settings: str, *args: str, command: str = "refresh_pgviews") -> subprocess.Popen:
    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = settings
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(ROOT), env.get("PYTHONPATH", "")])
    return subprocess.Popen(
        [sys.executable, "-m", "django", command, *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_ctrl_c_stops_jobs_while_connecting_to_a_server_that_never_answers(tmp_path):
    silent = Silent()
    try:
        child = _command(tmp_path, _settings_module(tmp_path, "silent_settings", silent.port), "--jobs", "2")
        # The hang guard (8 s): the connect must not be awaited.
        out, err = processes.interrupt(child, signal.SIGINT, lambda: silent.wait_for(1), timeout=8)
    finally:
        silent.close()
    assert child.returncode != 0
    assert "Traceback" not in err
    assert "interrupted" in err


@pytest.mark.parametrize(
    "command",
    [
        ("sync_pgviews",),
        ("clear_pgviews", "--no-input"),
        ("pgviews_status",),
        ("refresh_pgviews",),
        ("migrate",),
    ],
)
def test_ctrl_c_while_the_first_connect_waits_is_said_not_a_traceback(tmp_path, command):
    """Each command opens Django's connection before its work, to name a database it cannot
    reach (migrate: its system checks); Ctrl-C while that connect waits for a server that never
    answers is an interrupt like any other: exit status 130 and one line, no traceback. With
    psycopg2, whose connect signals cannot interrupt, migrate waited on (make test-psycopg2)."""
    silent = Silent()
    try:
        settings = _settings_module(tmp_path, "silent_first_settings", silent.port)
        child = _command(tmp_path, settings, *command[1:], command=command[0])
        out, err = processes.interrupt(child, signal.SIGINT, lambda: silent.wait_for(1), timeout=8)
    finally:
        silent.close()
    assert "Traceback" not in err, err
    assert child.returncode == 130, err
    assert "interrupted by SIGINT" in err


def test_a_connect_that_gets_no_answer_times_out_naming_it(tmp_path):
    silent = Silent()
    try:
        settings = _settings_module(tmp_path, "silent_timeout_settings", silent.port, {"connect_timeout": 2})
        child = _command(tmp_path, settings, "--jobs", "2")
        try:
            out, err = child.communicate(timeout=30)
        finally:
            if child.poll() is None:
                child.kill()
                child.communicate()
    finally:
        silent.close()
    assert child.returncode == 1
    # The command connects first (Django's connection, with the same connect_timeout), so it is
    # that connect which gives up, naming the database; the loop's own connects say it in their
    # words (tests/test_stale_cost.py).
    assert "cannot connect to database 'default'" in err and "timeout expired" in err, err
    assert "Traceback" not in err


_CHILD = textwrap.dedent(
    """
    import json, sys
    from django_pgviews_c import _core
    def on_event(k, state, seconds, error):
        print(k, state, flush=True)
    _core.run_parallel(json.loads(sys.argv[1]), ["SELECT pg_sleep(60)"] * 2, [[], []], None, 2,
                       on_event=on_event)
    print("finished", flush=True)
    """
)


def test_ctrl_c_through_a_frozen_network_gives_up_on_the_cancel(transactional_db):
    real = connection_params(connection)
    proxy = Proxy(real.get("host", "127.0.0.1"), int(real.get("port", 5432)))
    app = f"pgvc-frozen-{os.getpid()}"
    conninfo = dict(real, host="127.0.0.1", port=str(proxy.port), application_name=app)
    dbname = real["dbname"]
    sleeping = (
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
        "AND state = 'active' AND query LIKE '%%pg_sleep%%'"
    )
    child = subprocess.Popen(
        [sys.executable, "-W", "always", "-c", _CHILD, json.dumps(conninfo)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while psycopg_compat.query(dbname, sleeping, [app]) != [(2,)]:
            assert time.monotonic() < deadline and child.poll() is None, "the statements never started"
            time.sleep(0.05)
        proxy.frozen.set()
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=30)  # hang guard: the cancel must be bounded
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
        psycopg_compat.query(
            dbname, "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = %s", [app]
        )
        proxy.close()
    assert child.returncode != 0
    assert "KeyboardInterrupt" in err
    assert "could not cancel statement" in err
    assert "finished" not in out


@pytest.mark.django_db(transaction=True)
def test_the_gil_is_free_while_the_loop_waits():
    from django_pgviews_c import _core

    ticks = [0]
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            ticks[0] += 1
            time.sleep(0.001)

    seen = {}

    def on_event(k, state, seconds, error):
        seen[state] = ticks[0]

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    try:
        # The statement ends only once the other thread has run: it waits for an advisory lock
        # that this thread's other session releases after seeing ticks.
        holder = psycopg_compat._connect(connection.settings_dict["NAME"])
        holder.cursor().execute("SELECT pg_advisory_lock(7717)")
        released = threading.Event()

        def release() -> None:
            start = ticks[0]
            while ticks[0] < start + 20:
                time.sleep(0.01)
            holder.cursor().execute("SELECT pg_advisory_unlock(7717)")
            released.set()

        threading.Thread(target=release, daemon=True).start()
        out = _core.run_parallel(
            connection_params(connection),
            ["SELECT pg_advisory_lock(7717)"],
            [[]],
            None,
            1,
            on_event=on_event,
        )
        # The server may answer the loop before the unlocking thread hears back from its own
        # session: wait for that thread (an event), then close the session it uses.
        assert released.wait(timeout=60)
        holder.close()
    finally:
        stop.set()
    assert out[0][0] == "ok"
    assert seen["ok"] > seen["running"]


def test_pgconnect_timeout_in_the_environment_is_the_users_too(tmp_path):
    silent = Silent()
    try:
        settings = _settings_module(tmp_path, "silent_env_settings", silent.port)
        os.environ["PGCONNECT_TIMEOUT"] = "3"
        try:
            child = _command(tmp_path, settings, "--jobs", "2")
        finally:
            del os.environ["PGCONNECT_TIMEOUT"]
        try:
            out, err = child.communicate(timeout=30)
        finally:
            if child.poll() is None:
                child.kill()
                child.communicate()
    finally:
        silent.close()
    assert child.returncode == 1
    assert "cannot connect to database 'default'" in err and "timeout expired" in err, err
