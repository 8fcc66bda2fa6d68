"""``/rollback/*``: checkpoints, rollback by checkpoint and by operations, restore,
statistics, and the automatic rollback of a failed batch, through real HTTP."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.helpers.batches import batch, op, submit, wait_batch
from tests.helpers.orchestrator_api import data_of, expect_error, rollback_order, run, ts

RESULT_KEYS = {"rollback_id", "success", "operations_executed", "operations_failed", "duration"}
SUMMARY_KEYS = {"rollback_id", "operations_executed", "operations_failed"}
FAIL_ONCE = {"simulate": {"fail_always": True}, "retry": {"max_attempts": 1}}


async def post_ok(client: Any, path: str, body: Any = None, status: int = 200) -> Any:
    resp = await client.post(path, json=body)
    doc = await resp.json()
    assert resp.status == status, doc
    assert doc["success"] is True
    return doc["data"]


async def checkpoint(client: Any, name: str, description: str | None = None) -> str:
    body: dict[str, Any] = {"name": name}
    if description is not None:
        body["description"] = description
    cid = await post_ok(client, "/rollback/checkpoints", body, status=201)
    assert isinstance(cid, str)
    uuid.UUID(cid)
    return cid


async def rollback(client: Any, body: dict[str, Any]) -> dict[str, Any]:
    result = await post_ok(client, "/rollback/execute", body)
    assert RESULT_KEYS <= set(result), result
    uuid.UUID(result["rollback_id"])
    assert isinstance(result["duration"], int | float) and result["duration"] >= 0
    return result


async def statuses(client: Any, wid: str) -> dict[str, str]:
    b = await data_of(client, f"/batch/operations/{wid}")
    return {o["id"]: o["status"] for o in b["operations"]}


async def inventory_names(client: Any) -> set[str]:
    return {i["name"] for i in await data_of(client, "/state/inventory")}


def servers(op_id: str, deps: list[Any] | None = None, **kw: Any) -> dict[str, Any]:
    return op(op_id, deps, servers=[f"{op_id}-srv"], **kw)


# -- checkpoints ---------------------------------------------------------------------


async def test_create_list_and_get_checkpoint(orch):
    cid = await checkpoint(orch, "before_major_update", "Checkpoint before deploying v2.0.0")
    rows = await data_of(orch, "/rollback/checkpoints")
    assert len(rows) == 1
    row = rows[0]
    assert {"id", "name", "description", "created_at", "size"} <= set(row)
    assert row["id"] == cid
    assert row["name"] == "before_major_update"
    assert row["description"] == "Checkpoint before deploying v2.0.0"
    ts(row["created_at"])
    assert isinstance(row["size"], str) and row["size"].split()[-1] in ("B", "KB", "MB", "GB")
    one = await data_of(orch, f"/rollback/checkpoints/{cid}")
    assert {k: one[k] for k in row} == row
    assert one["operations_count"] == 0


async def test_checkpoint_description_is_optional(orch):
    cid = await checkpoint(orch, "bare")
    one = await data_of(orch, f"/rollback/checkpoints/{cid}")
    assert one["description"] is None


async def test_operations_count_is_what_stood_completed_at_the_checkpoint(orch):
    before = await checkpoint(orch, "before")
    done = await run(orch, servers("a"), servers("b", ["a"]), op("c", **FAIL_ONCE, on_failure="continue"))
    after = await checkpoint(orch, "after")
    assert (await data_of(orch, f"/rollback/checkpoints/{before}"))["operations_count"] == 0
    assert (await data_of(orch, f"/rollback/checkpoints/{after}"))["operations_count"] == 2
    auto = await data_of(orch, f"/rollback/checkpoints/{done['checkpoint_id']}")
    assert auto["operations_count"] == 0
    await rollback(orch, {"operation_ids": ["b"], "workflow_id": done["batch_id"]})
    later = await checkpoint(orch, "after rollback")
    assert (await data_of(orch, f"/rollback/checkpoints/{later}"))["operations_count"] == 1
    # the earlier checkpoint still describes its own moment
    assert (await data_of(orch, f"/rollback/checkpoints/{after}"))["operations_count"] == 2


async def test_every_batch_gets_an_automatic_checkpoint(orch):
    done = await run(orch, op("a"), name="deploy")
    rows = await data_of(orch, "/rollback/checkpoints")
    assert [r["id"] for r in rows] == [done["checkpoint_id"]]
    assert rows[0]["workflow_id"] == done["batch_id"]
    assert "deploy" in rows[0]["name"]


async def test_checkpoints_newest_first_and_paginated(orch):
    first = await checkpoint(orch, "one")
    done = await run(orch, op("a"))
    second = await checkpoint(orch, "two")
    resp = await orch.get("/rollback/checkpoints", params={"limit": "2"})
    assert resp.status == 200
    assert resp.headers["X-Total-Count"] == "3"
    assert resp.headers["X-Limit"] == "2"
    assert 'rel="next"' in resp.headers["Link"]
    page = (await resp.json())["data"]
    assert len(page) == 2
    assert page[0]["id"] == second
    resp = await orch.get("/rollback/checkpoints", params={"limit": "2", "offset": "2"})
    assert 'rel="prev"' in resp.headers["Link"]
    rest = (await resp.json())["data"]
    assert len(rest) == 1
    all_ids = [r["id"] for r in page + rest]
    assert sorted(all_ids) == sorted({first, second, done["checkpoint_id"]})


async def test_checkpoints_at_the_same_journal_position_list_newest_first(orch):
    # nothing happens between these, so they share a journal position
    made = [await checkpoint(orch, f"cp{i}") for i in range(6)]
    rows = await data_of(orch, "/rollback/checkpoints")
    assert len({r["journal_seq"] for r in rows}) == 1
    stamps = [ts(r["created_at"]) for r in rows]
    assert stamps == sorted(stamps, reverse=True)
    assert [r["id"] for r in rows] == made[::-1]


async def test_checkpoint_bound_to_a_workflow(orch):
    done = await run(orch, op("a"))
    resp = await orch.post("/rollback/checkpoints", json={"name": "pinned", "workflow_id": done["batch_id"]})
    assert resp.status == 201
    cid = (await resp.json())["data"]
    assert (await data_of(orch, f"/rollback/checkpoints/{cid}"))["workflow_id"] == done["batch_id"]
    doc = await expect_error(
        await orch.post("/rollback/checkpoints", json={"name": "x", "workflow_id": "ghost"}), 404
    )
    assert "ghost" in doc["error"]


@pytest.mark.parametrize(
    "body, field",
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": 3}, "name"),
        ({"name": "x", "description": ["a"]}, "description"),
        ({"name": "x", "size": 1}, "size"),
    ],
)
async def test_bad_checkpoint_body_is_422(orch, body, field):
    doc = await expect_error(await orch.post("/rollback/checkpoints", json=body), 422)
    assert field in {f["field"] for f in doc["details"]["fields"]}
    assert await data_of(orch, "/rollback/checkpoints") == []


async def test_malformed_checkpoint_body_is_400(orch):
    resp = await orch.post(
        "/rollback/checkpoints", data=b"{name", headers={"Content-Type": "application/json"}
    )
    await expect_error(resp, 400)


async def test_unknown_checkpoint_is_404(orch):
    doc = await expect_error(await orch.get(f"/rollback/checkpoints/{uuid.uuid4()}"), 404)
    assert doc["code"] == "not_found"


# -- rollback by checkpoint -------------------------------------------------------------


async def test_rollback_to_checkpoint_undoes_later_operations_dependents_first(orch):
    cid = await checkpoint(orch, "clean slate")
    done = await run(
        orch,
        servers("net"),
        servers("app", ["net"]),
        servers("db", ["app"]),
        servers("side"),
        parallel_limit=1,
    )
    assert done["status"] == "Completed"
    assert await inventory_names(orch) == {"net-srv", "app-srv", "db-srv", "side-srv"}
    result = await rollback(orch, {"checkpoint_id": cid})
    assert result["success"] is True
    assert result["operations_executed"] == 4
    assert result["operations_failed"] == 0
    assert set((await statuses(orch, done["batch_id"])).values()) == {"RolledBack"}
    assert await inventory_names(orch) == set()
    order = await rollback_order(orch, done["batch_id"])
    assert sorted(order) == ["app", "db", "net", "side"]
    assert order.index("db") < order.index("app") < order.index("net")
    # the tasks say so too
    tasks = await data_of(orch, "/tasks", status="RolledBack")
    assert len(tasks) == 4
    # and the batch remembers its rollback
    b = await data_of(orch, f"/batch/operations/{done['batch_id']}")
    assert b["rollback"]["rollback_id"] == result["rollback_id"]


async def test_rollback_to_the_batch_checkpoint(orch):
    done = await run(orch, servers("a"), servers("b", ["a"]))
    result = await rollback(orch, {"checkpoint_id": done["checkpoint_id"]})
    assert result["operations_executed"] == 2
    assert await statuses(orch, done["batch_id"]) == {"a": "RolledBack", "b": "RolledBack"}


async def test_rollback_to_checkpoint_leaves_earlier_work_alone(orch):
    first = await run(orch, servers("old"))
    cid = await checkpoint(orch, "between")
    second = await run(orch, servers("new"))
    result = await rollback(orch, {"checkpoint_id": cid})
    assert result["operations_executed"] == 1
    assert await statuses(orch, first["batch_id"]) == {"old": "Completed"}
    assert await statuses(orch, second["batch_id"]) == {"new": "RolledBack"}
    assert await inventory_names(orch) == {"old-srv"}


async def test_rollback_to_latest_checkpoint_does_nothing(orch):
    done = await run(orch, servers("a"))
    cid = await checkpoint(orch, "now")
    result = await rollback(orch, {"checkpoint_id": cid})
    assert result["success"] is True
    assert result["operations_executed"] == 0
    assert result["operations_failed"] == 0
    assert await statuses(orch, done["batch_id"]) == {"a": "Completed"}


async def test_rollback_unknown_checkpoint_is_404(orch):
    doc = await expect_error(await orch.post("/rollback/execute", json={"checkpoint_id": "ghost"}), 404)
    assert "ghost" in doc["error"]


# -- rollback by operations ----------------------------------------------------------------


async def test_rollback_by_task_ids_takes_completed_dependents_first(orch):
    done = await run(
        orch, servers("a"), servers("b", ["a"]), servers("c", ["b"]), servers("d"), parallel_limit=1
    )
    task_a = next(o["task_id"] for o in done["operations"] if o["id"] == "a")
    result = await rollback(orch, {"operation_ids": [task_a]})
    assert result["operations_executed"] == 3
    assert result["operations_failed"] == 0
    assert result["success"] is True
    assert await statuses(orch, done["batch_id"]) == {
        "a": "RolledBack",
        "b": "RolledBack",
        "c": "RolledBack",
        "d": "Completed",
    }
    assert await inventory_names(orch) == {"d-srv"}
    assert await rollback_order(orch, done["batch_id"]) == ["c", "b", "a"]


async def test_rollback_by_operation_names_with_workflow_id(orch):
    done = await run(orch, servers("a"), servers("b", ["a"]), servers("c", ["a"]))
    result = await rollback(orch, {"operation_ids": ["b"], "workflow_id": done["batch_id"]})
    assert result["operations_executed"] == 1
    assert await statuses(orch, done["batch_id"]) == {
        "a": "Completed",
        "b": "RolledBack",
        "c": "Completed",
    }
    assert await inventory_names(orch) == {"a-srv", "c-srv"}


async def test_rollback_across_two_batches_by_task_ids(orch):
    one = await run(orch, servers("x"))
    two = await run(orch, servers("y"))
    ids = [one["operations"][0]["task_id"], two["operations"][0]["task_id"]]
    result = await rollback(orch, {"operation_ids": ids})
    assert result["operations_executed"] == 2
    assert await statuses(orch, one["batch_id"]) == {"x": "RolledBack"}
    assert await statuses(orch, two["batch_id"]) == {"y": "RolledBack"}


async def test_rollback_names_without_workflow_id_are_unknown(orch):
    await run(orch, servers("a"))
    doc = await expect_error(await orch.post("/rollback/execute", json={"operation_ids": ["a"]}), 404)
    assert "a" in doc["details"]["missing"]
    assert "workflow_id" in doc["error"]


async def test_rollback_unknown_operation_ids_are_404(orch):
    done = await run(orch, servers("a"))
    doc = await expect_error(
        await orch.post(
            "/rollback/execute",
            json={
                "operation_ids": ["a", "ghost"],
                "workflow_id": done["batch_id"],
            },
        ),
        404,
    )
    assert doc["details"]["missing"] == ["ghost"]
    assert await statuses(orch, done["batch_id"]) == {"a": "Completed"}
    doc = await expect_error(
        await orch.post(
            "/rollback/execute",
            json={
                "operation_ids": [str(uuid.uuid4())],
            },
        ),
        404,
    )


async def test_rollback_with_unknown_workflow_is_404(orch):
    doc = await expect_error(
        await orch.post(
            "/rollback/execute",
            json={
                "operation_ids": ["a"],
                "workflow_id": "ghost-workflow",
            },
        ),
        404,
    )
    assert "ghost-workflow" in doc["error"]


async def test_rolling_back_twice_is_409(orch):
    done = await run(orch, servers("a"))
    body = {"operation_ids": ["a"], "workflow_id": done["batch_id"]}
    await rollback(orch, body)
    doc = await expect_error(await orch.post("/rollback/execute", json=body), 409)
    assert "Completed" in doc["error"]


async def test_rollback_of_a_running_workflow_is_409(orch):
    data = await submit(
        orch, batch(servers("done_first"), op("slow", ["done_first"], simulate={"latency_s": 30}))
    )
    wid = data["batch_id"]
    await wait_batch(
        orch,
        wid,
        until=lambda b: any(o["id"] == "slow" and o["status"] == "Running" for o in b["operations"]),
    )
    doc = await expect_error(
        await orch.post(
            "/rollback/execute",
            json={
                "operation_ids": ["done_first"],
                "workflow_id": wid,
            },
        ),
        409,
    )
    assert wid in doc["details"]["running_workflows"]
    assert (await orch.post(f"/batch/operations/{wid}/cancel")).status == 200
    assert (await statuses(orch, wid))["done_first"] == "Completed"
    result = await rollback(orch, {"operation_ids": ["done_first"], "workflow_id": wid})
    assert result["operations_executed"] == 1


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"workflow_id": "x"},
        {"checkpoint_id": "c", "operation_ids": ["a"]},
        {"operation_ids": []},
        {"operation_ids": "a"},
        {"checkpoint_id": 5},
        {"checkpoint_id": "c", "dry_run": True},
    ],
)
async def test_bad_rollback_request_is_422(orch, body):
    doc = await expect_error(await orch.post("/rollback/execute", json=body), 422)
    assert doc["code"] == "validation_failed"


async def test_both_or_neither_target_says_so(orch):
    for body in ({}, {"checkpoint_id": "c", "operation_ids": ["a"]}):
        doc = await expect_error(await orch.post("/rollback/execute", json=body), 422)
        assert "checkpoint_id" in doc["error"] and "operation_ids" in doc["error"]


async def test_failed_undo_is_reported(orch):
    done = await run(orch, servers("good"), servers("stubborn", simulate={"fail_rollback": True}))
    result = await post_ok(orch, "/rollback/execute", {"checkpoint_id": done["checkpoint_id"]})
    assert result["success"] is False
    assert result["operations_executed"] == 1
    assert result["operations_failed"] == 1
    assert [f["operation_id"] for f in result["failures"]] == ["stubborn"]
    b = await data_of(orch, f"/batch/operations/{done['batch_id']}")
    o = {x["id"]: x for x in b["operations"]}
    assert o["good"]["status"] == "RolledBack"
    assert o["stubborn"]["status"] == "Failed"
    assert "rollback failed" in o["stubborn"]["error"]
    assert await inventory_names(orch) == {"stubborn-srv"}


async def test_command_operations_run_their_undo(orch, work_root):
    target = work_root / "made-by-batch"
    done = await run(
        orch,
        {
            "id": "make",
            "type": "command",
            "run": ["mkdir", str(target)],
            "undo": ["rmdir", str(target)],
        },
        {"id": "noundo", "type": "command", "run": ["true"], "dependencies": ["make"]},
    )
    assert done["status"] == "Completed"
    assert target.is_dir()
    result = await rollback(orch, {"checkpoint_id": done["checkpoint_id"]})
    assert result["operations_executed"] == 2
    assert not target.exists()
    assert await statuses(orch, done["batch_id"]) == {"make": "RolledBack", "noundo": "RolledBack"}


async def taskserv_workflow(client: Any, operation: str) -> str:
    resp = await client.post(
        "/workflows/taskserv/create",
        json={
            "infra": "prod",
            "taskserv": "kubernetes",
            "operation": operation,
            "simulate": {"latency_s": 0},
        },
    )
    assert resp.status == 201, await resp.text()
    wid: str = (await resp.json())["data"]
    assert (await wait_batch(client, wid))["status"] == "Completed"
    return wid


async def test_rolling_back_an_update_keeps_the_resource(orch):
    await taskserv_workflow(orch, "create")
    cid = await checkpoint(orch, "kubernetes installed")
    update = await taskserv_workflow(orch, "update")
    assert await inventory_names(orch) == {"kubernetes"}
    result = await rollback(orch, {"checkpoint_id": cid})
    assert result["operations_executed"] == 1
    assert (await data_of(orch, f"/tasks/{update}"))["status"] == "RolledBack"
    # undoing the update must not uninstall what existed before it
    assert await inventory_names(orch) == {"kubernetes"}


async def test_rolling_back_a_delete_brings_the_resource_back(orch):
    await taskserv_workflow(orch, "create")
    cid = await checkpoint(orch, "kubernetes installed")
    delete = await taskserv_workflow(orch, "delete")
    assert await inventory_names(orch) == set()
    result = await rollback(orch, {"operation_ids": [delete]})
    assert result["operations_executed"] == 1
    assert (await data_of(orch, f"/tasks/{delete}"))["status"] == "RolledBack"
    # the inventory is back to what it was at the checkpoint
    assert await inventory_names(orch) == {"kubernetes"}
    assert (await data_of(orch, f"/rollback/checkpoints/{cid}"))["operations_count"] == 1


# -- restore -----------------------------------------------------------------------------


async def test_restore_resets_statuses_without_running_providers(orch):
    done = await run(orch, servers("a"), servers("b", ["a"]))
    wid = done["batch_id"]
    after = await checkpoint(orch, "all completed")
    await rollback(orch, {"checkpoint_id": done["checkpoint_id"]})
    assert set((await statuses(orch, wid)).values()) == {"RolledBack"}
    assert await inventory_names(orch) == set()

    msg = await post_ok(orch, f"/rollback/restore/{after}")
    assert msg == f"State restored from checkpoint {after}"
    assert await statuses(orch, wid) == {"a": "Completed", "b": "Completed"}
    tasks = await data_of(orch, "/tasks", workflow_id=wid)
    assert {t["status"] for t in tasks} == {"Completed"}
    # no provider ran: the simulated cloud is as the rollback left it
    assert await inventory_names(orch) == set()
    assert (await data_of(orch, f"/batch/operations/{wid}"))["status"] == "Completed"


async def test_restore_to_before_a_batch_marks_it_cancelled(orch):
    before = await checkpoint(orch, "before")
    done = await run(orch, servers("a"), servers("b", ["a"]))
    wid = done["batch_id"]
    assert await inventory_names(orch) == {"a-srv", "b-srv"}
    msg = await post_ok(orch, f"/rollback/restore/{before}")
    assert before in msg
    b = await data_of(orch, f"/batch/operations/{wid}")
    assert b["status"] == "Cancelled"
    assert {o["status"] for o in b["operations"]} == {"Cancelled"}
    # restore runs no provider: what was created is still there
    assert await inventory_names(orch) == {"a-srv", "b-srv"}
    # and it is journaled like any change
    state = await data_of(orch, f"/state/workflows/{wid}/state")
    assert state["status"] == "Cancelled"


async def test_restore_twice_changes_nothing_the_second_time(orch):
    done = await run(orch, servers("a"))
    wid = done["batch_id"]
    after = await checkpoint(orch, "after")
    await rollback(orch, {"checkpoint_id": done["checkpoint_id"]})
    await post_ok(orch, f"/rollback/restore/{after}")
    first = await data_of(orch, f"/state/workflows/{wid}/state")
    assert await post_ok(orch, f"/rollback/restore/{after}") == f"State restored from checkpoint {after}"
    second = await data_of(orch, f"/state/workflows/{wid}/state")
    assert second == first
    assert await statuses(orch, wid) == {"a": "Completed"}


async def test_checkpoint_details_do_not_change_after_a_restore(orch):
    done = await run(orch, servers("a"), servers("b", ["a"]))
    cp1 = await checkpoint(orch, "both completed")
    await rollback(orch, {"checkpoint_id": done["checkpoint_id"]})
    cp2 = await checkpoint(orch, "both rolled back")
    assert (await data_of(orch, f"/rollback/checkpoints/{cp1}"))["operations_count"] == 2
    assert (await data_of(orch, f"/rollback/checkpoints/{cp2}"))["operations_count"] == 0
    await post_ok(orch, f"/rollback/restore/{cp1}")
    assert await statuses(orch, done["batch_id"]) == {"a": "Completed", "b": "Completed"}
    # a checkpoint describes its own moment; restoring to it does not rewrite that
    assert (await data_of(orch, f"/rollback/checkpoints/{cp1}"))["operations_count"] == 2
    assert (await data_of(orch, f"/rollback/checkpoints/{cp2}"))["operations_count"] == 0


async def test_rollback_to_the_checkpoint_just_restored_does_nothing(orch):
    done = await run(orch, servers("a"))
    cp1 = await checkpoint(orch, "completed")
    await rollback(orch, {"checkpoint_id": done["checkpoint_id"]})
    await post_ok(orch, f"/rollback/restore/{cp1}")
    # the recorded state is now exactly the state at cp1: nothing completed after it
    result = await rollback(orch, {"checkpoint_id": cp1})
    assert result["operations_executed"] == 0
    assert await statuses(orch, done["batch_id"]) == {"a": "Completed"}


async def test_restore_unknown_checkpoint_is_404(orch):
    doc = await expect_error(await orch.post(f"/rollback/restore/{uuid.uuid4()}"), 404)
    assert doc["code"] == "not_found"


async def test_restore_while_running_is_409(orch):
    cid = await checkpoint(orch, "cp")
    data = await submit(orch, batch(op("slow", simulate={"latency_s": 30})))
    doc = await expect_error(await orch.post(f"/rollback/restore/{cid}"), 409)
    assert data["batch_id"] in doc["details"]["running_workflows"]
    assert (await orch.post(f"/batch/operations/{data['batch_id']}/cancel")).status == 200


# -- statistics ---------------------------------------------------------------------------


async def test_rollback_statistics(orch):
    stats = await data_of(orch, "/rollback/statistics")
    assert stats == {
        "total_checkpoints": 0,
        "total_rollbacks": 0,
        "success_rate": 100.0,
        "average_rollback_time": 0.0,
    }
    good = await run(orch, servers("a"))
    await rollback(orch, {"checkpoint_id": good["checkpoint_id"]})
    stats = await data_of(orch, "/rollback/statistics")
    assert stats["total_checkpoints"] == 1
    assert stats["total_rollbacks"] == 1
    assert stats["success_rate"] == 100.0
    bad = await run(orch, servers("b", simulate={"fail_rollback": True}))
    await checkpoint(orch, "manual")
    await post_ok(orch, "/rollback/execute", {"checkpoint_id": bad["checkpoint_id"]})
    stats = await data_of(orch, "/rollback/statistics")
    assert stats["total_checkpoints"] == 3
    assert stats["total_rollbacks"] == 2
    assert stats["success_rate"] == 50.0
    assert isinstance(stats["average_rollback_time"], int | float)
    assert stats["average_rollback_time"] >= 0


# -- automatic rollback --------------------------------------------------------------------


async def test_failed_batch_with_rollback_enabled_rolls_back(orch):
    done = await run(
        orch,
        servers("net"),
        servers("app", ["net"]),
        servers("db", ["app"], **FAIL_ONCE),
        servers("mon", ["db"]),
        rollback_enabled=True,
    )
    assert done["status"] == "Failed"
    rb = done["rollback"]
    assert set(rb) == SUMMARY_KEYS
    uuid.UUID(rb["rollback_id"])
    assert rb["operations_executed"] == 2
    assert rb["operations_failed"] == 0
    assert await statuses(orch, done["batch_id"]) == {
        "net": "RolledBack",
        "app": "RolledBack",
        "db": "Failed",
        "mon": "Cancelled",
    }
    assert await inventory_names(orch) == set()
    assert await rollback_order(orch, done["batch_id"]) == ["app", "net"]
    stats = await data_of(orch, "/rollback/statistics")
    assert stats["total_rollbacks"] == 1
    snaps = await data_of(orch, f"/state/workflows/{done['batch_id']}/snapshots")
    assert snaps[-1]["details"]["rollback"]["rollback_id"] == rb["rollback_id"]


async def test_on_failure_rollback_also_undoes_the_failed_operation(orch):
    done = await run(
        orch,
        servers("net"),
        servers("db", ["net"], **FAIL_ONCE, on_failure="rollback"),
        rollback_enabled=True,
    )
    assert done["status"] == "Failed"
    assert done["rollback"]["operations_executed"] == 2
    assert await statuses(orch, done["batch_id"]) == {"net": "RolledBack", "db": "RolledBack"}
    assert await rollback_order(orch, done["batch_id"]) == ["db", "net"]


async def test_no_automatic_rollback_without_rollback_enabled(orch):
    done = await run(orch, servers("net"), servers("db", ["net"], **FAIL_ONCE))
    assert done["status"] == "Failed"
    assert done["rollback"] is None
    assert await statuses(orch, done["batch_id"]) == {"net": "Completed", "db": "Failed"}
    assert await inventory_names(orch) == {"net-srv"}


async def test_continue_failures_do_not_trigger_rollback(orch):
    done = await run(
        orch, servers("net"), servers("extra", **FAIL_ONCE, on_failure="continue"), rollback_enabled=True
    )
    assert done["status"] == "Failed"
    assert done["rollback"] is None
    assert (await statuses(orch, done["batch_id"]))["net"] == "Completed"


async def test_automatic_rollback_reports_failed_undos(orch):
    done = await run(
        orch,
        servers("net", simulate={"fail_rollback": True}),
        servers("db", ["net"], **FAIL_ONCE),
        rollback_enabled=True,
    )
    assert done["status"] == "Failed"
    assert done["rollback"]["operations_executed"] == 0
    assert done["rollback"]["operations_failed"] == 1
    b = {o["id"]: o for o in done["operations"]}
    assert b["net"]["status"] == "Failed"
    assert "rollback failed" in b["net"]["error"]


async def test_cancelled_batch_is_not_rolled_back(orch):
    data = await submit(
        orch, batch(servers("net"), op("slow", ["net"], simulate={"latency_s": 30}), rollback_enabled=True)
    )
    wid = data["batch_id"]
    await wait_batch(
        orch,
        wid,
        until=lambda b: any(o["id"] == "slow" and o["status"] == "Running" for o in b["operations"]),
    )
    assert (await orch.post(f"/batch/operations/{wid}/cancel")).status == 200
    b = await data_of(orch, f"/batch/operations/{wid}")
    assert b["status"] == "Cancelled"
    assert b["rollback"] is None
    assert (await statuses(orch, wid))["net"] == "Completed"


async def test_rollback_to_a_checkpoint_can_be_scoped_to_one_batch(orch):
    cid = await checkpoint(orch, "before both")
    first = await run(orch, servers("a"))
    second = await run(orch, servers("b"))
    result = await rollback(orch, {"checkpoint_id": cid, "workflow_id": first["batch_id"]})
    assert result["operations_executed"] == 1
    assert await statuses(orch, first["batch_id"]) == {"a": "RolledBack"}
    assert await statuses(orch, second["batch_id"]) == {"b": "Completed"}
