"""Retention (orchestrator/retention.py) on the real store: what is old and finished goes,
in chunks, with the counters exact; what a running workflow, a kept checkpoint or the
audit chain needs stays."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from orchestrator.keys import ENGINE
from orchestrator.retention import Retention
from shared.settings import Settings
from shared.store.writes import Insert, Stmt
from shared.web.keys import SETTINGS, STORE
from shared.webhooks.outbox import delivery_row
from shared.webhooks.repository import WebhookRepository
from tests.helpers.batches import batch, op, submit, wait_batch
from tests.helpers.counters import counter_mismatches
from tests.helpers.orchestrator_api import data_of, run

LATER = timedelta(days=40)  # past the default 30 days


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The app's own retention job off: each test runs its passes itself."""
    return settings.model_copy(update={"retention_days": 0})


def retention(orch: Any, **overrides: Any) -> Retention:
    """A retention of 30 days (the default), 3 rows per chunk so chunks are exercised."""
    update = {"retention_days": 30, "retention_chunk": 3, **overrides}
    return Retention(orch.app[SETTINGS].model_copy(update=update), orch.app[STORE])


async def count(orch: Any, table: str) -> int:
    if table == "task":  # tasks live in pages (orchestrator/task_repository.py)
        rows = await orch.app[STORE].query("SELECT VALUE n FROM task_page")
        return int(sum(rows))
    rows = await orch.app[STORE].query(f"SELECT count() AS n FROM {table} GROUP ALL")
    return int(rows[0]["n"]) if rows else 0


async def test_zero_days_keeps_everything(orch: Any) -> None:
    await run(orch, op("a"))
    pruned = await retention(orch, retention_days=0).run_once(datetime.now(UTC) + 10 * LATER)
    assert not +pruned and await count(orch, "task") == 1


async def test_old_finished_workflows_go_in_chunks_with_exact_counters(orch: Any) -> None:
    for n in range(3):
        await run(orch, *(op(f"op{i}") for i in range(4 + n)))
    audit_before = await count(orch, "audit")
    pruned = await retention(orch).run_once(datetime.now(UTC) + LATER)
    assert pruned["workflow"] == 3 and pruned["task"] == 4 + 5 + 6 and pruned["checkpoint"] == 3
    assert pruned["journal"] > 0
    for table in ("workflow", "task", "snapshot", "checkpoint"):
        assert await count(orch, table) == 0, table
    assert await count(orch, "journal") >= 1  # the newest segment: positions go on from it
    assert await count(orch, "audit") == audit_before
    assert await counter_mismatches(orch.app[STORE]) == []
    stats = await data_of(orch, "/state/statistics")
    assert stats["total_workflows"] == 0 and stats["total_tasks"] == 0
    assert stats["retention"]["days"] == 0  # the app's own job is off in these tests
    assert stats["retention"]["pruned"]["workflow"] == 3 and stats["retention"]["pruned"]["task"] == 15
    # the journal numbering continues: a new batch runs and is recorded after the old ones
    last = orch.app[ENGINE].transitions.last_seq
    done = await run(orch, op("new"))
    journal = await data_of(orch, f"/state/workflows/{done['batch_id']}/journal")
    assert journal and min(e["seq"] for e in journal) > last
    assert await counter_mismatches(orch.app[STORE]) == []


async def test_a_running_workflow_and_what_it_replays_stay(orch: Any) -> None:
    await run(orch, op("old"))
    slow = await submit(orch, batch(op("slow", simulate={"latency_s": 30}), op("next", ["slow"])))
    wid = slow["batch_id"]
    await wait_batch(orch, wid, until=lambda b: b["operations"][0]["status"] == "Running")
    await retention(orch).run_once(datetime.now(UTC) + LATER)
    assert (await data_of(orch, f"/batch/operations/{wid}"))["status"] == "Running"
    assert await count(orch, "task") == 2
    state = await data_of(orch, f"/state/workflows/{wid}/state")
    assert state["status"] == "Running" and set(state["operations"]) == {"slow", "next"}
    assert await counter_mismatches(orch.app[STORE]) == []
    await orch.post(f"/batch/operations/{wid}/cancel")
    await wait_batch(orch, wid)


async def age(orch: Any, workflow_id: str, days: int) -> None:
    """Make a workflow (and its automatic checkpoint) look ``days`` old."""
    then = datetime.now(UTC) - timedelta(days=days)
    await orch.app[STORE].write(
        Stmt(
            "UPDATE type::thing('workflow', $id) SET created_at = $t, completed_at = $t",
            {"id": workflow_id, "t": then},
        ),
        Stmt("UPDATE checkpoint SET created_at = $t WHERE workflow_id = $id", {"id": workflow_id, "t": then}),
    )


async def test_a_kept_checkpoint_keeps_what_rolling_back_to_it_undoes(orch: Any) -> None:
    before = await run(orch, op("w0"))
    resp = await orch.post("/rollback/checkpoints", json={"name": "kept"})
    kept = (await resp.json())["data"]
    after = await run(orch, op("w1", servers=["w1-srv"]))
    await age(orch, before["batch_id"], 60)
    await age(orch, after["batch_id"], 60)
    pruned = await retention(orch).run_once()
    # w0 finished before the checkpoint: gone; w1 after it: rolling back undoes it, so kept
    assert pruned["workflow"] == 1
    ids = {b["batch_id"] for b in await data_of(orch, "/batch/operations")}
    assert ids == {after["batch_id"]}
    assert await counter_mismatches(orch.app[STORE]) == []
    resp = await orch.post("/rollback/execute", json={"checkpoint_id": kept})
    assert resp.status == 200, await resp.text()
    ops = (await data_of(orch, f"/batch/operations/{after['batch_id']}"))["operations"]
    assert [o["status"] for o in ops] == ["RolledBack"]


async def test_sent_webhook_deliveries_go_pending_ones_stay(orch: Any) -> None:
    store = orch.app[STORE]
    old = (datetime.now(UTC) - timedelta(days=60)).timestamp()
    rows = []
    for i, status in enumerate(["delivered", "failed", "pending", "delivered"]):
        row = delivery_row("hook1", "task.completed", "{}", status=status)
        row.update(created_epoch=old if i < 3 else row["created_epoch"])
        rows.append(WebhookRepository.insert_delivery(row))
    await store.write(*rows)
    pruned = await retention(orch).run_once()
    assert pruned["webhook_delivery"] == 2
    statuses = sorted(await store.query("SELECT VALUE status FROM webhook_delivery"))
    assert statuses == ["delivered", "pending"]
    assert await counter_mismatches(store) == []


async def test_audit_records_are_never_pruned(orch: Any) -> None:
    store = orch.app[STORE]
    old = datetime.now(UTC) - timedelta(days=400)
    await store.write(Insert("audit", {"id": "a1", "seq": 1, "timestamp": old.isoformat(), "action": "x"}))
    await retention(orch, retention_days=1).run_once()
    assert await count(orch, "audit") == 1


async def test_the_first_pass_waits_for_the_start_delay(orch: Any) -> None:
    """A start's catch-up and resumed workflows have the store to themselves: the job's
    first pass comes ``retention_start_delay_s`` after it, not at once."""
    done = await run(orch, op("old"))
    await age(orch, done["batch_id"], 60)
    waiting = asyncio.create_task(retention(orch, retention_start_delay_s=3600).run_forever())
    for _ in range(20):
        await asyncio.sleep(0)
    await asyncio.sleep(0.1)
    assert await count(orch, "workflow") == 1  # nothing pruned yet
    waiting.cancel()
    prompt = asyncio.create_task(retention(orch, retention_start_delay_s=0).run_forever())
    try:
        for _ in range(500):  # up to ~10 s on a loaded machine
            if not await count(orch, "workflow"):
                break
            await asyncio.sleep(0.02)
    finally:
        prompt.cancel()
    assert await count(orch, "workflow") == 0
    assert await counter_mismatches(orch.app[STORE]) == []
