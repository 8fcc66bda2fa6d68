"""The single-purpose ``/workflows/*`` submissions (servers, taskserv, cluster) through real HTTP."""

from __future__ import annotations

import uuid

import pytest

from tests.helpers.batches import wait_batch
from tests.helpers.orchestrator_api import (
    expect_error,
    fields_of,
    nothing_recorded,
)

# -- single-purpose workflows -------------------------------------------------------------


SEED_SERVERS = {"infra": "production", "settings": "config.ncl", "check_mode": False, "wait": True}
SEED_TASKSERV = {
    "operation": "create",
    "taskserv": "kubernetes",
    "infra": "production",
    "settings": "config.ncl",
    "check_mode": False,
    "wait": True,
}
SEED_CLUSTER = {
    "operation": "create",
    "cluster_type": "buildkit",
    "infra": "production",
    "settings": "config.ncl",
    "check_mode": False,
    "wait": True,
}


@pytest.mark.parametrize(
    "path, body, name, kind",
    [
        ("/workflows/servers/create", SEED_SERVERS, "create_servers", "server"),
        ("/workflows/taskserv/create", SEED_TASKSERV, "create_kubernetes", "taskserv"),
        ("/workflows/cluster/create", SEED_CLUSTER, "create_buildkit", "cluster"),
    ],
)
async def test_single_purpose_workflow_returns_task_and_workflow_id(orch, path, body, name, kind):
    resp = await orch.post(path, json=body)
    doc = await resp.json()
    assert resp.status == 201, doc
    assert doc["success"] is True
    task_id = doc["data"]
    assert isinstance(task_id, str)
    uuid.UUID(task_id)
    done = await wait_batch(orch, task_id)
    assert done["status"] == "Completed"
    assert len(done["operations"]) == 1
    assert done["operations"][0]["task_id"] == task_id

    task = await orch.get(f"/tasks/{task_id}")
    assert task.status == 200
    t = (await task.json())["data"]
    assert t["id"] == task_id
    assert t["workflow_id"] == task_id
    assert t["name"] == name
    assert t["status"] == "Completed"
    assert "simulated" in t["output"]

    progress = await orch.get(f"/state/workflows/{task_id}/progress")
    assert progress.status == 200
    p = (await progress.json())["data"]
    assert p["workflow_id"] == task_id
    assert p["progress"] == 100.0
    assert p["total_steps"] == p["completed_steps"] == 1

    inv = (await (await orch.get("/state/inventory")).json())["data"]
    assert [i["kind"] for i in inv] == [kind]
    assert inv[0]["task_id"] == task_id


async def test_servers_workflow_with_explicit_servers(orch):
    resp = await orch.post(
        "/workflows/servers/create",
        json={
            "infra": "staging",
            "servers": [{"name": "db-01", "plan": "2xCPU-4 GB"}, {"name": "db-02"}],
            "simulate": {"latency_s": 0},
        },
    )
    assert resp.status == 201, await resp.text()
    wid = (await resp.json())["data"]
    done = await wait_batch(orch, wid)
    assert done["operations"][0]["results"]["created"] == ["db-01", "db-02"]


async def test_taskserv_workflow_delete_removes_from_inventory(orch):
    create = await orch.post(
        "/workflows/taskserv/create", json={**SEED_TASKSERV, "simulate": {"latency_s": 0}}
    )
    await wait_batch(orch, (await create.json())["data"])
    inv = (await (await orch.get("/state/inventory")).json())["data"]
    assert [i["name"] for i in inv] == ["kubernetes"]
    delete = await orch.post(
        "/workflows/taskserv/create",
        json={**SEED_TASKSERV, "operation": "delete", "simulate": {"latency_s": 0}},
    )
    assert delete.status == 201
    wid = (await delete.json())["data"]
    done = await wait_batch(orch, wid)
    assert done["status"] == "Completed"
    t = (await (await orch.get(f"/tasks/{wid}")).json())["data"]
    assert t["name"] == "delete_kubernetes"
    assert (await (await orch.get("/state/inventory")).json())["data"] == []


@pytest.mark.parametrize(
    "path, body",
    [
        ("/workflows/servers/create", SEED_SERVERS),
        ("/workflows/taskserv/create", SEED_TASKSERV),
        ("/workflows/cluster/create", SEED_CLUSTER),
    ],
)
async def test_single_purpose_check_mode_records_nothing(orch, path, body):
    resp = await orch.post(path, json={**body, "check_mode": True})
    doc = await resp.json()
    assert resp.status in (200, 201), doc
    plan = doc["data"]["plan"]
    assert len(plan["operations"]) == 1
    assert "simulated" in plan["operations"][0]["would"]
    await nothing_recorded(orch)


@pytest.mark.parametrize(
    "path, body, field",
    [
        ("/workflows/servers/create", {}, "infra"),
        ("/workflows/servers/create", {"infra": ""}, "infra"),
        ("/workflows/servers/create", {"infra": 3}, "infra"),
        ("/workflows/servers/create", {**SEED_SERVERS, "check_mode": "maybe"}, "check_mode"),
        ("/workflows/servers/create", {**SEED_SERVERS, "wait": {}}, "wait"),
        ("/workflows/servers/create", {**SEED_SERVERS, "servers": [{}]}, "servers.0.name"),
        ("/workflows/servers/create", {**SEED_SERVERS, "flavour": "x"}, "flavour"),
        ("/workflows/taskserv/create", {"infra": "production"}, "taskserv"),
        ("/workflows/taskserv/create", {**SEED_TASKSERV, "operation": "destroy"}, "operation"),
        ("/workflows/taskserv/create", {**SEED_TASKSERV, "taskserv": ["kubernetes"]}, "taskserv"),
        ("/workflows/cluster/create", {"infra": "production"}, "cluster_type"),
        ("/workflows/cluster/create", {**SEED_CLUSTER, "operation": 1}, "operation"),
        ("/workflows/cluster/create", {**SEED_CLUSTER, "infra": None}, "infra"),
    ],
)
async def test_single_purpose_bad_bodies_are_422(orch, path, body, field):
    doc = await expect_error(await orch.post(path, json=body), 422)
    assert field in fields_of(doc), doc
    await nothing_recorded(orch)


@pytest.mark.parametrize(
    "path",
    [
        "/workflows/servers/create",
        "/workflows/taskserv/create",
        "/workflows/cluster/create",
    ],
)
async def test_single_purpose_malformed_json_is_400(orch, path):
    resp = await orch.post(path, data=b"{infra: production}", headers={"Content-Type": "application/json"})
    await expect_error(resp, 400)


async def test_single_purpose_unknown_provider_is_422(orch):
    doc = await expect_error(
        await orch.post("/workflows/servers/create", json={**SEED_SERVERS, "provider": "nebula"}),
        422,
    )
    assert "nebula" in doc["error"]
    await nothing_recorded(orch)
