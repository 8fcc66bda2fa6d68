"""A real ``provisioning up`` subprocess on the embedded store (``mem://``), for the CLI's
suites: both services on free ports with authentication on, and the login journey
(MFA enrolment with codes from pyotp, on the real clock) done over plain HTTP.

One server per test module keeps the suites quick: start it from a module-scoped
fixture with :func:`live_server`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import select
import signal
import socket
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

import pyotp
import pytest

from tests.helpers.services import ADMIN_PASSWORD, FAST_ARGON2, USER_PASSWORD

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def http(method: str, url: str, body: Any = None, token: str | None = None) -> tuple[int, dict[str, Any]]:
    """One plain HTTP call: (status, the JSON answer)."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    try:
        with urlopen(Request(url, data=data, method=method, headers=headers), timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


@dataclass
class LiveServer:
    cc_url: str
    orch_url: str
    tmp: Path
    totp: dict[str, pyotp.TOTP] = field(default_factory=dict)
    last_step: dict[str, int] = field(default_factory=dict)

    def code(self, username: str) -> str:
        """A TOTP code of a time step later than the last one this user spent (inside the
        server's window of one step either side)."""
        now_step = int(time.time()) // 30
        step = max(now_step - 1, self.last_step.get(username, now_step - 2) + 1)
        if step > now_step + 1:
            time.sleep(30 - time.time() % 30 + 0.1)  # the window is used up: wait for the next
            return self.code(username)
        self.last_step[username] = step
        return str(self.totp[username].at(step * 30))

    def login(self, username: str, password: str) -> dict[str, Any]:
        """A full login over HTTP (enrolling MFA first where the account must): the login data."""
        url = self.cc_url
        status, doc = http("POST", f"{url}/auth/login", {"username": username, "password": password})
        if status == 401 and doc.get("code") == "mfa_required":
            body = {"username": username, "password": password, "mfa_code": self.code(username)}
            status, doc = http("POST", f"{url}/auth/login", body)
        elif status == 200 and doc["data"].get("mfa_setup_required"):
            setup = doc["data"]["setup_token"]
            status, doc = http("POST", f"{url}/auth/mfa/setup", {"password": password}, setup)
            assert status == 200, doc
            self.totp[username] = pyotp.TOTP(doc["data"]["secret"])
            body = {"password": password, "code": self.code(username)}
            status, doc = http("POST", f"{url}/auth/mfa/enable", body, setup)
            assert status == 200, doc
            body = {"username": username, "password": password, "mfa_code": self.code(username)}
            status, doc = http("POST", f"{url}/auth/login", body)
        assert status == 200, doc
        data: dict[str, Any] = doc["data"]
        return data

    def admin(self) -> dict[str, Any]:
        return self.login("admin", ADMIN_PASSWORD)

    def create_user(self, username: str, *roles: str, token: str) -> str:
        body = {
            "username": username,
            "email": f"{username}@example.com",
            "password": USER_PASSWORD,
            "roles": list(roles),
        }
        status, doc = http("POST", f"{self.cc_url}/users", body, token)
        assert status == 201, doc
        return str(doc["data"]["id"])

    def env(self, config_home: Path, **extra: str) -> dict[str, str]:
        """The environment of a CLI subprocess: this tree first, its own config directory."""
        environ = {k: v for k, v in os.environ.items() if not k.startswith("PROVISIONING_")}
        environ.update(
            PYTHONPATH=str(ROOT),
            XDG_CONFIG_HOME=str(config_home),
            PROVISIONING_URL=self.cc_url,
            PROVISIONING_ORCHESTRATOR_URL=self.orch_url,
            **extra,
        )
        return environ


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    for _ in range(600):
        if proc.poll() is not None:
            raise AssertionError(f"provisioning up exited {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with urlopen(f"{url}/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (URLError, OSError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} did not start: {log.read_text()[-2000:]}")


# What every live server of the CLI's suites runs with (authentication on, quick hashing,
# no rate limit in the way, quick retries, quiet logs).
SERVER_SETTINGS = {
    "PROVISIONING_HOST": HOST,
    "PROVISIONING_AUTH_ENABLED": "true",
    "PROVISIONING_ADMIN_PASSWORD": ADMIN_PASSWORD,
    "PROVISIONING_RATE_LIMIT_AUTH": "1000/minute",
    "PROVISIONING_RATE_LIMIT_DEFAULT": "10000/minute",
    "PROVISIONING_RATE_LIMIT_BATCH": "1000/minute",
    "PROVISIONING_DEFAULT_INITIAL_DELAY_S": "0.01",
    "PROVISIONING_DEFAULT_MAX_DELAY_S": "0.05",
    "PROVISIONING_LOG_LEVEL": "WARNING",
    "PROVISIONING_ACCESS_LOG": "false",
    **{f"PROVISIONING_{k.upper()}": str(v) for k, v in FAST_ARGON2.items()},
}


@contextmanager
def live_server(
    tmp: Path, *, db_url: str = "mem://", ports: tuple[int, int] | None = None
) -> Iterator[LiveServer]:
    """``provisioning up`` with authentication on, until the block ends: on ``mem://``, or
    (``db_url=""``) on a data directory under ``tmp`` that a second start finds again."""
    cc_port, orch_port = ports or (free_port(), free_port())
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVISIONING_")}
    env.update(SERVER_SETTINGS, PYTHONPATH=str(ROOT), PROVISIONING_DATA_DIR=str(tmp / "data"))
    env.update(PROVISIONING_DB_URL=db_url, PROVISIONING_CONTROL_CENTER_PORT=str(cc_port))
    env["PROVISIONING_ORCHESTRATOR_PORT"] = str(orch_port)
    log = tmp / "server.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "provisioning", "up"], env=env, stdout=out, stderr=out, cwd=tmp
        )
        server = LiveServer(f"http://{HOST}:{cc_port}", f"http://{HOST}:{orch_port}", tmp)
        try:
            _wait_healthy(server.cc_url, proc, log)
            _wait_healthy(server.orch_url, proc, log)
            yield server
        finally:
            proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=20)
            proc.kill()  # nothing left to kill once it has stopped on its own
            proc.wait()


# -- fixtures: one server per test module, a logged-in context per test ---------------------------

CLIENT_VARIABLES = (
    "PROVISIONING_URL",
    "PROVISIONING_ORCHESTRATOR_URL",
    "PROVISIONING_TOKEN",
    "PROVISIONING_CONTEXT",
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server(tmp_path_factory.mktemp("live")) as srv:
        yield srv


@pytest.fixture(scope="module")
def admin(server: LiveServer) -> dict[str, Any]:
    """The admin's session (MFA enrolled on the way), shared by the module's tests."""
    return server.admin()


def client_environment(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    """The in-process CLI's environment: its own config directory, no client variables."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    for name in CLIENT_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def logged_in(
    server: LiveServer, admin: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """The admin's session saved as the current context; returns the environment of a CLI
    subprocess that finds it (and no client variables)."""
    from provisioning.cli.config import Credentials

    home = tmp_path / "config"
    client_environment(monkeypatch, home)
    Credentials().put("default", {"server": server.cc_url, "orchestrator": server.orch_url, **admin})
    environ = server.env(home)
    for name in CLIENT_VARIABLES:
        environ.pop(name, None)
    return environ


def start_watch(env: dict[str, str], batch: Path) -> tuple[subprocess.Popen[str], str]:
    """``batch submit FILE --watch`` as a background subprocess (line mode), read up to the
    line that says it was submitted: (the process, what it printed so far)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "provisioning", "batch", "submit", str(batch), "--watch"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline()


# -- running the CLI --------------------------------------------------------------------------


def invoke(*args: str, input: str | None = None) -> Any:
    """The CLI in-process (Typer's runner): a ``click.testing.Result``."""
    from typer.testing import CliRunner

    from provisioning.cli import app

    return CliRunner().invoke(app, list(args), input=input, catch_exceptions=False)


def run_cli(env: dict[str, str], *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI as a subprocess (``python -m provisioning``), stdout and stderr apart."""
    return subprocess.run(
        [sys.executable, "-m", "provisioning", *args],
        env=env,
        input=input,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


class Terminal:
    """The CLI as a subprocess on a pseudo-terminal (stdin, stdout and stderr), the way a
    user's shell runs it: read what it draws, answer its prompts, send it signals."""

    def __init__(self, env: dict[str, str], *args: str, columns: int = 120) -> None:
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
        env = {**env, "TERM": "xterm-256color", "COLUMNS": str(columns), "LINES": "40"}
        env.pop("NO_COLOR", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "provisioning", *args],
            env=env,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=ROOT,
            close_fds=True,
        )
        os.close(slave)
        self.raw = b""

    @property
    def text(self) -> str:
        return self.raw.decode(errors="replace")

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return True
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # EIO: the child closed the terminal
            return False
        if not chunk:
            return False
        self.raw += chunk
        return True

    def expect(self, needle: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.text:
            if time.monotonic() > deadline or (not self._read(0.2) and self.proc.poll() is not None):
                raise AssertionError(f"{needle!r} never shown; the terminal shows:\n{self.text[-3000:]}")

    def send(self, text: str) -> None:
        os.write(self.master, text.encode())

    def wait(self, timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        while self._read(0.1):
            if time.monotonic() > deadline:
                self.proc.kill()
                raise AssertionError(f"still running; the terminal shows:\n{self.text[-3000:]}")
            if self.proc.poll() is not None and not self._drain():
                break
        rc = self.proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        os.close(self.master)
        return rc

    def _drain(self) -> bool:
        """Read what is left once the child has exited; False when nothing is."""
        before = len(self.raw)
        self._read(0.05)
        return len(self.raw) > before


class CuttableProxy:
    """A TCP proxy in front of a service, in a thread of its own: the network between the
    CLI and the server, whose connections a test can cut at any moment."""

    def __init__(self, target: str) -> None:
        import asyncio
        import threading
        from urllib.parse import urlsplit

        parts = urlsplit(target)
        self.target = (parts.hostname or HOST, parts.port or 80)
        self.loop = asyncio.new_event_loop()
        self.writers: set[asyncio.StreamWriter] = set()
        self.cuts = 0
        started = threading.Event()

        async def serve() -> None:
            self.server = await asyncio.start_server(self._pipe, HOST, 0)
            self.port = self.server.sockets[0].getsockname()[1]
            started.set()

        self.thread = threading.Thread(target=self._run, args=(serve,), daemon=True)
        self.thread.start()
        started.wait(10)
        self.url = f"http://{HOST}:{self.port}"

    def _run(self, serve: Any) -> None:
        self.loop.run_until_complete(serve())
        try:
            self.loop.run_forever()
        finally:
            self.loop.run_until_complete(self.server.wait_closed())
            self.loop.close()  # its self-pipe sockets too

    async def _pipe(self, reader: Any, writer: Any) -> None:
        import asyncio

        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self.writers.update((writer, up_writer))

        async def copy(src: Any, dst: Any) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, RuntimeError):
                pass
            finally:
                dst.close()

        await asyncio.gather(copy(reader, up_writer), copy(up_reader, writer))
        self.writers.difference_update((writer, up_writer))

    def cut(self) -> None:
        """Drop every open connection (new ones are still let through)."""

        def drop() -> None:
            self.cuts += 1
            for w in list(self.writers):
                w.transport.abort()

        self.loop.call_soon_threadsafe(drop)

    def close(self) -> None:
        def stop() -> None:
            self.server.close()
            for w in list(self.writers):
                w.transport.abort()
            self.loop.stop()

        self.loop.call_soon_threadsafe(stop)
        self.thread.join(10)
