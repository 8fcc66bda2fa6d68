"""``GET /tasks`` and ``GET /tasks/{id}`` through real HTTP on the embedded store."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import pytest

from tests.helpers.batches import batch, command, op, submit
from tests.helpers.orchestrator_api import expect_error, fields_of, run

TASK_KEYS = {
    "id",
    "name",
    "command",
    "args",
    "dependencies",
    "status",
    "created_at",
    "started_at",
    "completed_at",
    "output",
    "error",
}
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def parse_ts(value: str) -> datetime:
    assert ISO_Z.match(value), value
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def get_tasks(client: Any, **params: Any) -> tuple[Any, list[dict[str, Any]]]:
    resp = await client.get("/tasks", params={k: str(v) for k, v in params.items()})
    doc = await resp.json()
    assert resp.status == 200, doc
    assert doc["success"] is True
    return resp, doc["data"]


# -- list -------------------------------------------------------------------------------


async def test_tasks_empty_list_has_pagination_headers(orch):
    resp, data = await get_tasks(orch)
    assert data == []
    assert resp.headers["X-Total-Count"] == "0"
    assert resp.headers["X-Limit"] == "50"
    assert resp.headers["X-Offset"] == "0"
    assert "Link" not in resp.headers


async def test_every_operation_of_a_batch_is_a_task(orch):
    done = await run(orch, op("a"), op("b", ["a"]), op("c", ["a", "b"]))
    assert done["status"] == "Completed"
    _, tasks = await get_tasks(orch)
    assert len(tasks) == 3
    by_name = {t["name"]: t for t in tasks}
    assert set(by_name) == {"a", "b", "c"}
    for t in tasks:
        assert TASK_KEYS <= set(t), set(t)
        assert t["status"] == "Completed"
        assert t["workflow_id"] == done["batch_id"]
        assert t["error"] is None
    # dependencies are task ids, not operation names
    assert by_name["a"]["dependencies"] == []
    assert by_name["b"]["dependencies"] == [by_name["a"]["id"]]
    assert set(by_name["c"]["dependencies"]) == {by_name["a"]["id"], by_name["b"]["id"]}
    # the task ids are the ones the batch reports
    assert {o["id"]: o["task_id"] for o in done["operations"]} == {n: t["id"] for n, t in by_name.items()}


async def test_task_list_and_detail_agree(orch):
    await run(orch, op("a"), op("b"))
    _, tasks = await get_tasks(orch)
    for t in tasks:
        resp = await orch.get(f"/tasks/{t['id']}")
        doc = await resp.json()
        assert resp.status == 200, doc
        assert doc["success"] is True
        assert doc["data"] == t


async def test_filter_by_status(orch):
    await run(
        orch,
        op("good"),
        op("bad", simulate={"fail_always": True}, retry={"max_attempts": 1}, on_failure="continue"),
        op("after_bad", ["bad"]),
    )
    _, completed = await get_tasks(orch, status="Completed")
    _, failed = await get_tasks(orch, status="Failed")
    _, cancelled = await get_tasks(orch, status="Cancelled")
    _, running = await get_tasks(orch, status="Running")
    assert [t["name"] for t in completed] == ["good"]
    assert [t["name"] for t in failed] == ["bad"]
    assert [t["name"] for t in cancelled] == ["after_bad"]
    assert running == []
    resp, _ = await get_tasks(orch, status="Failed")
    assert resp.headers["X-Total-Count"] == "1"


async def test_filter_by_workflow_id(orch):
    first = await run(orch, op("a"), op("b"))
    second = await run(orch, op("x"))
    resp, tasks = await get_tasks(orch, workflow_id=first["batch_id"])
    assert sorted(t["name"] for t in tasks) == ["a", "b"]
    assert resp.headers["X-Total-Count"] == "2"
    _, tasks = await get_tasks(orch, workflow_id=second["batch_id"])
    assert [t["name"] for t in tasks] == ["x"]
    _, tasks = await get_tasks(orch, workflow_id=second["batch_id"], status="Failed")
    assert tasks == []
    _, tasks = await get_tasks(orch, workflow_id="no-such-workflow")
    assert tasks == []


async def test_limit_offset_and_link_headers(orch):
    await run(orch, *(op(f"op{i}") for i in range(5)))
    _, everything = await get_tasks(orch)
    assert len(everything) == 5
    all_ids = [t["id"] for t in everything]

    resp, page1 = await get_tasks(orch, limit=2)
    assert resp.headers["X-Total-Count"] == "5"
    assert resp.headers["X-Limit"] == "2"
    assert resp.headers["X-Offset"] == "0"
    assert [t["id"] for t in page1] == all_ids[:2]
    link = resp.headers["Link"]
    assert 'rel="next"' in link and 'rel="prev"' not in link
    nxt = re.search(r'<([^>]+)>; rel="next"', link)
    assert nxt is not None
    assert "cursor=" in nxt.group(1) and "limit=2" in nxt.group(1) and "offset" not in nxt.group(1)

    # following the next link (a cursor) gives the next page
    resp = await orch.get(nxt.group(1))
    assert resp.status == 200
    page2 = (await resp.json())["data"]
    assert [t["id"] for t in page2] == all_ids[2:4]
    assert resp.headers["X-Offset"] == "0"
    assert 'rel="next"' in resp.headers["Link"]

    # offsets still work as documented, with a previous link
    resp, by_offset = await get_tasks(orch, limit=2, offset=2)
    assert [t["id"] for t in by_offset] == all_ids[2:4]
    assert resp.headers["X-Offset"] == "2"
    link = resp.headers["Link"]
    assert 'rel="next"' in link and 'rel="prev"' in link

    resp, page3 = await get_tasks(orch, limit=2, offset=4)
    assert [t["id"] for t in page3] == all_ids[4:]
    link = resp.headers["Link"]
    assert 'rel="prev"' in link and 'rel="next"' not in link
    prev = re.search(r'<([^>]+)>; rel="prev"', link)
    assert prev is not None and "offset=2" in prev.group(1)

    resp, beyond = await get_tasks(orch, limit=2, offset=10)
    assert beyond == []
    assert resp.headers["X-Total-Count"] == "5"


async def test_filters_survive_in_link_header(orch):
    await run(orch, *(op(f"op{i}") for i in range(3)))
    resp, page = await get_tasks(orch, status="Completed", limit=1)
    assert len(page) == 1
    assert "status=Completed" in resp.headers["Link"]


async def test_limit_bounds(orch):
    await run(orch, op("a"))
    resp, data = await get_tasks(orch, limit=1000)
    assert resp.headers["X-Limit"] == "1000"
    assert len(data) == 1


@pytest.mark.parametrize(
    "params, field",
    [
        ({"limit": "1001"}, "limit"),
        ({"limit": "0"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"limit": "1.5"}, "limit"),
        ({"offset": "-1"}, "offset"),
        ({"offset": "x"}, "offset"),
    ],
)
async def test_bad_pagination_is_422_naming_the_field(orch, params, field):
    doc = await expect_error(await orch.get("/tasks", params=params), 422)
    assert doc["code"] == "validation_failed"
    assert field in fields_of(doc)
    assert field in doc["error"]


@pytest.mark.parametrize("status", ["Done", "completed", "RUNNING", ""])
async def test_unknown_status_is_422(orch, status):
    doc = await expect_error(await orch.get("/tasks", params={"status": status}), 422)
    assert "status" in fields_of(doc)
    assert "Pending" in doc["error"]  # says which statuses exist


async def test_unknown_query_parameter_is_422(orch):
    doc = await expect_error(await orch.get("/tasks", params={"colour": "blue"}), 422)
    assert "colour" in fields_of(doc)


# -- one task ---------------------------------------------------------------------------


async def test_task_detail_shape_of_completed_task(orch):
    done = await run(
        orch,
        op(
            "create_servers",
            server_configs=[
                {"name": "web-01", "plan": "1xCPU-2 GB", "zone": "de-fra1"},
            ],
        ),
    )
    task_id = done["operations"][0]["task_id"]
    resp = await orch.get(f"/tasks/{task_id}")
    doc = await resp.json()
    assert resp.status == 200, doc
    assert doc["success"] is True
    t = doc["data"]
    assert TASK_KEYS <= set(t)
    assert t["id"] == task_id
    assert t["name"] == "create_servers"
    assert t["status"] == "Completed"
    assert isinstance(t["command"], str) and t["command"]
    assert isinstance(t["args"], list) and all(isinstance(a, str) for a in t["args"])
    assert "web-01" in t["args"]
    assert t["dependencies"] == []
    created, started, completed = (
        parse_ts(t["created_at"]),
        parse_ts(t["started_at"]),
        parse_ts(t["completed_at"]),
    )
    assert created <= started <= completed
    assert isinstance(t["output"], str) and "web-01" in t["output"]
    assert t["error"] is None
    assert t["attempt"] == 1
    assert t["progress"] == 100.0


async def test_task_detail_of_command_task(orch):
    done = await run(
        orch,
        command("echo", ["echo", "hello", "world"]),
    )
    assert done["status"] == "Completed", done
    t = (await (await orch.get(f"/tasks/{done['operations'][0]['task_id']}")).json())["data"]
    assert t["command"] == "echo"
    assert t["args"] == ["hello", "world"]
    assert t["output"].strip() == "hello world"
    assert t["provider"] == "command"


async def test_task_detail_of_failed_task(orch):
    done = await run(
        orch, op("broken", simulate={"fail_always": True}, retry={"max_attempts": 2, "initial_delay_s": 0})
    )
    assert done["status"] == "Failed"
    t = (await (await orch.get(f"/tasks/{done['operations'][0]['task_id']}")).json())["data"]
    assert t["status"] == "Failed"
    assert "simulated failure" in t["error"]
    assert t["attempt"] == 2
    assert t["completed_at"] is not None


async def test_task_of_pending_operation_has_null_timestamps(orch):
    data = await submit(
        orch,
        batch(
            op("slow", simulate={"latency_s": 30}),
            op("later", ["slow"]),
        ),
    )
    later = next(o for o in data["operations"] if o["id"] == "later")
    t = (await (await orch.get(f"/tasks/{later['task_id']}")).json())["data"]
    assert t["status"] == "Pending"
    assert t["started_at"] is None
    assert t["completed_at"] is None
    assert t["output"] is None
    assert t["error"] is None
    parse_ts(t["created_at"])
    resp = await orch.post(f"/batch/operations/{data['batch_id']}/cancel")
    assert resp.status == 200


@pytest.mark.parametrize("task_id", ["no-such-task", "00000000-0000-0000-0000-000000000000"])
async def test_unknown_task_is_404(orch, task_id):
    doc = await expect_error(await orch.get(f"/tasks/{task_id}"), 404)
    assert doc["code"] == "not_found"
    assert task_id in doc["error"]


async def test_tasks_of_newer_batches_come_first(orch):
    await run(orch, op("old1"), op("old2"))
    await run(orch, op("new1"))
    _, tasks = await get_tasks(orch)
    assert tasks[0]["name"] == "new1"
    assert sorted(t["name"] for t in tasks[1:]) == ["old1", "old2"]
