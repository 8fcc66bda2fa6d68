"""``parallel_limit`` counts operations at work: an operation whose provider is done gives
its slot back while its outcome is being committed, so the next one overlaps that commit;
its dependents still start only once the outcome is durable (announced)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from orchestrator.engine import Engine
from orchestrator.models import BatchRequest, OperationSpec
from orchestrator.providers import OperationContext, OperationResult
from shared.events.bus import Event, EventBus
from tests.helpers.engines import running_engine


@pytest.fixture
async def engine() -> AsyncIterator[Engine]:
    async for e in running_engine():
        yield e


class Probe:
    """Notes, as each operation starts, which operations were durably Completed (their
    event is out only once the commit is) and how many providers were at work."""

    name = "probe"

    def __init__(self, bus: EventBus, work_s: float = 0.0) -> None:
        self.durable: set[str] = set()
        self.seen_at_start: dict[str, set[str]] = {}
        self.at_work = 0
        self.most_at_work = 0
        self.work_s = work_s
        bus.add_listener(self._on_event)

    def _on_event(self, event: Event) -> None:
        if event.event_type == "TaskStatusChanged" and event.data.get("status") == "Completed":
            self.durable.add(str(event.data["operation_id"]))

    def describe(self, spec: OperationSpec, provider: str) -> tuple[str, list[str]]:
        return "probe", []

    def check(self, spec: OperationSpec, provider: str) -> str:
        return "probe"

    async def apply(self, ctx: OperationContext) -> OperationResult:
        self.seen_at_start[ctx.name] = set(self.durable)
        self.at_work += 1
        self.most_at_work = max(self.most_at_work, self.at_work)
        try:
            if self.work_s:
                await asyncio.sleep(self.work_s)
            return OperationResult()
        finally:
            self.at_work -= 1

    async def rollback(self, ctx: OperationContext) -> OperationResult:
        return OperationResult()


async def run(engine: Engine, ops: list[dict[str, Any]], limit: int) -> str:
    batch = BatchRequest.model_validate(
        {
            "name": "slots",
            "parallel_limit": limit,
            "operations": [{"type": "server_batch", "provider": "probe", **o} for o in ops],
        }
    )
    wf = await engine.submit(batch)
    driver = engine.runs[wf.id].driver
    assert driver is not None
    await asyncio.wait_for(asyncio.shield(driver), 20)
    return wf.id


async def test_the_next_operation_starts_while_the_outcome_before_it_commits(engine: Engine) -> None:
    probe = Probe(engine.bus)
    engine.registry.providers["probe"] = probe
    wid = await run(engine, [{"id": "a"}, {"id": "b"}], limit=1)
    # b took a's slot as soon as a's provider was done, before a's Completed was durable
    assert "a" not in probe.seen_at_start["b"]
    tasks = {t["name"]: t for t in await engine.repo.tasks_of(wid)}
    assert tasks["a"]["status"] == tasks["b"]["status"] == "Completed"
    # and the record still shows one at a time: a finished before b started
    moves = [(e["name"], e["to"]) for e in await engine.repo.journal_of(wid) if e["entity_kind"] == "task"]
    assert moves == [("a", "Running"), ("a", "Completed"), ("b", "Running"), ("b", "Completed")]


async def test_a_dependent_starts_only_once_its_dependency_is_durably_completed(engine: Engine) -> None:
    probe = Probe(engine.bus)
    engine.registry.providers["probe"] = probe
    ops = [
        {"id": "a"},
        {"id": "b"},
        {"id": "c", "dependencies": ["a"]},
        {"id": "d", "dependencies": ["c", "b"]},
    ]
    await run(engine, ops, limit=1)
    assert "a" in probe.seen_at_start["c"]
    assert {"b", "c"} <= probe.seen_at_start["d"]


async def test_no_more_providers_are_at_work_than_the_limit(engine: Engine) -> None:
    probe = Probe(engine.bus, work_s=0.005)
    engine.registry.providers["probe"] = probe
    await run(engine, [{"id": f"op{i}"} for i in range(30)], limit=3)
    assert probe.most_at_work == 3
