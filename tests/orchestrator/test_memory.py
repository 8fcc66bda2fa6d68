"""The heap is trimmed (glibc's ``malloc_trim``, off the event loop) once no batch runs
any more, unless the setting says not to."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from orchestrator import memory
from orchestrator.engine import Engine
from orchestrator.models import BatchRequest
from tests.helpers.engines import running_engine


@pytest.fixture
def trims(monkeypatch: Any) -> list[int]:
    calls: list[int] = []
    monkeypatch.setattr(memory, "_TRIM", calls.append)
    return calls


@pytest.fixture
async def engine() -> AsyncIterator[Engine]:
    async for e in running_engine(trim_memory_after_batch=True):
        yield e


@pytest.fixture
async def untrimmed() -> AsyncIterator[Engine]:
    async for e in running_engine(trim_memory_after_batch=False):
        yield e


def batch(provider: str, **op: Any) -> BatchRequest:
    return BatchRequest.model_validate(
        {"name": "b", "operations": [{"id": "op", "type": "server_batch", "provider": provider, **op}]}
    )


async def finished(engine: Engine, workflow_id: str) -> None:
    run = engine.runs.get(workflow_id)
    if run is not None and run.driver is not None:
        await asyncio.wait_for(asyncio.shield(run.driver), 20)
    await asyncio.sleep(0.05)  # the trim runs in a worker thread


async def test_the_heap_is_trimmed_once_the_last_running_batch_ends(engine: Engine, trims: list[int]) -> None:
    slow = await engine.submit(batch("local", simulate={"latency_s": 0.5}))
    quick = await engine.submit(batch("noop"))
    await finished(engine, quick.id)
    assert trims == []  # the slow one still runs
    await finished(engine, slow.id)
    assert trims == [0]


async def test_the_setting_turns_it_off(untrimmed: Engine, trims: list[int]) -> None:
    wf = await untrimmed.submit(batch("noop"))
    await finished(untrimmed, wf.id)
    assert trims == []
