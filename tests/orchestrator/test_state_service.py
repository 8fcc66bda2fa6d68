"""The orchestrator's service layer without HTTP: an app is started (its engine,
services and store) but never served; tests call ``WorkflowService`` and
``StateService`` directly with an ``Actor``, as a handler would."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from orchestrator.app import create_app
from orchestrator.keys import CHECKPOINTS, ROLLBACKS, STATE, WORKFLOWS
from orchestrator.models import BatchRequest, CheckpointRequest, InventoryQuery, RollbackRequest, TaskQuery
from orchestrator.records import Task, Workflow
from orchestrator.repository import InventoryRepository, Repository
from orchestrator.state import Health, StateService
from orchestrator.states import TaskStatus, WorkflowStatus
from orchestrator.views import batch_view, checkpoint_view, task_view, workflow_progress
from shared.errors import NotFound
from shared.security.actor import Actor
from shared.security.auth import Principal
from shared.settings import Settings
from shared.store.store import Store
from tests.helpers.batches import batch, op

ALICE = Actor(
    principal=Principal(user_id="u-1", username="alice", roles=("operator",)),
    ip="192.0.2.7",
    request_id="req-1",
    service="orchestrator",
)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[web.Application]:
    """The orchestrator app, started (engine and services built) but listening nowhere."""
    application = create_app(settings)
    runner = web.AppRunner(application)
    await runner.setup()
    yield application
    await runner.cleanup()


async def finished(app: web.Application, workflow_id: str) -> tuple[Workflow, list[Task]]:
    for _ in range(1000):
        wf, tasks = await app[WORKFLOWS].batch(workflow_id)
        if wf.status in (WorkflowStatus.COMPLETED, WorkflowStatus.FAILED, WorkflowStatus.CANCELLED):
            return wf, tasks
        await asyncio.sleep(0.02)
    raise AssertionError(f"workflow {workflow_id} did not finish")


async def run(app: web.Application, body: dict[str, Any]) -> tuple[Workflow, list[Task]]:
    wf = await app[WORKFLOWS].submit(BatchRequest.model_validate(body), ALICE)
    return await finished(app, wf.id)


async def test_a_submission_names_its_actor_and_reads_back_as_typed_records(app: web.Application) -> None:
    wf, tasks = await run(app, batch(op("a"), op("b", ["a"]), name="typed"))
    assert wf.status is WorkflowStatus.COMPLETED
    assert wf.submitted_by == "alice"
    assert wf.name == "typed" and wf.kind == "batch"
    assert [t.name for t in tasks] == ["a", "b"]
    assert all(t.status is TaskStatus.COMPLETED and t.final for t in tasks)
    assert tasks[1].dependency_names == ("a",)
    assert tasks[1].dependencies == (tasks[0].id,)
    one = await app[WORKFLOWS].task(tasks[0].id)
    assert one == tasks[0]
    listed = await app[WORKFLOWS].tasks(TaskQuery(status="Completed", workflow_id=wf.id, limit=10))
    assert listed.total == 2 and {t.id for t in listed.items} == {t.id for t in tasks}
    batches = await app[WORKFLOWS].batches(
        status=WorkflowStatus.COMPLETED, limit=10, offset=0, cursor=None, full=True
    )
    assert batches.total == 1 and batches.items[0].workflow.id == wf.id
    assert batches.items[0].tasks is not None and len(batches.items[0].tasks) == 2
    assert batches.items[0].counts == {"Completed": 2}
    # The views shape records into the API's JSON: statuses as their API strings.
    view = batch_view(wf, tasks)
    assert view["status"] == "Completed" and view["progress"] == 100.0
    assert [o["dependencies"] for o in view["operations"]] == [[], ["a"]]
    assert task_view(tasks[1])["dependencies"] == [tasks[0].id]


async def test_unknown_ids_are_not_found(app: web.Application) -> None:
    with pytest.raises(NotFound, match="no batch with id nope"):
        await app[WORKFLOWS].batch("nope")
    with pytest.raises(NotFound, match="no task with id nope"):
        await app[WORKFLOWS].task("nope")
    state = app[STATE]
    for read in (state.progress, state.snapshots, state.journal):
        with pytest.raises(NotFound, match="no workflow with id nope"):
            await read("nope")
    with pytest.raises(NotFound, match="no workflow with id nope"):
        await state.state_at("nope", None)
    with pytest.raises(NotFound, match="no checkpoint with id nope"):
        await state.checkpoint("nope")


async def test_progress_journal_snapshots_and_replayed_state(app: web.Application) -> None:
    wf, _ = await run(app, batch(op("a"), op("b", ["a"])))
    state = app[STATE]
    progress = workflow_progress(*await state.progress(wf.id))
    assert progress["progress"] == 100.0
    assert progress["completed_steps"] == 2 and progress["estimated_time_remaining"] == 0
    assert progress["current_step"] == "Completed"
    journal = await state.journal(wf.id)
    moves = [(e["name"], e.get("from"), e["to"]) for e in journal if e["entity_kind"] == "task"]
    assert ("a", "Pending", "Running") in moves and ("b", "Running", "Completed") in moves
    snapshots = await state.snapshots(wf.id)
    assert snapshots[0]["state"] == "running" and snapshots[-1]["state"] == "completed"
    latest = await state.state_at(wf.id, None)
    assert latest["status"] == "Completed" and latest["counts"] == {"Completed": 2}
    # At the submission's position nothing had run yet: both operations are Pending.
    submitted = min(int(e["seq"]) for e in journal)
    then = await state.state_at(wf.id, submitted)
    assert then["status"] == "Running" and then["counts"] == {"Pending": 2}


async def test_statistics_and_metrics_count_workflows_by_status(app: web.Application) -> None:
    await run(app, batch(op("a")))
    await run(app, batch(op("x", simulate={"fail_always": True}), name="fails"))
    metrics = await app[STATE].system_metrics()
    assert (metrics.total_workflows, metrics.completed_workflows, metrics.failed_workflows) == (2, 1, 1)
    assert metrics.active_workflows == 0 and metrics.cancelled_workflows == 0
    stats = await app[STATE].statistics()
    assert stats.total_workflows == 2 and stats.snapshots >= 2
    assert stats.storage_usage == "in memory (not persisted)"
    assert stats.mean_duration_s >= 0


async def test_health_names_the_part_that_fails(settings: Settings, store: Store) -> None:
    repo = Repository(store)
    healthy = await StateService(settings, repo, InventoryRepository(store), lambda: True).system_health()
    assert (healthy.storage, healthy.batch_coordinator, healthy.overall) == (
        Health.HEALTHY,
        Health.HEALTHY,
        Health.HEALTHY,
    )
    degraded = await StateService(settings, repo, InventoryRepository(store), lambda: False).system_health()
    assert degraded.batch_coordinator is Health.DEGRADED and degraded.overall is Health.DEGRADED
    closed = Store("mem://")
    await closed.open()
    await closed.close()
    broken = StateService(settings, Repository(closed), InventoryRepository(closed), lambda: True)
    unhealthy = await broken.system_health()
    assert unhealthy.storage is Health.UNHEALTHY and unhealthy.overall is Health.UNHEALTHY


async def test_checkpoints_and_rollback_statistics(app: web.Application) -> None:
    wf, _ = await run(app, batch(op("a"), op("b", ["a"]), rollback_enabled=False))
    cid = await app[CHECKPOINTS].create(CheckpointRequest(name="after", workflow_id=wf.id))
    state = app[STATE]
    cp, completed = await state.checkpoint(cid)
    assert cp.name == "after" and cp.workflow_id == wf.id and not cp.auto and completed == 2
    assert checkpoint_view(cp, operations_count=completed)["operations_count"] == 2
    listed = await state.checkpoints(10, 0, None)
    assert listed.total == 2 and {c.id for c in listed.items} == {cid, wf.checkpoint_id}
    automatic = next(c for c in listed.items if c.id == wf.checkpoint_id)
    assert automatic.auto and (await state.checkpoint(automatic.id))[1] == 0
    before = await state.rollback_statistics()
    assert (before.total_checkpoints, before.total_rollbacks, before.success_rate) == (2, 0, 100.0)
    await app[ROLLBACKS].execute(RollbackRequest(operation_ids=["b"], workflow_id=wf.id))
    after = await state.rollback_statistics()
    assert after.total_rollbacks == 1 and after.success_rate == 100.0
    undone = await app[WORKFLOWS].tasks(TaskQuery(status="RolledBack", workflow_id=wf.id, limit=10))
    assert [t.name for t in undone.items] == ["b"] and undone.total == 1


async def test_the_inventory_lists_what_the_local_provider_made(app: web.Application) -> None:
    await run(app, batch(op("srv", servers=["web-1", "web-2"])))
    names = sorted(r["name"] for r in (await app[STATE].inventory(InventoryQuery())).items)
    assert names == ["web-1", "web-2"]
