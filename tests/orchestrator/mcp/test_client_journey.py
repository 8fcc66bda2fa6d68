"""The official MCP client (the ``mcp`` SDK) against a live orchestrator, in both protocol
modes: listing and calling tools, refusals by policy as tool errors, and an assistant's
whole journey (validate, submit, watch progress, read a failure, cancel, checkpoint,
roll back) with an API token."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from shared.security.audit import AUDIT
from tests.helpers.api_tokens import create_token
from tests.helpers.batches import batch, op
from tests.helpers.mcp import mcp_client, result_of
from tests.helpers.services import Services

MODES = ("legacy", "auto")


@pytest.mark.parametrize("mode", MODES)
async def test_sdk_lists_and_calls_tools(services: Services, mode: str) -> None:
    token, _ = await create_token(services, await services.admin())
    async with mcp_client(services.orch, token, mode) as client:
        expected = "2025-11-25" if mode == "legacy" else "2026-07-28"
        assert client.session.protocol_version == expected
        listed = {t.name: t for t in (await client.list_tools()).tools}
        for name in (
            "provisioning.batch.validate",
            "provisioning.batch.submit",
            "provisioning.batch.get",
            "provisioning.batch.list",
            "provisioning.batch.cancel",
            "provisioning.tasks.list",
            "provisioning.tasks.get",
            "provisioning.checkpoints.list",
            "provisioning.checkpoints.create",
            "provisioning.rollback.execute",
            "provisioning.rollback.restore",
            "provisioning.audit.search",
            "provisioning.statistics.state",
        ):
            assert name in listed, name
        schema = listed["provisioning.batch.submit"].input_schema
        assert "operations" in schema["properties"] and "operations" in schema["required"]
        called = await client.call_tool("provisioning.batch.list", {"limit": 5})
        assert called.is_error is False
        assert result_of(called) == {"items": [], "total": 0, "limit": 5, "offset": 0, "next_cursor": None}
        bad = await client.call_tool("provisioning.batch.list", {"limit": 0})
        assert bad.is_error is True and "limit" in bad.content[0].text


@pytest.mark.parametrize("mode", MODES)
async def test_a_viewers_token_cannot_submit(services: Services, mode: str) -> None:
    _, viewer = await services.user("vera", "viewer")
    token, _ = await create_token(services, viewer)
    async with mcp_client(services.orch, token, mode) as client:
        refused = await client.call_tool("provisioning.batch.submit", batch(op("a")))
        assert refused.is_error is True
        doc = result_of(refused)
        assert doc["code"] == "forbidden" and "batch:execute" in doc["error"]
        # reading is allowed to a viewer, and the refusal did not break the connection
        assert (await client.call_tool("provisioning.batch.list", {})).is_error is False
    rows = (await services.orch.app[AUDIT].search({"action": "tool.provisioning.batch.submit"}, 10, 0)).items
    assert [(r["username"], r["result"]) for r in rows] == [("vera", "denied")]


async def test_operation_conditions_apply_to_tool_calls(services: Services) -> None:
    """An operator may submit, but not an operation that runs a program outside the allowlist;
    a developer may only validate (check mode)."""
    _, operator = await services.user("olga", "operator")
    _, developer = await services.user("dev", "developer")
    command = op("cmd", type="command", provider="command", run=["rm", "-rf", "/tmp/x"])
    async with mcp_client(services.orch, operator) as client:
        refused = await client.call_tool("provisioning.batch.submit", batch(command))
        assert refused.is_error is True and "program" in result_of(refused)["error"]
    async with mcp_client(services.orch, developer) as client:
        planned = await client.call_tool("provisioning.batch.validate", batch(op("a")))
        assert planned.is_error is False and result_of(planned)["check_mode"] is True
        refused = await client.call_tool("provisioning.batch.submit", batch(op("a")))
        assert refused.is_error is True


async def _until(client: Any, batch_id: str, done: Any, timeout_s: float = 20.0) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        view = result_of(await client.call_tool("provisioning.batch.get", {"id": batch_id}))
        if done(view):
            return view
        assert asyncio.get_running_loop().time() < deadline, view
        await asyncio.sleep(0.05)


async def test_the_assistant_journey(services: Services) -> None:
    _, operator = await services.user("olga", "operator")
    token, _ = await create_token(services, operator, name="assistant")
    good = batch(op("net"), op("vm", ["net"]), name="journey")
    failing = batch(op("broken", simulate={"fail_always": True}), name="failing")
    slow = batch(op("long", simulate={"latency_s": 30}), name="slow")
    reports: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        reports.append((progress, total, message))

    async with mcp_client(services.orch, token) as client:
        # 1. validate (check mode): a plan, nothing runs
        plan = result_of(await client.call_tool("provisioning.batch.validate", good))
        assert plan["check_mode"] is True and plan["plan"]
        assert result_of(await client.call_tool("provisioning.batch.list", {}))["total"] == 0
        # 2. a checkpoint before anything runs
        checkpoint = result_of(
            await client.call_tool("provisioning.checkpoints.create", {"name": "before the journey"})
        )["checkpoint_id"]
        # 3. submit and watch its progress (streamed as notifications/progress)
        done = await client.call_tool(
            "provisioning.batch.submit", {**good, "wait_s": 20}, progress_callback=on_progress
        )
        view = result_of(done)
        assert view["status"] == "Completed", view
        assert reports and reports[-1][0] == 100.0 and reports[-1][1] == 100.0
        assert [p for p, _, _ in reports] == sorted({p for p, _, _ in reports})
        # 4. a failing batch: read its operation's error
        submitted = result_of(await client.call_tool("provisioning.batch.submit", failing))
        failed = await _until(client, submitted["batch_id"], lambda b: b["status"] == "Failed")
        [operation] = failed["operations"]
        assert operation["status"] == "Failed" and operation["error"]
        task = result_of(await client.call_tool("provisioning.tasks.get", {"id": operation["task_id"]}))
        assert task["error"] == operation["error"]
        # 5. cancel a long one
        running = result_of(await client.call_tool("provisioning.batch.submit", slow))
        cancelled = await client.call_tool("provisioning.batch.cancel", {"id": running["batch_id"]})
        assert cancelled.is_error is False
        await _until(client, running["batch_id"], lambda b: b["status"] == "Cancelled")
        again = await client.call_tool("provisioning.batch.cancel", {"id": running["batch_id"]})
        assert again.is_error is True and result_of(again)["code"] == "conflict"
        # 6. roll back to the checkpoint: the completed operations are undone
        rolled = await client.call_tool("provisioning.rollback.execute", {"checkpoint_id": checkpoint})
        assert rolled.is_error is False, rolled.content[0].text
        listed = result_of(await client.call_tool("provisioning.checkpoints.list", {}))
        assert checkpoint in [c["id"] for c in listed["items"]]
        after = result_of(await client.call_tool("provisioning.batch.get", {"id": view["batch_id"]}))
        assert {o["status"] for o in after["operations"]} == {"RolledBack"}, after
        # the audit log, read as a tool, names the token's user for every call
        audit = result_of(
            await client.call_tool("provisioning.audit.search", {"action": "tool.provisioning.batch.submit"})
        )
        # (a filtered audit search keeps no counter: no total, every record listed)
        assert [r["username"] for r in audit["items"]] == ["olga"] * 3 and audit["total"] is None
