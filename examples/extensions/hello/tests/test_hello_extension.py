"""The hello extension on a real orchestrator (mem:// store, real HTTP): its route, tool,
event stream and provider, with every capability granted and with only some."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from orchestrator.app import create_app
from orchestrator.tools import TOOLS, ToolCall
from shared.errors import ValidationFailed
from shared.security.actor import Actor
from shared.security.auth import ANONYMOUS
from shared.settings import load_settings

HELLO = Path(__file__).resolve().parents[1]
GREETINGS = {"name": "greetings", "operations": [{"id": "op1", "type": "server_batch", "provider": "hello"}]}
ALL = ["ROUTES", "TOOLS", "EVENTS_PUB", "EVENTS_SUB", "PROVIDERS"]


async def client_with(aiohttp_client: Any, tmp_path: Path, grants: list[str]) -> TestClient:
    settings = load_settings(
        db_url="mem://",
        data_dir=tmp_path,
        auth_enabled=False,
        ext_paths=[str(HELLO)],
        extensions={"hello": {"grants": grants}},
        command_work_root=str(tmp_path / "work"),
    )
    client: TestClient = await aiohttp_client(create_app(settings))
    return client


async def test_route_event_stream_and_subscriber(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await client_with(aiohttp_client, tmp_path, ALL)
    resp = await client.get("/ext/hello/greet/world")
    body = await resp.json()
    assert resp.status == 200, body
    assert body["data"]["greeting"] == "Hello, world!"
    assert body["data"]["event_id"].split("-")[0].isdigit()
    for _ in range(200):  # the subscriber is called after the event is durable
        seen = (await (await client.get("/ext/hello/stats")).json())["data"]["seen"]
        if seen == 1:
            break
        await asyncio.sleep(0.01)
    assert seen == 1
    status = (await (await client.get("/ext/status")).json())["extensions"]["hello"]
    assert status["state"] == "loaded" and status["source"] == "env_dir"
    assert status["capabilities"] == sorted(ALL)
    health = await (await client.get("/ext/hello/health")).json()
    assert health["status"] == "healthy" and health["checks"] == {"greeter": "healthy"}


async def test_tool(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await client_with(aiohttp_client, tmp_path, ALL)
    await client.get("/ext/hello/health")  # the first request loads it
    tools = client.app[TOOLS]
    tool = tools.get("ext.hello.greet")
    assert tool is not None and (tool.resource, tool.action) == ("ext:hello", "invoke")
    result = await tools.call("ext.hello.greet", {"name": "Ada"}, ToolCall(Actor(ANONYMOUS)))
    assert result["greeting"] == "Hello, Ada!"
    with pytest.raises(ValidationFailed) as refused:
        await tools.call("ext.hello.greet", {"name": ""}, ToolCall(Actor(ANONYMOUS)))
    assert refused.value.details["fields"][0]["field"] == "name"


async def test_provider_runs_a_batch(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await client_with(aiohttp_client, tmp_path, ALL)
    await client.get("/ext/hello/health")
    resp = await client.post(
        "/batch/execute",
        json={
            "name": "greetings",
            "operations": [{"id": "op1", "type": "server_batch", "provider": "hello"}],
        },
    )
    doc = await resp.json()
    assert resp.status == 201, doc
    batch_id = doc["data"]["batch_id"]
    for _ in range(500):
        batch = (await (await client.get(f"/batch/operations/{batch_id}")).json())["data"]
        if batch["status"] in ("Completed", "Failed"):
            break
        await asyncio.sleep(0.02)
    assert batch["status"] == "Completed", batch
    task_id = doc["data"]["operations"][0]["task_id"]
    task = (await (await client.get(f"/tasks/{task_id}")).json())["data"]
    assert "Hello, op1!" in task["output"]


async def test_only_what_is_granted(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await client_with(aiohttp_client, tmp_path, ["ROUTES"])
    resp = await client.get("/ext/hello/greet/world")
    body = await resp.json()
    assert resp.status == 200 and body["data"] == {"greeting": "Hello, world!", "event_id": None}
    assert client.app[TOOLS].get("ext.hello.greet") is None
    status = (await (await client.get("/ext/status")).json())["extensions"]["hello"]
    assert status["capabilities"] == ["ROUTES"] and status["requested"] == sorted(ALL)
    resp = await client.post(
        "/batch/execute",
        json={
            "name": "greetings",
            "operations": [{"id": "op1", "type": "server_batch", "provider": "hello"}],
        },
    )
    assert resp.status == 422, await resp.text()
