"""Task rows in pages of 100 (``orchestrator/task_repository.py``) over real HTTP and the real
embedded store: ids that name their page, lists that cross page boundaries with
cursors, offsets and a status filter, and a store that holds pages, not rows."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from orchestrator.app import create_app
from orchestrator.ids import MAX_INDEX, locate, task_id, task_ids
from orchestrator.task_repository import PAGE_SIZE, end_of_page, page_id, page_of_key
from shared.settings import Settings
from shared.store.keyset import encode_cursor
from shared.store.store import Store
from shared.web.keys import STORE
from tests.helpers.orchestrator_api import data_of, run
from tests.helpers.pages import walk


def test_a_task_id_carries_its_workflows_position_and_its_index() -> None:
    for seq, index in ((1, 0), (123_456_789, 99), (2**48 - 1, MAX_INDEX)):
        tid = task_id(seq, index)
        assert tid is not None and uuid.UUID(tid).version == 8
        assert locate(tid) == (seq, index)
    assert task_id(1, 0) != task_id(1, 0)  # random bits besides
    assert task_id(2**48, 0) is None and task_id(1, MAX_INDEX + 1) is None


@pytest.mark.parametrize("seq", [0, 1, 123_456_789, 2**48 - 1])
def test_a_submissions_task_ids_are_laid_out_as_one_at_a_time(seq: int) -> None:
    """Made together from one draw: the same layout as :func:`task_id` (a UUID of
    version 8 and the RFC variant, as text ``uuid`` writes it) and all different."""
    ids = task_ids(seq, 3000)
    assert ids is not None and len(set(ids)) == 3000
    for index, tid in enumerate(ids):
        parsed = uuid.UUID(tid)
        assert (str(parsed), parsed.version, parsed.variant) == (tid, 8, uuid.RFC_4122)
        assert locate(tid) == (seq, index)
    assert {tid[19] for tid in ids} == set("89ab")  # the variant's two random bits vary
    assert task_ids(2**48, 1) is None and task_ids(1, MAX_INDEX + 2) is None


@pytest.mark.parametrize(
    "text",
    [str(uuid.uuid4()), "", "x" * 36, "not-a-uuid", str(uuid.UUID(int=1 << 76)), "0" * 400, "../../etc"],
)
def test_any_other_id_names_no_page(text: str) -> None:
    assert locate(text) is None


def test_page_ids_sort_newest_workflow_first_then_by_index() -> None:
    assert page_id(10, 0) < page_id(10, PAGE_SIZE) < page_id(9, 0)
    key = "9223372036854775797" + f"{250:019d}" + ".some-task"
    assert page_of_key(key) == page_id(10, 250) == page_id(10, 200)
    assert page_of_key(end_of_page(page_id(10, 250))) == page_id(10, 250)
    assert key < end_of_page(page_id(10, 250)) < "9223372036854775797" + f"{300:019d}"


async def test_a_batch_of_250_is_three_page_records_and_no_row_records(orch: Any) -> None:
    done = await run(orch, *(({"id": f"op{i:03d}", "type": "server_batch"}) for i in range(250)))
    store: Store = orch.app[STORE]
    pages = await store.query("SELECT VALUE n FROM task_page")
    assert sorted(pages) == [50, 100, 100]
    assert await store.query("SELECT * FROM task") == []
    tasks = await walk(orch, "/tasks", limit=33, workflow_id=done["batch_id"])
    assert [t["name"] for t in tasks] == [f"op{i:03d}" for i in range(250)]
    for t in (tasks[0], tasks[99], tasks[100], tasks[249]):  # either side of page boundaries
        assert (await data_of(orch, f"/tasks/{t['id']}"))["name"] == t["name"]
    offset = await data_of(orch, "/tasks", workflow_id=done["batch_id"], offset=95, limit=10)
    assert [t["name"] for t in offset] == [f"op{i:03d}" for i in range(95, 105)]


async def test_unknown_and_lookalike_task_ids_are_404(orch: Any) -> None:
    done = await run(orch, {"id": "a", "type": "server_batch"})
    [real] = await data_of(orch, "/tasks", workflow_id=done["batch_id"])
    where = locate(real["id"])
    assert where is not None
    lookalike = task_id(*where)  # same page, another task
    for tid in (lookalike, str(uuid.uuid4()), task_id(where[0] + 1000, 0)):
        resp = await orch.get(f"/tasks/{tid}")
        assert resp.status == 404, await resp.text()


async def test_a_single_purpose_workflows_task_is_found_by_its_id(orch: Any) -> None:
    resp = await orch.post(
        "/workflows/servers/create", json={"infra": "staging", "servers": [{"name": "db-01"}]}
    )
    assert resp.status == 201, await resp.text()
    tid = (await resp.json())["data"]
    assert locate(tid) is None  # the workflow's own id
    task = await data_of(orch, f"/tasks/{tid}")
    assert task["id"] == tid


async def test_a_status_filter_over_many_pages_continues_after_its_budget(
    aiohttp_client: Any, settings: Settings
) -> None:
    """One failure in each of three batches among six of 100 (a page each), a scan
    budget of 200 rows a page: each walk stops at its budget, returns what it found and
    a cursor past the last page it read; following them finds every failure once."""
    client = await aiohttp_client(create_app(settings.model_copy(update={"list_scan_budget": 200})))
    for b in range(6):
        ops: list[dict[str, Any]] = [{"id": f"b{b}op{i:03d}", "type": "server_batch"} for i in range(100)]
        if b in (0, 2, 5):
            ops[37] = {**ops[37], "simulate": {"fail_attempts": 5}, "retry": {"max_attempts": 1}}
        await run(client, *ops, parallel_limit=50)
    failed = await walk(client, "/tasks", limit=10, status="Failed")
    assert [t["name"] for t in failed] == ["b5op037", "b2op037", "b0op037"]  # newest batch first
    resp = await client.get("/tasks", params={"status": "Failed", "limit": "10"})
    assert resp.headers["X-Total-Count"] == "3"


async def test_a_cursor_of_another_list_is_refused_naming_the_field(orch: Any) -> None:
    """A well-formed cursor that is not a task's list key (another list's, or made up)."""
    for key in ("9223372036854775806.checkpoint-id", "x" * 40):
        resp = await orch.get("/tasks", params={"cursor": encode_cursor(key)})
        doc = await resp.json()
        assert resp.status == 422, doc
        assert [f["field"] for f in doc["details"]["fields"]] == ["cursor"]
