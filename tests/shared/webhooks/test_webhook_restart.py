"""Nothing is lost across a crash: the consumer is down while the orchestrator is killed
mid-batch and restarted; once the consumer is up it receives every event, in order."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from shared.webhooks import new_secret, verify_webhook
from tests.helpers.events import Consumer, ops

RETRY_EVERY_S = 0.2
RETRIES = 100  # ~20 s of a consumer that is down before a delivery would fail


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(tmp_path: Path, port: int, config: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update(
        {
            "PROVISIONING_CONFIG": str(config),
            "PROVISIONING_DATA_DIR": str(tmp_path / "data"),
            "PROVISIONING_ORCHESTRATOR_PORT": str(port),
            "PROVISIONING_AUTH_ENABLED": "false",
            "PROVISIONING_WEBHOOKS_ALLOW_PRIVATE": "true",
            "PROVISIONING_WEBHOOK_RETRY_SCHEDULE_S": ",".join(["0"] + [str(RETRY_EVERY_S)] * RETRIES),
            "PROVISIONING_WEBHOOK_JITTER": "0",
            "PROVISIONING_WEBHOOK_POLL_S": "0.1",
            "PROVISIONING_LOG_LEVEL": "WARNING",
        }
    )
    with (tmp_path / "server.log").open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "provisioning", "orchestrator"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def _json(session: aiohttp.ClientSession, method: str, url: str, **kw: Any) -> Any:
    async with session.request(method, url, **kw) as resp:
        assert resp.status < 300, await resp.text()
        return (await resp.json())["data"]


async def _wait_up(session: aiohttp.ClientSession, base: str) -> None:
    async with asyncio.timeout(30):
        while True:
            try:
                await _json(session, "GET", base + "/health")
                return
            except aiohttp.ClientError:
                await asyncio.sleep(0.05)


async def test_deliveries_survive_a_kill_and_restart_none_missing_none_out_of_order(
    tmp_path: Path,
) -> None:
    hook_port, port = _free_port(), _free_port()
    secret = new_secret()
    config = tmp_path / "provisioning.toml"
    config.write_text(
        "[webhooks]\nenabled = true\nendpoints = [\n"
        f'  {{ url = "http://127.0.0.1:{hook_port}/hook", events = ["task.*", "batch.*"], '
        f'secret = "{secret}" }},\n]\n'
    )
    base = f"http://127.0.0.1:{port}"
    body = {"name": "crash", "parallel_limit": 3, "operations": ops(12, latency_s=0.25, progress_steps=1)}
    consumer = Consumer()
    proc = _start(tmp_path, port, config)
    runner: web.AppRunner | None = None
    try:
        async with aiohttp.ClientSession() as session:
            await _wait_up(session, base)
            batch_id = (await _json(session, "POST", base + "/batch/execute", json=body))["batch_id"]
            async with asyncio.timeout(30):  # kill with some done and some running
                while True:
                    batch = await _json(session, "GET", f"{base}/batch/operations/{batch_id}")
                    statuses = [o["status"] for o in batch["operations"]]
                    if statuses.count("Completed") >= 3 and "Running" in statuses:
                        break
                    await asyncio.sleep(0.02)
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)

            proc = _start(tmp_path, port, config)
            await _wait_up(session, base)
            # Only now does the consumer come up.
            app = web.Application()
            app.router.add_post("/hook", consumer.handle)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", hook_port).start()
            got = await consumer.wait_for(
                lambda r: any(json.loads(x.body)["event"] == "batch.completed" for x in r), timeout_s=45
            )
            journal = await _json(session, "GET", f"{base}/state/workflows/{batch_id}/journal")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
        if runner is not None:
            await runner.cleanup()

    log = (tmp_path / "server.log").read_text()[-3000:]
    first_seen: dict[str, dict[str, Any]] = {}
    for request in got:  # at least once: a redelivery keeps its webhook-id
        doc = verify_webhook(secret, request.headers, request.body)
        first_seen.setdefault(request.headers["webhook-id"], doc)
    docs = list(first_seen.values())
    seqs = [d["data"]["seq"] for d in docs if "seq" in d["data"]]
    assert seqs == sorted(seqs), ("out of order", seqs, log)
    expected = sorted(e["seq"] for e in journal)
    assert seqs == expected, ("missing or extra", set(expected) ^ set(seqs), log)
    assert docs[0]["event"] == "batch.running"  # the submission itself, before the crash
    assert docs[-1]["event"] == "batch.completed"
    completed = [d["data"]["operation_id"] for d in docs if d["event"] == "task.completed"]
    assert sorted(completed) == sorted(f"op{i}" for i in range(12))
    assert any(e["note"] == "resumed" for e in journal), "the kill interrupted nothing"
