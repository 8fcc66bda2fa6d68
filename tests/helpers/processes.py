"""A real orchestrator process on a data directory, for kill-and-restart tests (no fixtures)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_orchestrator(
    data_dir: Path, work_root: Path, port: int, log: Path, **env: str
) -> subprocess.Popen[bytes]:
    """``python -m provisioning orchestrator`` on ``data_dir``, auth off, output to ``log``."""
    environ = dict(os.environ)
    environ.update(
        {
            "PROVISIONING_DATA_DIR": str(data_dir),
            "PROVISIONING_COMMAND_WORK_ROOT": str(work_root),
            "PROVISIONING_ORCHESTRATOR_PORT": str(port),
            "PROVISIONING_AUTH_ENABLED": "false",
            "PROVISIONING_DEFAULT_INITIAL_DELAY_S": "0.05",
            **env,
        }
    )
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "provisioning", "orchestrator"],
            env=environ,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def get_data(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url) as resp:
        return (await resp.json())["data"]


async def wait_up(session: aiohttp.ClientSession, base: str, timeout_s: float = 60.0) -> None:
    """Until ``base`` answers ``/health``. The bound is generous: a start takes about a
    second, but more than ten on a machine whose two cores are shared by other work."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        try:
            await get_data(session, base + "/health")
            return
        except aiohttp.ClientError:
            await asyncio.sleep(0.05)
    raise AssertionError(f"orchestrator did not start within {timeout_s:.0f} s")


async def poll_until(
    session: aiohttp.ClientSession,
    url: str,
    done: Callable[[Any], bool],
    *,
    attempts: int = 600,
    delay_s: float = 0.05,
) -> Any:
    """GET ``url`` until ``done(data)`` holds (or attempts run out); the last data."""
    data = None
    for _ in range(attempts):
        data = await get_data(session, url)
        if done(data):
            break
        await asyncio.sleep(delay_s)
    return data
