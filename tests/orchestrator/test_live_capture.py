"""A running batch's capture reads again only the tasks an event named since the last
one (``LiveDocument`` in ``orchestrator/workflows.py``): each task it shows is where the
engine's memory has it or where its last event said, never older; the counts match
what it shows; and a full pass (at the finish) agrees with memory exactly."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from orchestrator.app import create_app
from orchestrator.events import EventType
from orchestrator.keys import ENGINE, WORKFLOWS
from orchestrator.workflows import LiveDocument
from shared.events.bus import Event
from shared.settings import Settings
from tests.helpers.batches import op, submit, wait_batch

N = 400


async def test_an_incremental_capture_shows_each_task_as_memory_or_its_last_event_has_it(
    aiohttp_client: Any, settings: Settings
) -> None:
    client = await aiohttp_client(create_app(settings.model_copy(update={"live_document_max_age_s": 0.0})))
    engine, service = client.app[ENGINE], client.app[WORKFLOWS]
    announced: dict[str, str] = {}  # task id -> the status its last event said

    def listener(event: Event) -> None:
        if event.event_type == EventType.TASK_STATUS_CHANGED:
            announced[str(event.data["task_id"])] = str(event.data["status"])

    engine.bus.add_listener(listener)
    ops = [op(f"op{i}", [f"op{i - 1}"] if i % 4 else []) for i in range(N)]
    bid = (await submit(client, {"name": "live", "parallel_limit": 20, "operations": ops}))["batch_id"]
    incremental = 0
    await service.capture(bid)  # the batch's live document begins
    loop = asyncio.get_running_loop()
    while (state := engine.live(bid)) is not None:
        doc = service._live.get(bid)
        assert doc is not None and doc.follows(state)
        now = loop.time()
        # Synchronous from here to the checks: memory and the events as at the capture.
        moments, summary = doc.capture(now)
        incremental += doc.full_at != now
        assert sum(summary.counts.values()) == N
        shown = Counter(m[0].value for m in moments)
        assert {k: v for k, v in summary.counts.items() if v} == dict(shown)
        for task, moment in zip(doc.tasks, moments, strict=True):
            assert moment[0] in (task.status, announced.get(task.id, "Pending")), (task.name, moment)
        await asyncio.sleep(0.005)
    assert incremental > 0, "no capture read only the tasks events named"
    done = await wait_batch(client, bid)
    assert done["counts"]["Completed"] == N


def test_a_full_pass_agrees_with_memory_whatever_events_said() -> None:
    class Task:
        def __init__(self, i: int) -> None:
            self.id, self.name, self.state = f"t{i}", f"op{i}", 0

        def moment(self) -> tuple[Any, ...]:
            from orchestrator.states import TaskStatus

            status = (TaskStatus.PENDING, TaskStatus.RUNNING, TaskStatus.COMPLETED)[self.state]
            return (status, 0.0, 0, None, None, None, None, None, None)

    class State:
        tasks = {f"t{i}": Task(i) for i in range(10)}

    doc = LiveDocument(State())  # type: ignore[arg-type]
    _, summary = doc.capture(now=0.0)
    assert summary.counts["Pending"] == 10
    tasks = list(State.tasks.values())
    tasks[0].state = tasks[1].state = 2
    doc.touched("t0")  # t1 changed without an event (its write failed)
    _, summary = doc.capture(now=1.0)
    assert summary.counts["Completed"] == 1 and summary.counts["Pending"] == 9
    _, summary = doc.capture(now=2.5)  # the full pass is due
    assert summary.counts["Completed"] == 2 and summary.counts["Pending"] == 8
    tasks[2].state = 1
    _, summary = doc.capture()  # no loop time: every task (as at the finish)
    assert summary.counts["Running"] == 1 and summary.total == 10
