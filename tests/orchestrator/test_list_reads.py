"""How list pages read the store (``orchestrator/task_repository.py``,
``orchestrator/list_repository.py``): one batch's operations by page number while all
its rows are there, by range once retention pruned some; every offset and cursor either
side of a page boundary; the batch list's operations read with its counters; rows decoded
one at a time from a page's blob."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import cbor2
import pytest

from orchestrator.keys import WORKFLOWS
from orchestrator.repository import Repository
from orchestrator.task_repository import PAGE_SIZE, _rows
from shared.store.codec import pack
from shared.store.pages import ROWS, page_rows
from shared.web.keys import STORE
from tests.helpers.orchestrator_api import data_of, run
from tests.helpers.pages import next_link, walk

N = 250  # three pages: 100, 100, 50


async def names(orch: Any, **params: Any) -> list[str]:
    return [t["name"] for t in await data_of(orch, "/tasks", **params)]


async def prune_first_page(orch: Any, batch_id: str) -> None:
    """What retention does to a finished workflow's first chunk: its first page goes,
    its counters drop."""
    row = (
        await orch.app[STORE].query(
            "SELECT submitted_seq FROM type::thing('workflow', $id)", {"id": batch_id}
        )
    )[0]
    await orch.app[STORE].write(Repository.prune_tasks(batch_id, int(row["submitted_seq"]), PAGE_SIZE))


async def test_one_batch_s_operations_by_offset_and_cursor_either_side_of_page_boundaries(orch: Any) -> None:
    big = (await run(orch, *({"id": f"op{i:03d}", "type": "server_batch"} for i in range(N))))["batch_id"]
    await run(orch, {"id": "newer", "type": "server_batch"})
    every = [f"op{i:03d}" for i in range(N)]
    for offset in (0, 1, 49, 99, 100, 101, 150, 199, 200, 249, 250, 400):
        for limit in (1, 50, 100, 101):
            assert (
                await names(orch, workflow_id=big, offset=offset, limit=limit)
                == every[offset : offset + limit]
            )
    for limit in (1, 49, 50, 99, 100, 101, 250):
        assert [t["name"] for t in await walk(orch, "/tasks", limit=limit, workflow_id=big)] == every
    # a cursor and an offset together: the offset counts after the cursor
    resp = await orch.get("/tasks", params={"workflow_id": big, "limit": "60"})
    cursor = parse_qs(urlsplit(next_link(resp.headers) or "").query)["cursor"][0]
    assert await names(orch, workflow_id=big, cursor=cursor, offset=45, limit=10) == every[105:115]


async def test_a_batch_with_pruned_rows_is_paged_by_range_and_counted_exactly(orch: Any) -> None:
    big = (await run(orch, *({"id": f"op{i:03d}", "type": "server_batch"} for i in range(N))))["batch_id"]
    await prune_first_page(orch, big)
    left = [f"op{i:03d}" for i in range(PAGE_SIZE, N)]
    resp = await orch.get("/tasks", params={"workflow_id": big, "limit": "1"})
    assert resp.headers["X-Total-Count"] == str(len(left))
    for offset in (0, 1, 99, 100, 149, 150):
        assert await names(orch, workflow_id=big, offset=offset, limit=50) == left[offset : offset + 50]
    assert [t["name"] for t in await walk(orch, "/tasks", limit=40, workflow_id=big)] == left
    assert [t["name"] for t in await walk(orch, "/tasks", limit=40)] == left


async def test_the_full_batch_list_lists_a_pruned_batch_s_remaining_operations(orch: Any) -> None:
    done = await run(orch, *({"id": f"op{i:03d}", "type": "server_batch"} for i in range(N - PAGE_SIZE)))
    await prune_first_page(orch, done["batch_id"])  # 150 operations, 50 rows left: now listed
    (item,) = await data_of(orch, "/batch/operations")
    assert item["total_operations"] == 50 and item["counts"] == {"Completed": 50}
    assert [o["id"] for o in item["operations"]] == [f"op{i:03d}" for i in range(PAGE_SIZE, N - PAGE_SIZE)]


async def test_listed_operations_are_those_each_batch_holds(orch: Any) -> None:
    sizes = (3, 1, 40, 1)
    ids = [
        (await run(orch, *({"id": f"b{b}op{i}", "type": "server_batch"} for i in range(n))))["batch_id"]
        for b, n in enumerate(sizes)
    ]
    page = {b["batch_id"]: b for b in await data_of(orch, "/batch/operations")}
    for b, (wid, n) in enumerate(zip(ids, sizes, strict=True)):
        assert [o["id"] for o in page[wid]["operations"]] == [f"b{b}op{i}" for i in range(n)]
    listing = await orch.app[WORKFLOWS].batches(status=None, limit=2, offset=1, cursor=None, full=True)
    assert [s.workflow.id for s in listing.items] == ids[::-1][1:3] and listing.total == len(sizes)
    assert [len(s.tasks or []) for s in listing.items] == [40, 1]


@pytest.mark.parametrize("n", [0, 1, 23, 24, 100, 255, 256, 300])
def test_rows_are_decoded_one_at_a_time_as_the_whole_blob_is(n: int) -> None:
    rows = [{"id": f"t{i}", "index": i, "status": "Completed", "args": ["a", i]} for i in range(n)]
    for blob in (pack(rows), cbor2.dumps(rows)):  # deflated, and plain CBOR (before pack deflated)
        record = {ROWS: blob}
        assert list(_rows(record)) == page_rows(record) == rows
        taken = _rows(record)
        assert [next(taken) for _ in range(min(n, 3))] == rows[:3]
    assert list(_rows({})) == []
