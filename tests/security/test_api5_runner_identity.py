"""API5 (broken function-level authorization): a ``command`` operation ran as the
service itself, so whoever could submit one could read the server's environment
(the admin password) and its data directory (the JWT signing key) and make
themselves admin (issue 8, finding 1). As root, commands now run as the runner user.

Every attack here succeeded on the old code: the server was root, so was the command.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import secrets
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.helpers.batches import submit, wait_batch

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="the service drops commands to the runner user only when it runs as root"
)
RUNNER = "provisioning-runner"
# The attack, verbatim: print the parent's (the server's) environment.
ENVIRON_ATTACK = ["sh", "-c", "tr '\\0' '\\n' </proc/$PPID/environ"]


def runner_uid() -> int:
    return pwd.getpwnam(RUNNER).pw_uid


async def run_one(client: Any, run: list[str]) -> dict[str, Any]:
    body = {"name": "attack", "operations": [{"id": "x", "type": "command", "run": run}]}
    done = await wait_batch(client, (await submit(client, body))["batch_id"])
    op: dict[str, Any] = done["operations"][0]
    return op


def server_environ() -> list[str]:
    """The environment block the kernel shows for this process (the server here)."""
    raw = Path("/proc/self/environ").read_bytes().split(b"\0")
    return [e.decode(errors="replace") for e in raw if len(e) > 8]


async def test_a_command_runs_as_the_runner_uid(orch):
    op = await run_one(orch, ["id", "-u"])
    assert op["status"] == "Completed", op
    assert int(op["output"]) == runner_uid() != 0


async def test_a_command_cannot_print_the_servers_environment(orch):
    environ = server_environ()
    assert environ, "the test process has an environment to steal"
    op = await run_one(orch, ENVIRON_ATTACK)
    shown = f"{op.get('output')}\n{op.get('error')}"
    assert op["status"] == "Failed"
    assert "Permission denied" in shown
    leaked = [e for e in environ if e in shown]
    assert not leaked, f"the command printed the server's environment: {leaked[:3]}"


@pytest.fixture
def data_dir(command_work_base: Path) -> Iterator[Path]:
    """A stand-in for the data directory: root's, 0700, holding a 0600 key file, beside
    the work roots (so the runner can reach its parent: only its own mode protects it)."""
    path = command_work_base / f"data-{uuid.uuid4().hex}"
    path.mkdir(mode=0o700)
    key = path / "signing.key"
    key.write_text("-----BEGIN PRIVATE KEY----- not-for-commands\n")
    key.chmod(0o600)
    yield path


async def test_a_command_cannot_read_the_data_directory(orch, data_dir):
    op = await run_one(orch, ["sh", "-c", f"ls {data_dir}; cat {data_dir}/signing.key"])
    shown = f"{op.get('output')}\n{op.get('error')}"
    assert op["status"] == "Failed"
    assert "not-for-commands" not in shown
    assert "signing.key" not in shown.splitlines()  # not listed
    assert shown.count("Permission denied") == 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_up(session: aiohttp.ClientSession, url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    for _ in range(400):
        if proc.poll() is not None:
            raise AssertionError(f"provisioning up exited ({proc.returncode}): {log.read_text()[-3000:]}")
        try:
            async with session.get(url) as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.05)
    raise AssertionError(f"provisioning up did not start: {log.read_text()[-3000:]}")


def start_up(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "provisioning", "up"], env=env, stdout=out, stderr=subprocess.STDOUT
        )


async def test_provisioning_up_as_root_runs_commands_as_the_runner(tmp_path, command_work_base, work_root):
    """The whole product as deployed: `python3 -m provisioning up` as root with the admin
    password in its environment; a command tries the issue's attacks over real HTTP."""
    password = "e2e-secret-" + secrets.token_hex(16)
    data = command_work_base / f"data-{uuid.uuid4().hex}"
    data.mkdir(mode=0o700)
    orch_port, cc_port = free_port(), free_port()
    env = dict(os.environ)
    env.update(
        {
            "PROVISIONING_DATA_DIR": str(data),
            "PROVISIONING_COMMAND_WORK_ROOT": str(work_root),
            "PROVISIONING_ORCHESTRATOR_PORT": str(orch_port),
            "PROVISIONING_CONTROL_CENTER_PORT": str(cc_port),
            "PROVISIONING_ADMIN_PASSWORD": password,
            "PROVISIONING_AUTH_ENABLED": "false",
        }
    )
    script = (
        "exec 2>&1; echo uid=$(id -u); echo ppid=$PPID; "
        "tr '\\0' '\\n' </proc/$PPID/environ || echo environ-refused; "
        f"ls -la {data} && echo data-listed || echo data-refused; "
        f"grep -r -a -l PRIVATE {data} || echo data-unread"
    )
    body = {"name": "e2e", "operations": [{"id": "probe", "type": "command", "run": ["sh", "-c", script]}]}
    log = tmp_path / "server.log"
    base = f"http://127.0.0.1:{orch_port}"
    proc = start_up(env, log)
    try:
        async with aiohttp.ClientSession() as session:
            await wait_up(session, base + "/health", proc, log)
            async with session.post(base + "/batch/execute", json=body) as resp:
                assert resp.status == 201, await resp.text()
                batch_id = (await resp.json())["data"]["batch_id"]
            for _ in range(400):
                async with session.get(f"{base}/batch/operations/{batch_id}") as resp:
                    text = await resp.text()
                    batch = (await resp.json())["data"]
                if batch["status"] != "Running":
                    break
                await asyncio.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    op = batch["operations"][0]
    assert op["status"] == "Completed", (op, log.read_text()[-3000:])
    lines = op["output"].splitlines()
    assert f"uid={runner_uid()}" in lines
    assert f"ppid={proc.pid}" in lines  # the attack aimed at the server itself
    assert "environ-refused" in lines and "data-refused" in lines and "data-unread" in lines
    assert password not in text and password not in log.read_text()
