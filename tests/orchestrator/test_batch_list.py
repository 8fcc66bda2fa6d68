"""``GET /batch/operations``: every listed batch carries its counts by status; the full
view (the default) adds the operations of small batches only, within one budget per
page (``LIST_OPERATIONS_MAX``, ``PAGE_OPERATIONS_MAX`` in ``orchestrator/workflows.py``),
so a page costs a bounded amount whatever its batches hold; ``view=summary`` lists none."""

from __future__ import annotations

from typing import Any

from orchestrator.workflows import LIST_OPERATIONS_MAX, PAGE_OPERATIONS_MAX
from tests.helpers.batches import op
from tests.helpers.orchestrator_api import data_of, run

# Batches that each fit the per-batch limit, two of which do not fit one page's budget.
SIZE = PAGE_OPERATIONS_MAX // 2 + 1
SUMMARY_FIELDS = {"batch_id", "name", "status", "created_at", "progress", "counts", "total_operations"}


async def batches_of(client: Any, n: int, size: int) -> list[str]:
    return [
        (await run(client, *(op(f"op{i}") for i in range(size)), parallel_limit=50))["batch_id"]
        for _ in range(n)
    ]


async def test_the_full_view_lists_operations_within_one_budget_per_page(orch: Any) -> None:
    assert SIZE <= LIST_OPERATIONS_MAX
    ids = await batches_of(orch, 3, SIZE)
    for view in ({}, {"view": "full"}):  # full is the default
        page = await data_of(orch, "/batch/operations", **view)
        assert [b["batch_id"] for b in page] == ids[::-1]  # newest first
        listed = [b for b in page if "operations" in b]
        assert [b["batch_id"] for b in listed] == [ids[-1]]  # the next one would pass the budget
        assert sum(len(b["operations"]) for b in page if "operations" in b) <= PAGE_OPERATIONS_MAX
        for b in page:
            assert SUMMARY_FIELDS <= set(b) and b["total_operations"] == SIZE
            assert b["counts"] == {"Completed": SIZE} and b["progress"] == 100.0
    # a page that starts past the listed batch lists the next one's operations
    second = await data_of(orch, "/batch/operations", offset=1)
    assert [b["batch_id"] for b in second if "operations" in b] == [ids[1]]


async def test_the_summary_view_lists_no_operation_and_answers_the_same_batches(orch: Any) -> None:
    ids = await batches_of(orch, 2, 3)
    summary = await data_of(orch, "/batch/operations", view="summary")
    full = await data_of(orch, "/batch/operations")
    assert all("operations" not in b for b in summary)
    assert [b["batch_id"] for b in summary] == [b["batch_id"] for b in full] == ids[::-1]
    for s, f in zip(summary, full, strict=True):
        assert s == {k: v for k, v in f.items() if k != "operations"}


async def test_a_listed_item_is_bounded_whatever_its_batch_holds(orch: Any) -> None:
    small = (await batches_of(orch, 1, 2))[0]
    big = (await batches_of(orch, 1, LIST_OPERATIONS_MAX + 1))[0]
    resp = await orch.get("/batch/operations", params={"limit": "1000"})
    body = await resp.read()
    page = (await resp.json())["data"]
    by_id = {b["batch_id"]: b for b in page}
    assert "operations" not in by_id[big] and by_id[big]["total_operations"] == LIST_OPERATIONS_MAX + 1
    assert [o["id"] for o in by_id[small]["operations"]] == ["op0", "op1"]
    # a counted item is the batch's fields and its counts: the same size for 101 operations as for 2
    assert len(body) < 3_000
