"""Finished batches' documents kept in memory (``FinishedDocuments`` in
``orchestrator/workflows.py``): a repeated read is a lookup, and whatever changes the
batch — a rollback, a restore, an event of its workflow — drops what was kept, so the
next read shows the change; the products stay within their byte budget and are not
kept past the age at which retention may prune their workflow."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from orchestrator.app import create_app
from orchestrator.events import EventType
from orchestrator.keys import ENGINE, WORKFLOWS
from orchestrator.records import Workflow
from orchestrator.states import WorkflowStatus
from orchestrator.workflows import FinishedDocuments
from shared.events.bus import Event
from shared.settings import Settings
from tests.helpers.batches import op
from tests.helpers.orchestrator_api import data_of, run

NOW = datetime.now(UTC)


def finished(wid: str = "w", completed_at: datetime | None = NOW) -> Workflow:
    return Workflow(id=wid, name="n", status=WorkflowStatus.COMPLETED, completed_at=completed_at)


async def reads(client: Any, wid: str) -> dict[str, Any]:
    """The document, its summary and the progress of one batch."""
    return {
        "document": await data_of(client, f"/batch/operations/{wid}"),
        "summary": await data_of(client, f"/batch/operations/{wid}", view="summary"),
        "progress": await data_of(client, f"/state/workflows/{wid}/progress"),
    }


async def test_a_finished_batch_is_encoded_once_and_then_answered_from_memory(orch: Any) -> None:
    done = await run(orch, op("a"), op("b", ["a"]))
    wid = done["batch_id"]
    cache = orch.app[WORKFLOWS].finished
    first = await orch.get(f"/batch/operations/{wid}")
    kept = cache.get(wid, ("document", tuple(done)))
    assert kept is not None and cache.size >= len(kept)
    again = await asyncio.gather(*(orch.get(f"/batch/operations/{wid}") for _ in range(3)))
    assert {await r.read() for r in again} == {await first.read()}
    assert (await first.json())["data"] == done


async def test_a_rolled_back_finished_batch_reads_its_new_statuses(orch: Any) -> None:
    done = await run(orch, op("a"), op("b", ["a"]))
    wid = done["batch_id"]
    before = await reads(orch, wid)
    assert before["summary"]["counts"]["Completed"] == 2 and before["document"]["rollback"] is None
    resp = await orch.post("/rollback/execute", json={"operation_ids": ["a"], "workflow_id": wid})
    assert resp.status == 200, await resp.text()
    after = await reads(orch, wid)
    assert {o["id"]: o["status"] for o in after["document"]["operations"]} == {
        "a": "RolledBack",
        "b": "RolledBack",
    }
    assert after["summary"]["counts"]["RolledBack"] == 2 and after["summary"]["counts"]["Completed"] == 0
    # recorded on the workflow after the rollback's last event: not a stale copy either
    assert after["document"]["rollback"]["operations_executed"] == 2
    assert after["progress"]["status"] == before["progress"]["status"]


async def test_a_restore_drops_what_was_kept_and_the_batch_reads_as_restored(orch: Any) -> None:
    resp = await orch.post("/rollback/checkpoints", json={"name": "before"})
    before = (await resp.json())["data"]
    done = await run(orch, op("a"))
    wid = done["batch_id"]
    assert (await reads(orch, wid))["document"]["status"] == "Completed"
    resp = await orch.post(f"/rollback/restore/{before}")
    assert resp.status == 200, await resp.text()
    after = await reads(orch, wid)
    assert after["document"]["status"] == after["summary"]["status"] == "Cancelled"
    assert [o["status"] for o in after["document"]["operations"]] == ["Cancelled"]


async def test_kept_documents_stay_within_their_byte_budget(aiohttp_client: Any, settings: Settings) -> None:
    client = await aiohttp_client(create_app(settings.model_copy(update={"document_cache_bytes": 4_000})))
    cache = client.app[WORKFLOWS].finished
    ids = [(await run(client, *(op(f"op{i}") for i in range(3))))["batch_id"] for _ in range(4)]
    for wid in ids:
        await data_of(client, f"/batch/operations/{wid}")
        assert 0 < cache.size <= 4_000
    key = next(iter(cache._products[ids[-1]].encoded))
    assert cache.get(ids[-1], key) is not None  # the last read is kept, the first dropped
    assert cache.get(ids[0], key) is None
    client = await aiohttp_client(create_app(settings.model_copy(update={"document_cache_bytes": 0})))
    wid = (await run(client, op("a")))["batch_id"]
    await data_of(client, f"/batch/operations/{wid}")
    assert client.app[WORKFLOWS].finished.size == 0  # 0: nothing kept


def test_a_product_built_while_its_workflow_changed_is_answered_not_kept() -> None:
    cache = FinishedDocuments(1_000_000, retention_days=0)
    build = cache.begin("w", spoiled=False)
    cache.on_event(Event(EventType.TASK_STATUS_CHANGED, {"workflow_id": "w", "status": "RolledBack"}))
    cache.keep("w", build, finished(), "k", b"{}")
    cache.end("w", build)
    assert cache.get("w", "k") is None
    busy = cache.begin("w", spoiled=True)  # begun while a rollback or restore held the lock
    cache.keep("w", busy, finished(), "k", b"{}")
    assert cache.get("w", "k") is None
    running = Workflow(id="w", name="n", status=WorkflowStatus.RUNNING)
    cache.keep("w", cache.begin("w", spoiled=False), running, "k", b"{}")
    assert cache.get("w", "k") is None  # only a finished workflow's products are kept


def test_events_drop_their_workflows_and_a_restore_drops_everything() -> None:
    cache = FinishedDocuments(1_000_000, retention_days=0)
    for wid in ("a", "b", "c"):
        cache.keep(wid, cache.begin(wid, spoiled=False), finished(wid), "k", b"[1]")
    cache.on_event(Event(EventType.BATCH_STATUS_CHANGED, {"workflow_id": "a"}))
    cache.on_event(Event(EventType.ROLLBACK_COMPLETED, {"workflow_id": None, "workflow_ids": ["b"]}))
    cache.on_event(Event("UserCreated", {"username": "x"}))  # another service's event: nothing
    assert [cache.get(w, "k") for w in ("a", "b", "c")] == [None, None, b"[1]"]
    cache.on_event(Event(EventType.STATE_RESTORED, {"checkpoint_id": "cp", "records": 3}))
    assert cache.get("c", "k") is None and cache.size == 0


def test_nothing_is_kept_past_the_age_retention_may_prune_it_at() -> None:
    cache = FinishedDocuments(1_000_000, retention_days=30)
    cache.keep("old", cache.begin("old", spoiled=False), finished("old", NOW - timedelta(days=31)), "k", b"1")
    cache.keep("new", cache.begin("new", spoiled=False), finished("new", NOW - timedelta(days=29)), "k", b"1")
    assert cache.get("old", "k") is None and cache.get("new", "k") == b"1"
    cache._products["new"].expires = 0.0  # its 30 days are up
    assert cache.get("new", "k") is None and cache.size == 0


async def test_reads_one_after_the_other_share_one_read_until_the_workflow_changes(
    aiohttp_client: Any, settings: Settings
) -> None:
    client = await aiohttp_client(create_app(settings.model_copy(update={"live_document_max_age_s": 3600.0})))
    wid = (await run(client, op("a")))["batch_id"]
    held = client.app[WORKFLOWS].finished.reads
    client.app[WORKFLOWS].finished.clear()  # what was built as it finished: read the rows
    await data_of(client, f"/batch/operations/{wid}", view="summary")
    shared = held[wid]
    await data_of(client, f"/state/workflows/{wid}/progress")
    assert held[wid] is shared  # the progress came from the same read of the rows
    resp = await client.post("/rollback/execute", json={"operation_ids": ["a"], "workflow_id": wid})
    assert resp.status == 200, await resp.text()
    assert wid not in held or held[wid] is not shared
    progress = await data_of(client, f"/state/workflows/{wid}/progress")
    assert progress["status"] == "Completed" and held[wid] is not shared
    assert (await data_of(client, f"/batch/operations/{wid}"))["operations"][0]["status"] == "RolledBack"


async def test_a_read_while_a_rollback_holds_the_engine_is_neither_shared_nor_kept(orch: Any) -> None:
    wid = (await run(orch, op("a")))["batch_id"]
    service = orch.app[WORKFLOWS]
    service.finished.clear()  # what waiting for the batch read and kept
    async with orch.app[ENGINE].admin_lock:  # as a rollback does until it recorded its summary
        await data_of(orch, f"/batch/operations/{wid}", view="summary")
        assert wid not in service.finished.reads and service.finished.size == 0
    await data_of(orch, f"/batch/operations/{wid}", view="summary")
    assert service.finished.size > 0
