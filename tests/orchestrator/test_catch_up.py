"""Task and workflow rows are a lazily applied projection of the journal: a process
that dies with row changes still pending loses nothing, because the next start
re-applies the journal after the store's lazy mark.

These tests kill the process's memory, not the process: they drop the pending
row changes (what a SIGKILL would lose) and reopen the same data directory.
``test_resume.py`` does the same with a real SIGKILL."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from orchestrator.engine import Engine
from orchestrator.models import BatchRequest, OperationSpec
from orchestrator.providers import OperationContext, OperationResult
from orchestrator.rollback import RollbackService
from shared.events.bus import EventBus
from shared.settings import Settings, load_settings
from shared.store.store import Store

NEVER = 3600.0  # no timed application: only what the test does happens


def slow_store(path: Path) -> Store:
    return Store(f"surrealkv://{path}/db", lazy_delay_s=NEVER, lazy_max_age_s=NEVER)


def settings_for(path: Path) -> Settings:
    return load_settings(
        data_dir=path, auth_enabled=False, default_initial_delay_s=0.01, default_max_delay_s=0.05
    )


async def crash(engine: Engine, store: Store) -> int:
    """Die with the pending row changes unapplied; returns how many rows were lost."""
    lost = store.lazy_pending
    store._lazy.clear()  # what a killed process loses: it never wrote them
    store._settled.clear()
    await engine.stop()
    await store.close()
    return lost


class Slow:
    """A provider that takes its time and touches nothing."""

    name = "slow"

    def describe(self, spec: OperationSpec, provider: str) -> tuple[str, list[str]]:
        return "slow", []

    def check(self, spec: OperationSpec, provider: str) -> str:
        return "wait a while"

    async def apply(self, ctx: OperationContext) -> OperationResult:
        await asyncio.sleep(30)
        return OperationResult(output="done")

    async def rollback(self, ctx: OperationContext) -> OperationResult:
        return OperationResult()


async def start(path: Path) -> tuple[Engine, Store]:
    store = slow_store(path)
    await store.open()
    engine = Engine(settings_for(path), store, EventBus(), rollbacks=RollbackService)
    engine.registry.providers["slow"] = Slow()
    await engine.start()
    return engine, store


async def running(engine: Engine, wid: str, name: str) -> None:
    """Until operation ``name`` of workflow ``wid`` is Running."""
    started = asyncio.Event()
    engine.bus.add_listener(
        lambda e: (
            started.set()
            if (e.data.get("operation_id") == name and e.data.get("status") == "Running")
            else None
        )
    )
    if engine.runs[wid].wf.tasks[name].status != "Running":
        await asyncio.wait_for(started.wait(), 10)


def chain(n: int, slow: int | None = None) -> BatchRequest:
    """``n`` no-ops in a line, but a slow one at ``slow``. (Neither the simulated cloud
    nor a command: they read the store or report progress, which applies the rows.)"""
    ops: list[dict[str, Any]] = []
    for i in range(n):
        op: dict[str, Any] = {
            "id": f"op{i}",
            "type": "server_batch",
            "provider": "slow" if i == slow else "noop",
        }
        if i:
            op["dependencies"] = [f"op{i - 1}"]
        ops.append(op)
    return BatchRequest.model_validate({"name": "chain", "parallel_limit": 2, "operations": ops})


async def test_a_finished_workflow_whose_rows_were_never_applied_is_rebuilt(tmp_path: Path) -> None:
    engine, store = await start(tmp_path)
    wf = await engine.submit(chain(6))
    assert engine.runs[wf.id].driver is not None
    await asyncio.wait_for(asyncio.shield(engine.runs[wf.id].driver), 30)  # type: ignore[arg-type]
    # Every task row (created lazily at submission) and the workflow's patches were pending.
    assert await crash(engine, store) == 7

    engine, store = await start(tmp_path)
    try:
        row = await engine.repo.workflow(wf.id)
        assert row is not None and row["status"] == "Completed"
        tasks = await engine.repo.tasks_of(wf.id)
        assert [t["name"] for t in tasks] == [f"op{i}" for i in range(6)]
        assert {t["status"] for t in tasks} == {"Completed"}
        assert all(t["attempt"] == 1 and t["completed_at"] is not None for t in tasks)
        # rebuilt rows carry what submission recorded, dependencies as task ids
        assert tasks[1]["dependencies"] == [tasks[0]["id"]]
        assert tasks[1]["dependency_names"] == ["op0"]
        assert await store.lazy_mark() == engine.transitions.last_seq
        assert not engine.runs  # nothing to resume
    finally:
        await engine.stop()
        await store.close()


async def test_a_running_workflow_resumes_from_rows_rebuilt_from_the_journal(
    tmp_path: Path,
) -> None:
    engine, store = await start(tmp_path)
    wf = await engine.submit(chain(5, slow=2))
    await running(engine, wf.id, "op2")
    # The task rows were created lazily at submission and none was ever applied.
    assert await crash(engine, store) == 5

    engine, store = await start(tmp_path)
    try:
        # Rebuilt from the journal: op2 was interrupted and runs again (its attempt
        # counts), the ones after it never started.
        run = engine.runs[wf.id]
        await running(engine, wf.id, "op2")
        tasks = {t["name"]: t for t in await engine.repo.tasks_of(wf.id)}
        assert [tasks[f"op{i}"]["status"] for i in range(5)] == [
            "Completed",
            "Completed",
            "Running",
            "Pending",
            "Pending",
        ]
        assert tasks["op0"]["completed_seq"] < tasks["op1"]["completed_seq"]
        assert tasks["op2"]["attempt"] == 2
        # no need to wait out the 30 s attempt: cancel it and look at the record
        await engine.cancel(wf.id)
        assert run.driver is not None and run.driver.done()
        journal = await engine.repo.journal_of(wf.id)
        completed = [e["name"] for e in journal if e["entity_kind"] == "task" and e["to"] == "Completed"]
        assert completed == ["op0", "op1"]  # each once: completed ones never ran again
        resumed = [e for e in journal if e.get("note") == "resumed"]
        assert [e["name"] for e in resumed] == ["op2"]
        final = {t["name"]: t for t in await engine.repo.tasks_of(wf.id)}
        assert {final[f"op{i}"]["status"] for i in (2, 3, 4)} == {"Cancelled"}
    finally:
        await engine.stop()
        await store.close()
