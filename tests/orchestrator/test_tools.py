"""The tool registry: registration, validation naming the field, authorization by the
mirrored route's policy, and the audit record of every call."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pydantic import BaseModel

from orchestrator.tools import TOOLS, Tool, ToolCall, ToolRegistry
from shared.errors import NotFound, ValidationFailed
from shared.security.actor import Actor
from shared.security.audit import AUDIT
from shared.security.auth import ANONYMOUS
from tests.helpers.batches import batch, op


class Echo(BaseModel):
    text: str


async def echo(call: ToolCall, args: Echo) -> dict[str, Any]:
    return {"echo": args.text}


def echo_tool(name: str = "ext.hello.echo") -> Tool:
    return Tool(name, "Say it back.", Echo, echo, "ext:hello", "invoke")


def test_registration() -> None:
    registry = ToolRegistry()
    registry.register(echo_tool())
    with pytest.raises(ValueError, match="already registered"):
        registry.register(echo_tool())
    with pytest.raises(ValueError, match="must match"):
        registry.register(echo_tool("no spaces allowed"))
    assert registry.get("ext.hello.echo") is not None
    assert [t.name for t in registry.list()] == ["ext.hello.echo"]
    registry.unregister("ext.hello.echo")
    assert registry.get("ext.hello.echo") is None and registry.list() == []
    assert echo_tool().input_schema()["required"] == ["text"]


async def test_calls_are_validated_run_and_audited(orch: TestClient) -> None:
    registry = orch.app[TOOLS]
    registry.register(echo_tool())
    call = ToolCall(Actor(ANONYMOUS))
    assert await registry.call("ext.hello.echo", {"text": "hi"}, call) == {"echo": "hi"}
    with pytest.raises(ValidationFailed) as bad:
        await registry.call("ext.hello.echo", {"text": 3}, call)
    assert [f["field"] for f in bad.value.details["fields"]] == ["text"]
    with pytest.raises(NotFound):
        await registry.call("ext.hello.nothing", {}, call)
    rows = (await orch.app[AUDIT].search({"action": "tool.ext.hello.echo"}, 10, 0)).items
    assert sorted(r["result"] for r in rows) == ["failure", "success"]
    assert {r["resource"] for r in rows} == {"ext:hello:invoke"}


async def test_product_tools_call_the_services(orch: TestClient) -> None:
    registry = orch.app[TOOLS]
    call = ToolCall(Actor(ANONYMOUS))
    plan = await registry.call("provisioning.batch.validate", batch(op("a"), op("b", ["a"])), call)
    assert plan["check_mode"] is True
    done = await registry.call("provisioning.batch.submit", {**batch(op("a")), "wait_s": 20}, call)
    assert done["status"] == "Completed"
    listed = await registry.call("provisioning.tasks.list", {"workflow_id": done["batch_id"]}, call)
    assert listed["total"] == 1
    stats = await registry.call("provisioning.statistics.state", {}, call)
    assert stats["total_workflows"] == 1
    with pytest.raises(ValidationFailed) as bad:
        await registry.call("provisioning.batch.submit", {"name": "x", "operations": []}, call)
    assert "operations" in bad.value.message


async def test_an_unbound_registry_refuses_to_call() -> None:
    registry = ToolRegistry()
    registry.register(echo_tool())
    with pytest.raises(RuntimeError, match="not bound"):
        await registry.call("ext.hello.echo", {"text": "x"}, ToolCall(Actor(ANONYMOUS)))
