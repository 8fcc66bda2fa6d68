"""Helpers shared by the orchestrator API tests."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tests.helpers.batches import batch, submit, wait_batch


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def expect_error(resp: Any, status: int) -> dict[str, Any]:
    doc = await resp.json()
    assert resp.status == status, doc
    assert doc["success"] is False
    assert isinstance(doc["error"], str) and doc["error"]
    assert isinstance(doc["code"], str)
    return doc


def fields_of(doc: dict[str, Any]) -> set[str]:
    return {f["field"] for f in doc.get("details", {}).get("fields", [])}


async def post_batch(client: Any, body: Any) -> Any:
    return await client.post("/batch/execute", json=body)


async def run(client: Any, *ops: dict[str, Any], **kw: Any) -> dict[str, Any]:
    data = await submit(client, batch(*ops, **kw))
    return await wait_batch(client, data["batch_id"])


def ops_by_id(b: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {o["id"]: o for o in b["operations"]}


async def tasks_by_name(client: Any, workflow_id: str) -> dict[str, dict[str, Any]]:
    resp = await client.get("/tasks", params={"workflow_id": workflow_id, "limit": "1000"})
    assert resp.status == 200
    return {t["name"]: t for t in (await resp.json())["data"]}


async def nothing_recorded(client: Any) -> None:
    for path in ("/batch/operations", "/tasks", "/rollback/checkpoints"):
        resp = await client.get(path)
        assert resp.status == 200
        assert (await resp.json())["data"] == [], path
        assert resp.headers["X-Total-Count"] == "0", path


async def data_of(client: Any, path: str, **params: Any) -> Any:
    """GET a route that must succeed; its ``data``."""
    resp = await client.get(path, params={k: str(v) for k, v in params.items()})
    doc = await resp.json()
    assert resp.status == 200, doc
    assert doc["success"] is True
    return doc["data"]


async def rollback_order(client: Any, wid: str) -> list[str]:
    """Operation names in the order they entered RollingBack, from the journal."""
    journal = await data_of(client, f"/state/workflows/{wid}/journal")
    order: list[str] = []
    for entry in journal:
        if entry["entity_kind"] == "task" and entry["to"] == "RollingBack" and entry["name"] not in order:
            order.append(entry["name"])
    return order
