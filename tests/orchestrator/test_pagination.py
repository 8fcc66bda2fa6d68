"""Cursor and offset paging of the orchestrator's lists over real HTTP: ``/tasks`` (all,
by status, one batch's operations), ``/batch/operations`` (with counts by status and
operations only for small batches) and ``/rollback/checkpoints``; rows inserted between
pages are neither skipped nor repeated."""

from __future__ import annotations

from typing import Any

from tests.helpers.batches import batch, op, submit
from tests.helpers.orchestrator_api import data_of, run
from tests.helpers.pages import refused_cursor, walk


async def test_tasks_by_cursor_with_batches_submitted_between_pages(orch: Any) -> None:
    first = await run(orch, *(op(f"a{i}") for i in range(7)))
    second = await run(orch, *(op(f"b{i}") for i in range(6)))
    expected = [t["id"] for t in await data_of(orch, "/tasks", limit=1000)]
    assert len(expected) == 13

    async def more(page: int) -> None:
        await run(orch, op(f"late{page}"))  # newer: listed before the cursor, never in this walk

    seen = await walk(orch, "/tasks", limit=4, between=more)
    assert [t["id"] for t in seen] == expected
    # newest batch first, each in submission order
    assert [t["name"] for t in seen[:6]] == [f"b{i}" for i in range(6)]
    assert {t["workflow_id"] for t in seen[6:]} == {first["batch_id"]} and second


async def test_one_batch_s_operations_are_paged_by_workflow_id(orch: Any) -> None:
    big = await run(orch, *(op(f"op{i:03d}") for i in range(130)), parallel_limit=50)
    await run(orch, op("other"))
    seen = await walk(orch, "/tasks", limit=50, workflow_id=big["batch_id"])
    assert [t["name"] for t in seen] == [f"op{i:03d}" for i in range(130)]
    resp = await orch.get("/tasks", params={"workflow_id": big["batch_id"], "limit": "1"})
    assert resp.headers["X-Total-Count"] == "130"
    resp = await orch.get("/tasks", params={"workflow_id": "no-such-batch"})
    assert resp.status == 200 and resp.headers["X-Total-Count"] == "0"


async def test_a_status_filter_walks_and_counts(orch: Any) -> None:
    await run(orch, op("ok1"), op("ok2"))
    await run(orch, op("bad", simulate={"fail_attempts": 5}, retry={"max_attempts": 1}))
    failed = await walk(orch, "/tasks", limit=1, status="Failed")
    assert [t["name"] for t in failed] == ["bad"]
    resp = await orch.get("/tasks", params={"status": "Completed", "limit": "1"})
    assert resp.headers["X-Total-Count"] == "2" and 'rel="next"' in resp.headers["Link"]
    assert "status=Completed" in resp.headers["Link"]


async def test_offsets_still_page(orch: Any) -> None:
    await run(orch, *(op(f"a{i}") for i in range(5)))
    everything = [t["id"] for t in await data_of(orch, "/tasks")]
    page = await data_of(orch, "/tasks", limit=2, offset=3)
    assert [t["id"] for t in page] == everything[3:5]


async def test_bad_cursors_are_refused_naming_the_field(orch: Any) -> None:
    for path in ("/tasks", "/batch/operations", "/rollback/checkpoints"):
        await refused_cursor(orch, path)


async def test_listed_batches_carry_counts_and_only_small_batches_their_operations(orch: Any) -> None:
    small = await run(orch, op("a"), op("b", simulate={"fail_attempts": 5}, retry={"max_attempts": 1}))
    big = await run(orch, *(op(f"op{i:03d}") for i in range(101)), parallel_limit=50)
    listed = {b["batch_id"]: b for b in await data_of(orch, "/batch/operations")}
    s, b = listed[small["batch_id"]], listed[big["batch_id"]]
    assert s["counts"] == {"Completed": 1, "Failed": 1} and s["total_operations"] == 2
    assert [o["id"] for o in s["operations"]] == ["a", "b"]
    assert b["counts"] == {"Completed": 101} and b["total_operations"] == 101
    assert "operations" not in b and b["progress"] == 100.0
    assert {"batch_id", "name", "status", "created_at"} <= set(b)
    summary = await data_of(orch, "/batch/operations", view="summary")
    assert all("operations" not in x for x in summary)
    resp = await orch.get("/batch/operations", params={"view": "everything"})
    assert resp.status == 422


async def test_batches_and_checkpoints_by_cursor_with_inserts_between_pages(orch: Any) -> None:
    for i in range(5):
        await run(orch, op(f"x{i}"))
    batches = [b["batch_id"] for b in await data_of(orch, "/batch/operations")]

    async def more(page: int) -> None:
        await submit(orch, batch(op(f"late{page}")))

    assert [b["batch_id"] for b in await walk(orch, "/batch/operations", limit=2, between=more)] == batches
    checkpoints = [c["id"] for c in await data_of(orch, "/rollback/checkpoints")]
    assert [c["id"] for c in await walk(orch, "/rollback/checkpoints", limit=2, between=more)] == checkpoints
    resp = await orch.get("/batch/operations", params={"limit": "1"})
    assert int(resp.headers["X-Total-Count"]) >= 5
