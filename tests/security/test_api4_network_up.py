"""API4: ``provisioning up`` itself, in a subprocess, against a slowloris on both ports.

Half-sent requests on both services are answered 408 and closed after the
header timeout, /health keeps answering on both, each /metrics shows its own
requests only, and the log stays quiet (no traceback per connection).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

HOST = "127.0.0.1"
SLOW_CONNECTIONS = 60  # per service


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@pytest.fixture
def up(tmp_path: Path) -> Iterator[tuple[int, int, Path]]:
    orch_port, cc_port = free_port(), free_port()
    env = dict(os.environ)
    env.update(
        {
            "PROVISIONING_DATA_DIR": str(tmp_path / "data"),
            "PROVISIONING_DB_URL": "mem://",
            "PROVISIONING_HOST": HOST,
            "PROVISIONING_ORCHESTRATOR_PORT": str(orch_port),
            "PROVISIONING_CONTROL_CENTER_PORT": str(cc_port),
            "PROVISIONING_ADMIN_PASSWORD": "up-test-secret-4e1b9c",
            "PROVISIONING_HTTP_HEADER_TIMEOUT_S": "0.5",
            "PROVISIONING_HTTP_MAX_CONNECTIONS_PER_IP": "500",
            "PROVISIONING_LOG_LEVEL": "WARNING",
            "PROVISIONING_ACCESS_LOG": "false",
        }
    )
    log = tmp_path / "up.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "provisioning", "up"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
        try:
            yield orch_port, cc_port, log
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


async def health(http: aiohttp.ClientSession, port: int) -> int:
    async with http.get(f"http://{HOST}:{port}/health") as resp:
        return resp.status


async def wait_up(http: aiohttp.ClientSession, *ports: int) -> None:
    for _ in range(300):
        try:
            if all([await health(http, p) == 200 for p in ports]):
                return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError("provisioning up did not start")


async def slowloris(port: int) -> list[bytes]:
    conns = [await asyncio.open_connection(HOST, port) for _ in range(SLOW_CONNECTIONS)]
    for _, writer in conns:
        writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    try:
        return await asyncio.wait_for(asyncio.gather(*(r.read() for r, _ in conns)), 20)
    finally:
        for _, writer in conns:
            writer.close()


async def service_labels(http: aiohttp.ClientSession, port: int) -> tuple[set[str], set[str]]:
    async with http.get(f"http://{HOST}:{port}/metrics") as resp:
        text = await resp.text()
    services, names = set(), set()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            names.add(s.name)
            if "service" in s.labels:
                services.add(s.labels["service"])
    return services, names


async def test_up_closes_half_sent_requests_on_both_ports_and_keeps_serving(
    up: tuple[int, int, Path],
) -> None:
    orch_port, cc_port, log = up
    async with aiohttp.ClientSession() as http:
        await wait_up(http, orch_port, cc_port)
        answers = await asyncio.gather(slowloris(orch_port), slowloris(cc_port))
        for per_port in answers:
            assert all(a.startswith(b"HTTP/1.1 408") for a in per_port), per_port[:2]
        assert await health(http, orch_port) == 200
        assert await health(http, cc_port) == 200

        orch_services, orch_names = await service_labels(http, orch_port)
        cc_services, cc_names = await service_labels(http, cc_port)
    assert orch_services == {"orchestrator"} and cc_services == {"control_center"}
    assert "process_open_fds" in orch_names and "process_open_fds" not in cc_names
    assert "Traceback" not in log.read_text(errors="replace")
