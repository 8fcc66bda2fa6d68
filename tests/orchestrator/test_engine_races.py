"""Races at the engine's edges: a cancel that lands while an outcome is being written,
and a batch that stops while an operation waits to retry."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from orchestrator.engine import Engine
from orchestrator.models import BatchRequest, OperationSpec
from orchestrator.providers import OperationContext, OperationResult
from orchestrator.repository import Repository
from shared.events.bus import Event
from tests.helpers.engines import running_engine


@pytest.fixture
async def engine() -> AsyncIterator[Engine]:
    async for e in running_engine():
        yield e


async def finished(engine: Engine, wid: str) -> None:
    run = engine.runs.get(wid)
    if run is not None and run.driver is not None:
        await asyncio.wait_for(asyncio.shield(run.driver), 20)


class CancelAsItFinishes:
    """Completes its work and, in the same instant, the user cancels the batch."""

    name = "racy"

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def describe(self, spec: OperationSpec, provider: str) -> tuple[str, list[str]]:
        return "racy", []

    def check(self, spec: OperationSpec, provider: str) -> str:
        return "race"

    async def apply(self, ctx: OperationContext) -> OperationResult:
        asyncio.get_running_loop().create_task(self.engine.cancel(ctx.workflow_id))
        return OperationResult(output="server created", results={"made": True})

    async def rollback(self, ctx: OperationContext) -> OperationResult:
        return OperationResult()


async def test_a_cancel_during_the_outcome_write_keeps_the_outcome(engine: Engine) -> None:
    seen: list[tuple[str, Any]] = []
    engine.bus.add_listener(lambda e: seen.append((e.event_type, e.data.get("status"))))
    engine.registry.providers["racy"] = CancelAsItFinishes(engine)
    wf = await engine.submit(
        BatchRequest.model_validate(
            {"name": "b", "operations": [{"id": "a", "type": "server_batch", "provider": "racy"}]}
        )
    )
    await finished(engine, wf.id)
    task = (await engine.repo.tasks_of(wf.id))[0]
    assert task["status"] == "Completed"
    moves = [(e["from"], e["to"]) for e in await engine.repo.journal_of(wf.id) if e["entity_kind"] == "task"]
    assert moves == [("Pending", "Running"), ("Running", "Completed")]
    assert ("TaskStatusChanged", "Cancelled") not in seen


async def test_an_operation_waiting_to_retry_is_not_retried_once_the_batch_stopped(
    engine: Engine,
) -> None:
    events: list[Event] = []
    engine.bus.add_listener(events.append)
    wf = await engine.submit(
        BatchRequest.model_validate(
            {
                "name": "b",
                "parallel_limit": 2,
                "operations": [
                    {
                        "id": "a",
                        "type": "server_batch",
                        "provider": "local",
                        "simulate": {"latency_s": 0.01, "progress_steps": 1, "fail_attempts": 1},
                        "retry": {"max_attempts": 3, "initial_delay_s": 0.5},
                    },
                    {
                        "id": "b",
                        "type": "server_batch",
                        "provider": "local",
                        "simulate": {"latency_s": 0.1, "progress_steps": 1, "fail_always": True},
                        "retry": {"max_attempts": 1},
                    },
                ],
            }
        )
    )
    await finished(engine, wf.id)
    tasks = {t["name"]: t for t in await engine.repo.tasks_of(wf.id)}
    assert tasks["b"]["status"] == "Failed"
    assert tasks["a"]["status"] == "Cancelled"
    assert tasks["a"]["attempt"] == 1
    assert "not retried" in tasks["a"]["error"]


class BrokenUndo(CancelAsItFinishes):
    """Applies fine; its undo crashes with something no provider should raise."""

    name = "broken"

    async def apply(self, ctx: OperationContext) -> OperationResult:
        return OperationResult(output="made")

    async def rollback(self, ctx: OperationContext) -> OperationResult:
        raise RuntimeError("plug-in bug")


async def test_a_crashing_undo_fails_the_operation_instead_of_stranding_it(
    engine: Engine,
) -> None:
    from orchestrator.models import RollbackRequest

    engine.registry.providers["broken"] = BrokenUndo(engine)
    wf = await engine.submit(
        BatchRequest.model_validate(
            {"name": "b", "operations": [{"id": "a", "type": "server_batch", "provider": "broken"}]}
        )
    )
    await finished(engine, wf.id)
    result = await engine.rollbacks.execute(RollbackRequest(operation_ids=["a"], workflow_id=wf.id))
    assert result["operations_failed"] == 1 and result["success"] is False
    task = (await engine.repo.tasks_of(wf.id))[0]
    assert task["status"] == "Failed"
    assert "internal error: plug-in bug" in task["error"]


async def test_an_undo_cut_off_by_a_stop_is_failed_at_the_next_start(engine: Engine) -> None:
    from orchestrator.task_repository import TASK_PAGES, page_of_key
    from shared.store.writes import Paged

    wf = await engine.submit(
        BatchRequest.model_validate(
            {"name": "b", "operations": [{"id": "a", "type": "server_batch", "provider": "noop"}]}
        )
    )
    await finished(engine, wf.id)
    task = (await engine.repo.tasks_of(wf.id))[0]
    # As if the process died halfway through undoing it: the row and its status counter
    # moved in one commit, as a transition moves them.
    await engine.store.write(
        Paged(TASK_PAGES, page_of_key(task["lk"]), task["id"], {"status": "RollingBack"}),
        *Repository.status_counts("task", wf.id, "Completed", "RollingBack", {}),
    )
    await engine.stop()
    await engine.start()
    task = (await engine.repo.tasks_of(wf.id))[0]
    assert task["status"] == "Failed"
    assert "rollback interrupted" in task["error"]
