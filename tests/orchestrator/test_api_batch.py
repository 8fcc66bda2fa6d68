"""``/batch/*`` through real HTTP (the single-purpose ``/workflows/*`` are in
``test_api_single_purpose.py``)."""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import os
import re
import uuid
from typing import Any

import pytest

from orchestrator.app import create_app
from shared.settings import load_settings
from tests.helpers.batches import batch, op, submit, wait_batch
from tests.helpers.orchestrator_api import (
    expect_error,
    fields_of,
    nothing_recorded,
    ops_by_id,
    post_batch,
    run,
    tasks_by_name,
    ts,
)

SEED_BATCH: dict[str, Any] = {
    "name": "multi_cloud_deployment",
    "version": "1.0.0",
    "storage_backend": "surrealdb",
    "parallel_limit": 5,
    "rollback_enabled": True,
    "operations": [
        {
            "id": "upcloud_servers",
            "type": "server_batch",
            "provider": "upcloud",
            "dependencies": [],
            "server_configs": [
                {"name": "web-01", "plan": "1xCPU-2 GB", "zone": "de-fra1"},
                {"name": "web-02", "plan": "1xCPU-2 GB", "zone": "us-nyc1"},
            ],
        },
        {
            "id": "aws_taskservs",
            "type": "taskserv_batch",
            "provider": "aws",
            "dependencies": ["upcloud_servers"],
            "taskservs": ["kubernetes", "cilium", "containerd"],
        },
    ],
}


# -- POST /batch/execute: success --------------------------------------------------------


async def test_execute_returns_201_in_the_seed_shape(orch):
    resp = await post_batch(orch, SEED_BATCH)
    doc = await resp.json()
    assert resp.status == 201, doc
    assert doc["success"] is True
    data = doc["data"]
    uuid.UUID(data["batch_id"])
    assert data["status"] == "Running"
    assert [(o["id"], o["status"], o["progress"]) for o in data["operations"]] == [
        ("upcloud_servers", "Pending", 0.0),
        ("aws_taskservs", "Pending", 0.0),
    ]
    for o in data["operations"]:
        uuid.UUID(o["task_id"])
    done = await wait_batch(orch, data["batch_id"])
    assert done["status"] == "Completed"


async def test_batch_status_shape_after_completion(orch):
    data = await submit(orch, SEED_BATCH)
    done = await wait_batch(orch, data["batch_id"])
    assert done["batch_id"] == data["batch_id"]
    assert done["name"] == "multi_cloud_deployment"
    assert done["status"] == "Completed"
    assert done["progress"] == 100.0
    assert done["rollback"] is None
    assert done["error"] is None
    ops = ops_by_id(done)
    assert list(ops) == ["upcloud_servers", "aws_taskservs"]
    servers, taskservs = ops["upcloud_servers"], ops["aws_taskservs"]
    for o in (servers, taskservs):
        assert o["status"] == "Completed"
        assert o["progress"] == 100.0
        assert o["results"]["simulated"] is True
        assert o["attempt"] == 1
    assert servers["results"]["created"] == ["web-01", "web-02"]
    assert servers["results"]["provider"] == "upcloud"
    assert taskservs["results"]["created"] == ["kubernetes", "cilium", "containerd"]
    assert taskservs["dependencies"] == ["upcloud_servers"]
    assert ts(taskservs["started_at"]) >= ts(servers["completed_at"])


async def test_all_operation_types_run(orch):
    done = await run(
        orch,
        op("servers", servers=["s1"]),
        op("taskservs", ["servers"], type="taskserv_batch", taskservs=["kubernetes"]),
        op("cluster", ["taskservs"], type="cluster_batch", cluster_type="buildkit"),
        {"id": "cmd", "type": "command", "run": ["true"], "dependencies": ["cluster"]},
    )
    assert done["status"] == "Completed", done
    kinds = {o["id"]: (o["results"] or {}).get("kind") for o in done["operations"]}
    assert kinds == {"servers": "server", "taskservs": "taskserv", "cluster": "cluster", "cmd": None}
    assert ops_by_id(done)["cmd"]["results"]["exit_code"] == 0


async def test_batch_accepts_yaml_like_minimal_body_with_defaults(orch):
    resp = await post_batch(
        orch,
        {
            "name": "minimal",
            "operations": [
                {"id": "only", "type": "server_batch", "simulate": {"latency_s": 0}},
            ],
        },
    )
    assert resp.status == 201, await resp.text()
    bid = (await resp.json())["data"]["batch_id"]
    done = await wait_batch(orch, bid)
    assert done["status"] == "Completed"
    assert done["parallel_limit"] == 5
    assert done["rollback_enabled"] is False
    assert ops_by_id(done)["only"]["provider"] == "local"


# -- check mode ------------------------------------------------------------------------


async def test_check_mode_returns_plan_and_records_nothing(orch):
    body = {**SEED_BATCH, "check_mode": True}
    resp = await post_batch(orch, body)
    doc = await resp.json()
    assert resp.status in (200, 201), doc
    assert doc["success"] is True
    plan = doc["data"]["plan"]
    assert plan["generations"] == [["upcloud_servers"], ["aws_taskservs"]]
    assert [o["id"] for o in plan["operations"]] == ["upcloud_servers", "aws_taskservs"]
    for o in plan["operations"]:
        assert o["provider"] in ("upcloud", "aws")
        assert isinstance(o["would"], str) and "simulated" in o["would"]
    assert "web-01" in plan["operations"][0]["would"]
    assert "kubernetes" in plan["operations"][1]["would"]
    assert "batch_id" not in doc["data"]
    await nothing_recorded(orch)
    inv = await orch.get("/state/inventory")
    assert (await inv.json())["data"] == []


async def test_check_mode_plan_generations_of_a_diamond(orch):
    resp = await post_batch(
        orch,
        batch(
            op("root"),
            op("left", ["root"]),
            op("right", ["root"]),
            op("join", ["left", "right"]),
            op("lonely"),
            check_mode=True,
        ),
    )
    plan = (await resp.json())["data"]["plan"]
    assert plan["generations"] == [["root", "lonely"], ["left", "right"], ["join"]]
    await nothing_recorded(orch)


async def test_check_mode_of_command_says_what_it_would_run(orch, tmp_path):
    marker = tmp_path / "must-not-exist"
    resp = await post_batch(
        orch,
        batch(
            {
                "id": "touch",
                "type": "command",
                "run": ["touch", str(marker)],
                "undo": ["rm", "-f", str(marker)],
            },
            check_mode=True,
        ),
    )
    plan = (await resp.json())["data"]["plan"]
    would = plan["operations"][0]["would"]
    assert f"touch {marker}" in would and "undo" in would
    await asyncio.sleep(0.1)
    assert not marker.exists()
    await nothing_recorded(orch)


async def test_check_mode_still_validates(orch):
    resp = await post_batch(orch, batch(op("a", ["b"]), op("b", ["a"]), check_mode=True))
    doc = await expect_error(resp, 422)
    assert "cycle" in doc["error"]
    await nothing_recorded(orch)


# -- POST /batch/execute: bad input ------------------------------------------------------


async def test_malformed_json_is_400(orch):
    resp = await orch.post(
        "/batch/execute", data=b'{"name": "x", "operations": [', headers={"Content-Type": "application/json"}
    )
    doc = await expect_error(resp, 400)
    assert doc["code"] == "bad_request"
    assert "JSON" in doc["error"]
    await nothing_recorded(orch)


@pytest.mark.parametrize("body", [[1, 2], "batch", 42, None, [SEED_BATCH]])
async def test_body_that_is_not_an_object_is_400(orch, body):
    resp = await orch.post(
        "/batch/execute", data=json.dumps(body), headers={"Content-Type": "application/json"}
    )
    doc = await expect_error(resp, 400)
    assert "object" in doc["error"]


async def test_body_that_is_not_json_content_type_is_rejected(orch):
    resp = await orch.post(
        "/batch/execute", data="name=x", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    doc = await expect_error(resp, 415)
    assert "application/json" in doc["error"]


async def test_empty_body_names_the_missing_fields(orch):
    resp = await orch.post("/batch/execute", data=b"", headers={"Content-Type": "application/json"})
    doc = await expect_error(resp, 422)
    assert {"name", "operations"} <= fields_of(doc)


@pytest.mark.parametrize(
    "patch, field",
    [
        ({"name": 5}, "name"),
        ({"parallel_limit": "five"}, "parallel_limit"),
        ({"rollback_enabled": "perhaps"}, "rollback_enabled"),
        ({"check_mode": [True]}, "check_mode"),
        ({"operations": "all of them"}, "operations"),
        ({"operations": []}, "operations"),
        ({"version": ["1"]}, "version"),
    ],
)
async def test_wrong_top_level_types_are_422_naming_the_field(orch, patch, field):
    doc = await expect_error(await post_batch(orch, {**SEED_BATCH, **patch}), 422)
    assert doc["code"] == "validation_failed"
    assert field in fields_of(doc), doc
    assert field in doc["error"]
    await nothing_recorded(orch)


@pytest.mark.parametrize(
    "patch, field",
    [
        ({"id": 7}, "operations.0.id"),
        ({"id": "has spaces"}, "operations.0.id"),
        ({"dependencies": "a"}, "operations.0.dependencies"),
        ({"timeout": "soon"}, "operations.0.timeout"),
        ({"timeout": 0}, "operations.0.timeout"),
        ({"timeout": -5}, "operations.0.timeout"),
        ({"retry": {"max_attempts": 0}}, "operations.0.retry.max_attempts"),
        ({"retry": {"max_attempts": "many"}}, "operations.0.retry.max_attempts"),
        ({"simulate": {"latency_s": "slow"}}, "operations.0.simulate.latency_s"),
        ({"on_failure": "explode"}, "operations.0.on_failure"),
        ({"server_configs": [{"plan": "big"}]}, "operations.0.server_configs.0.name"),
    ],
)
async def test_wrong_operation_types_are_422_naming_the_field(orch, patch, field):
    body = batch(op("a", **patch))
    doc = await expect_error(await post_batch(orch, body), 422)
    assert field in fields_of(doc), doc
    await nothing_recorded(orch)


async def test_every_bad_field_is_reported(orch):
    body = {
        "name": "",
        "parallel_limit": 0,
        "operations": [
            {"id": "a", "type": "warp_drive"},
            {"id": "b", "type": "server_batch", "timeout": -1},
        ],
    }
    doc = await expect_error(await post_batch(orch, body), 422)
    assert {"name", "parallel_limit", "operations.0.type", "operations.1.timeout"} <= fields_of(doc)


async def test_duplicate_ids_are_422(orch):
    doc = await expect_error(await post_batch(orch, batch(op("a"), op("b"), op("a"))), 422)
    assert "'a'" in doc["error"] and "2 times" in doc["error"]
    dup = [f for f in doc["details"]["fields"] if f.get("operation") == "a"]
    assert dup and dup[0]["field"] == "operations"
    await nothing_recorded(orch)


async def test_unknown_dependency_is_422(orch):
    doc = await expect_error(await post_batch(orch, batch(op("a"), op("b", ["ghost"]))), 422)
    assert "ghost" in doc["error"]
    assert "operations.1.dependencies" in fields_of(doc)
    await nothing_recorded(orch)


async def test_unknown_soft_dependency_is_422(orch):
    body = batch(op("a", [{"id": "ghost", "kind": "soft"}]))
    doc = await expect_error(await post_batch(orch, body), 422)
    assert "ghost" in doc["error"]


async def test_bad_dependency_kind_is_422(orch):
    body = batch(op("a"), op("b", [{"id": "a", "kind": "optional"}]))
    doc = await expect_error(await post_batch(orch, body), 422)
    assert any(f.startswith("operations.1.dependencies") for f in fields_of(doc)), doc


async def test_self_dependency_is_422(orch):
    doc = await expect_error(await post_batch(orch, batch(op("a", ["a"]))), 422)
    assert "itself" in doc["error"]


async def test_two_node_cycle_is_422_naming_the_path(orch):
    doc = await expect_error(await post_batch(orch, batch(op("a", ["b"]), op("b", ["a"]))), 422)
    assert "a -> b -> a" in doc["error"] or "b -> a -> b" in doc["error"], doc["error"]
    cycle = doc["details"]["cycle"]
    assert cycle[0] == cycle[-1] and set(cycle) == {"a", "b"}
    await nothing_recorded(orch)


async def test_longer_cycle_is_422_naming_every_step(orch):
    body = batch(op("start"), op("x", ["start", "z"]), op("y", ["x"]), op("z", ["y"]), op("tail", ["z"]))
    doc = await expect_error(await post_batch(orch, body), 422)
    match = re.search(r"(\w+) -> (\w+) -> (\w+) -> (\w+)", doc["error"])
    assert match is not None, doc["error"]
    path = list(match.groups())
    assert path[0] == path[-1] and set(path) == {"x", "y", "z"}
    # each arrow is a real edge "dependency -> dependent" or its reverse, consistently
    edges = {("x", "y"), ("y", "z"), ("z", "x")}
    steps = set(itertools.pairwise(path))
    assert steps == edges or steps == {(b, a) for a, b in edges}


async def test_unknown_provider_is_422(orch):
    doc = await expect_error(await post_batch(orch, batch(op("a", provider="nebula"))), 422)
    assert "nebula" in doc["error"]
    assert "operations.0.provider" in fields_of(doc)


async def test_unknown_type_is_422(orch):
    doc = await expect_error(await post_batch(orch, batch(op("a", type="database_batch"))), 422)
    assert "operations.0.type" in fields_of(doc)


@pytest.mark.parametrize("limit", [0, -1, 1001])
async def test_parallel_limit_out_of_range_is_422(orch, limit):
    doc = await expect_error(await post_batch(orch, batch(op("a"), parallel_limit=limit)), 422)
    assert "parallel_limit" in fields_of(doc)


async def test_unsupported_storage_backend_says_which_are_supported(orch):
    doc = await expect_error(await post_batch(orch, {**SEED_BATCH, "storage_backend": "filesystem"}), 422)
    assert "storage_backend" in fields_of(doc)
    assert "filesystem" in doc["error"]
    assert "surrealdb" in doc["error"]
    await nothing_recorded(orch)


async def test_command_operation_without_run_is_422(orch):
    doc = await expect_error(await post_batch(orch, batch({"id": "migrate", "type": "command"})), 422)
    assert "run" in doc["error"]
    assert any(f.startswith("operations.0") for f in fields_of(doc))
    doc = await expect_error(
        await post_batch(orch, batch({"id": "migrate", "type": "command", "run": []})), 422
    )
    assert "operations.0.run" in fields_of(doc)


async def test_unknown_top_level_field_is_422(orch):
    doc = await expect_error(await post_batch(orch, {**SEED_BATCH, "priority": "high"}), 422)
    assert "priority" in fields_of(doc)


async def test_unknown_operation_field_is_422(orch):
    doc = await expect_error(await post_batch(orch, batch(op("a", colour="red"))), 422)
    assert "operations.0.colour" in fields_of(doc)


async def test_oversized_body_is_413_in_the_envelope(orch):
    big = json.dumps({**SEED_BATCH, "description": "x" * (1024 * 1024 + 100)}).encode()
    resp = await orch.post(
        "/batch/execute", data=io.BytesIO(big), headers={"Content-Type": "application/json"}
    )
    doc = await expect_error(resp, 413)
    assert doc["code"] == "payload_too_large"
    assert "1048576" in doc["error"]
    await nothing_recorded(orch)


async def test_body_limit_follows_settings(aiohttp_client, tmp_path):
    settings = load_settings(db_url="mem://", data_dir=tmp_path, auth_enabled=False, max_body_bytes=2048)
    client = await aiohttp_client(create_app(settings))
    small = batch(op("a"))
    assert len(json.dumps(small)) < 2048
    resp = await post_batch(client, small)
    assert resp.status == 201, await resp.text()
    await wait_batch(client, (await resp.json())["data"]["batch_id"])
    big = batch(*(op(f"op{i}") for i in range(40)))
    assert len(json.dumps(big)) > 2048
    doc = await expect_error(await post_batch(client, big), 413)
    assert "2048" in doc["error"]
    assert doc.get("details", {}).get("limit_bytes", 2048) == 2048


# -- GET /batch/operations ---------------------------------------------------------------


async def test_list_batches_newest_first_with_operations(orch):
    first = await run(orch, op("a"), name="first")
    second = await run(orch, op("b"), op("c", ["b"]), name="second")
    resp = await orch.get("/batch/operations")
    doc = await resp.json()
    assert resp.status == 200 and doc["success"] is True
    rows = doc["data"]
    assert [r["batch_id"] for r in rows] == [second["batch_id"], first["batch_id"]]
    assert resp.headers["X-Total-Count"] == "2"
    for r in rows:
        assert {"batch_id", "name", "status", "created_at", "operations"} <= set(r)
        assert r["status"] == "Completed"
        ts(r["created_at"])
    assert [o["id"] for o in rows[0]["operations"]] == ["b", "c"]
    assert rows[1]["name"] == "first"


async def test_list_batches_pagination(orch):
    ids = [(await run(orch, op("a"), name=f"b{i}"))["batch_id"] for i in range(3)]
    resp = await orch.get("/batch/operations", params={"limit": "2"})
    page1 = (await resp.json())["data"]
    assert [r["batch_id"] for r in page1] == ids[::-1][:2]
    assert resp.headers["X-Total-Count"] == "3"
    assert resp.headers["X-Limit"] == "2"
    assert 'rel="next"' in resp.headers["Link"]
    resp = await orch.get("/batch/operations", params={"limit": "2", "offset": "2"})
    page2 = (await resp.json())["data"]
    assert [r["batch_id"] for r in page2] == ids[:1]
    assert resp.headers["X-Offset"] == "2"
    assert 'rel="prev"' in resp.headers["Link"]
    assert 'rel="next"' not in resp.headers["Link"]


async def test_list_batches_filter_by_status(orch):
    good = await run(orch, op("a"))
    bad = await run(orch, op("a", simulate={"fail_always": True}, retry={"max_attempts": 1}))
    assert bad["status"] == "Failed"
    resp = await orch.get("/batch/operations", params={"status": "Failed"})
    assert [r["batch_id"] for r in (await resp.json())["data"]] == [bad["batch_id"]]
    resp = await orch.get("/batch/operations", params={"status": "Completed"})
    assert [r["batch_id"] for r in (await resp.json())["data"]] == [good["batch_id"]]


@pytest.mark.parametrize(
    "params, field",
    [
        ({"limit": "5000"}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"offset": "-3"}, "offset"),
    ],
)
async def test_list_batches_bad_query_is_422(orch, params, field):
    doc = await expect_error(await orch.get("/batch/operations", params=params), 422)
    assert field in fields_of(doc)


async def test_list_batches_unknown_status_is_422(orch):
    doc = await expect_error(await orch.get("/batch/operations", params={"status": "Done"}), 422)
    assert "Done" in doc["error"]


# -- GET /batch/operations/{id} ---------------------------------------------------------


@pytest.mark.parametrize("bid", ["no-such-batch", str(uuid.uuid4())])
async def test_unknown_batch_is_404(orch, bid):
    doc = await expect_error(await orch.get(f"/batch/operations/{bid}"), 404)
    assert doc["code"] == "not_found"
    assert bid in doc["error"]


async def test_batch_document_counts_operations_by_status(orch):
    done = await run(orch, op("a"), op("b", ["a"]), op("c", simulate={"fail_always": True}))
    assert done["total_operations"] == 3
    assert set(done["counts"]) == {
        "Pending",
        "Running",
        "Completed",
        "Failed",
        "Cancelled",
        "RollingBack",
        "RolledBack",
    }
    assert done["counts"]["Completed"] + done["counts"]["Failed"] + done["counts"]["Cancelled"] == 3
    assert done["counts"]["Failed"] == 1


async def test_summary_view_has_every_field_but_the_operations(orch):
    done = await run(orch, op("a"), op("b", ["a"]))
    resp = await orch.get(f"/batch/operations/{done['batch_id']}", params={"view": "summary"})
    assert resp.status == 200
    summary = (await resp.json())["data"]
    assert list(summary) == [k for k in done if k != "operations"]
    assert summary == {k: v for k, v in done.items() if k != "operations"}


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ("status", ["batch_id", "status"]),
        ("counts,status,progress", ["batch_id", "status", "progress", "counts"]),  # document order
        ("operations, batch_id", ["batch_id", "operations"]),
        ("total_operations,total_operations", ["batch_id", "total_operations"]),
    ],
)
async def test_fields_selects_top_level_fields(orch, fields, expected):
    done = await run(orch, op("a"), op("b", ["a"]))
    resp = await orch.get(f"/batch/operations/{done['batch_id']}", params={"fields": fields})
    assert resp.status == 200
    assert resp.content_type == "application/json"
    data = (await resp.json())["data"]
    assert list(data) == expected
    assert data == {k: done[k] for k in expected}


@pytest.mark.parametrize(
    "params",
    [
        {"fields": "status,nope"},
        {"fields": ""},
        {"fields": "status,,counts"},
        {"fields": "x" * 600},
        {"fields": "operations", "view": "summary"},  # a summary has no operation list
        {"fields": "<script>"},
    ],
)
async def test_unknown_fields_are_422_naming_fields(orch, params):
    done = await run(orch, op("a"))
    doc = await expect_error(await orch.get(f"/batch/operations/{done['batch_id']}", params=params), 422)
    assert "fields" in fields_of(doc)


@pytest.mark.parametrize("view", ["", "full ", "everything", "SUMMARY"])
async def test_unknown_view_is_422_naming_view(orch, view):
    done = await run(orch, op("a"))
    resp = await orch.get(f"/batch/operations/{done['batch_id']}", params={"view": view})
    doc = await expect_error(resp, 422)
    assert "view" in fields_of(doc)


async def test_unknown_query_parameter_on_the_document_is_422(orch):
    done = await run(orch, op("a"))
    doc = await expect_error(
        await orch.get(f"/batch/operations/{done['batch_id']}", params={"fieldz": "a"}), 422
    )
    assert "fieldz" in fields_of(doc)


# -- cancel ----------------------------------------------------------------------------


def running(name: str) -> Any:
    return lambda b: any(o["id"] == name and o["status"] == "Running" for o in b["operations"])


async def test_cancel_running_batch(orch):
    data = await submit(
        orch,
        batch(
            op("slow", simulate={"latency_s": 30}),
            op("after", ["slow"]),
            op("queued", simulate={"latency_s": 30}),
            parallel_limit=1,
        ),
    )
    bid = data["batch_id"]
    await wait_batch(orch, bid, until=running("slow"))
    resp = await orch.post(f"/batch/operations/{bid}/cancel")
    doc = await resp.json()
    assert resp.status == 200, doc
    assert doc == {"success": True, "data": "Operation cancelled"}
    final = await wait_batch(orch, bid)
    assert final["status"] == "Cancelled"
    ops = ops_by_id(final)
    assert {o["status"] for o in ops.values()} == {"Cancelled"}
    assert ops["slow"]["error"] == "cancelled by request"
    assert ops["slow"]["completed_at"] is not None
    assert ops["queued"]["started_at"] is None
    tasks = await tasks_by_name(orch, bid)
    assert {t["status"] for t in tasks.values()} == {"Cancelled"}
    # the inventory never received what the cancelled operation would have created
    inv = (await (await orch.get("/state/inventory")).json())["data"]
    assert inv == []


async def test_cancel_kills_a_running_command(orch):
    data = await submit(
        orch,
        batch(
            {
                "id": "sleeper",
                "type": "command",
                "run": ["sleep", "30"],
                "timeout": 60,
            }
        ),
    )
    bid = data["batch_id"]
    tid = data["operations"][0]["task_id"]
    pid = None
    for _ in range(500):
        t = (await (await orch.get(f"/tasks/{tid}")).json())["data"]
        m = re.search(r"\(pid (\d+)\)", t.get("message") or "")
        if t["status"] == "Running" and m:
            pid = int(m.group(1))
            break
        await asyncio.sleep(0.02)
    assert pid is not None, "the command never reported its pid"
    os.kill(pid, 0)  # alive now
    resp = await orch.post(f"/batch/operations/{bid}/cancel")
    assert resp.status == 200
    final = await wait_batch(orch, bid)
    assert final["status"] == "Cancelled"
    assert final["operations"][0]["status"] == "Cancelled"
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def test_cancel_finished_batch_is_409(orch):
    done = await run(orch, op("a"))
    doc = await expect_error(await orch.post(f"/batch/operations/{done['batch_id']}/cancel"), 409)
    assert doc["code"] == "conflict"
    assert "Completed" in doc["error"]
    # and nothing changed
    again = await wait_batch(orch, done["batch_id"])
    assert again["status"] == "Completed"
    assert ops_by_id(again)["a"]["status"] == "Completed"


async def test_cancel_twice_is_409(orch):
    data = await submit(orch, batch(op("slow", simulate={"latency_s": 30})))
    bid = data["batch_id"]
    await wait_batch(orch, bid, until=running("slow"))
    assert (await orch.post(f"/batch/operations/{bid}/cancel")).status == 200
    doc = await expect_error(await orch.post(f"/batch/operations/{bid}/cancel"), 409)
    assert "Cancelled" in doc["error"]


async def test_cancel_unknown_batch_is_404(orch):
    doc = await expect_error(await orch.post(f"/batch/operations/{uuid.uuid4()}/cancel"), 404)
    assert doc["code"] == "not_found"


async def test_cancel_is_post_only(orch):
    data = await submit(orch, batch(op("a")))
    resp = await orch.get(f"/batch/operations/{data['batch_id']}/cancel")
    assert resp.status == 405
    await wait_batch(orch, data["batch_id"])
