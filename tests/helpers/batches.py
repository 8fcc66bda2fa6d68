"""Helpers for tests that submit batches over HTTP and wait for them (no fixtures here)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiohttp.test_utils import TestClient

FINAL = {"Completed", "Failed", "Cancelled"}


async def wait_batch(
    client: TestClient,
    batch_id: str,
    timeout_s: float = 20.0,
    until: Callable[[dict[str, Any]], bool] | None = None,
) -> dict[str, Any]:
    """Poll ``/batch/operations/{id}`` until the batch is final (or ``until`` holds)."""
    done = until or (lambda b: b["status"] in FINAL)
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        resp = await client.get(f"/batch/operations/{batch_id}")
        assert resp.status == 200, await resp.text()
        batch: dict[str, Any] = (await resp.json())["data"]
        if done(batch):
            return batch
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"batch did not finish in {timeout_s} s: {batch}")
        await asyncio.sleep(0.02)


async def submit(client: TestClient, body: dict[str, Any]) -> dict[str, Any]:
    resp = await client.post("/batch/execute", json=body)
    doc = await resp.json()
    assert resp.status == 201, doc
    data: dict[str, Any] = doc["data"]
    return data


def op(op_id: str, deps: list[Any] | None = None, **kw: Any) -> dict[str, Any]:
    """A no-latency simulated operation for tests."""
    spec: dict[str, Any] = {
        "id": op_id,
        "type": "server_batch",
        "provider": "local",
        "dependencies": deps or [],
        "simulate": {"latency_s": 0},
    }
    sim = kw.pop("simulate", None)
    if sim:
        spec["simulate"].update(sim)
    spec.update(kw)
    return spec


def command(op_id: str, run: list[str], **kw: Any) -> dict[str, Any]:
    """A ``command`` operation tried once (pass ``retry=`` to change that)."""
    return {"id": op_id, "type": "command", "run": run, "retry": {"max_attempts": 1}, **kw}


def batch(*ops: dict[str, Any], **kw: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"name": "test", "parallel_limit": 5, "operations": list(ops)}
    body.update(kw)
    return body
