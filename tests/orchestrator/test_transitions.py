"""The transition protocol on a real store: check the table, journal the change with its
row and its webhook outbox rows in one write, and only once that is durable mirror it in
memory and announce it. Also: the engine cannot exist without its rollback service."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest

from orchestrator.engine import Engine
from orchestrator.ids import task_id
from orchestrator.models import OperationSpec
from orchestrator.repository import Repository
from orchestrator.rollback import RollbackService
from orchestrator.runtime import TaskState, WorkflowState
from orchestrator.states import IllegalTransition, TaskStatus, WorkflowStatus
from orchestrator.task_repository import TASK_PAGES, page_id
from orchestrator.transitions import Transitions, restore_change, task_change
from shared.events.bus import Event, EventBus
from shared.settings import load_settings
from shared.store.store import Store
from shared.store.writes import Insert, Paged, Write

WID = "wf-1"


@dataclass
class Recorder:
    """Outbox rows asked for, and events published with the store's commit count then."""

    store: Store
    outbox_calls: list[str] = field(default_factory=list)
    events: list[tuple[str, dict[str, Any], int]] = field(default_factory=list)

    def outbox(self, event_type: str, data: dict[str, Any]) -> list[Write]:
        self.outbox_calls.append(event_type)
        n = len(self.outbox_calls)
        return [Insert("webhook_delivery", {"id": f"d{n}", "event_type": event_type, "data": data})]

    def listen(self, event: Event) -> None:
        self.events.append((event.event_type, event.data, self.store.commits))


@pytest.fixture
async def rec(store: Store) -> Recorder:
    return Recorder(store)


@pytest.fixture
async def transitions(store: Store, rec: Recorder) -> Transitions:
    bus = EventBus()
    bus.add_listener(rec.listen)
    tr = Transitions(store, bus, rec.outbox)
    await tr.load()
    return tr


async def a_task(store: Store, name: str = "a", status: TaskStatus = TaskStatus.PENDING) -> TaskState:
    t = TaskState(
        id=str(task_id(1, 0)),  # names its page: task_page for position 1, index 0
        workflow_id=WID,
        name=name,
        index=0,
        spec=OperationSpec(id=name, type="server_batch"),
        provider="noop",
        status=status,
        page=page_id(1, 0),
    )
    row = {"id": t.id, "workflow_id": WID, "name": name, "index": 0, "status": str(status)}
    await store.write(Paged(TASK_PAGES, str(t.page), t.id, row, create=True))
    return t


async def test_a_refused_move_is_neither_recorded_nor_mirrored_nor_announced(
    store: Store, transitions: Transitions, rec: Recorder
) -> None:
    t = await a_task(store, status=TaskStatus.COMPLETED)
    with pytest.raises(IllegalTransition, match="task cannot go from Completed to Running"):
        await transitions.move_task(t, TaskStatus.RUNNING)
    wf = WorkflowState(
        id=WID, name="w", kind="batch", status=WorkflowStatus.FAILED, parallel_limit=1, rollback_enabled=False
    )
    with pytest.raises(IllegalTransition, match="workflow cannot go from Failed to Running"):
        await transitions.move_workflow(wf, WorkflowStatus.RUNNING)
    assert t.status is TaskStatus.COMPLETED and wf.status is WorkflowStatus.FAILED
    assert await Repository(store).journal_after(0) == []
    assert transitions.last_seq == 0 and rec.events == [] and rec.outbox_calls == []


async def test_a_move_is_journaled_with_its_row_and_outbox_rows_then_mirrored_then_announced(
    store: Store, transitions: Transitions, rec: Recorder
) -> None:
    t = await a_task(store)
    counts: Counter[str] = Counter({"Pending": 1})
    transitions.live_counts = lambda wid: counts if wid == WID else None
    before = store.commits
    await transitions.move_task(
        t, TaskStatus.RUNNING, {"attempt": 1}, extra=[Insert("snapshot", {"id": "s1"})]
    )

    [entry] = await Repository(store).journal_after(0)
    assert (entry["entity"], entry["from"], entry["to"], entry["attempt"]) == (t.id, "Pending", "Running", 1)
    row = await Repository(store).task(t.id)
    assert row is not None and row["status"] == "Running" and row["updated_seq"] == entry["seq"]
    assert await store.query("SELECT VALUE event_type FROM webhook_delivery") == ["TaskStatusChanged"]
    assert await store.query("SELECT VALUE id FROM snapshot") != []
    # Mirrored in memory and in the live counts.
    assert t.status is TaskStatus.RUNNING and t.attempt == 1
    assert counts == Counter({"Pending": 0, "Running": 1})
    # Announced once, after the commit that made it durable.
    [(event_type, data, commits)] = rec.events
    assert event_type == "TaskStatusChanged" and commits > before
    assert (data["status"], data["seq"], data["task_id"], data["attempt"]) == (
        "Running",
        entry["seq"],
        t.id,
        1,
    )


async def test_a_queued_move_is_mirrored_at_once_and_announced_only_once_durable(
    store: Store, transitions: Transitions, rec: Recorder
) -> None:
    t = await a_task(store)
    future = transitions.queue(task_change(t, TaskStatus.RUNNING, {"attempt": 1}))
    assert t.status is TaskStatus.RUNNING  # the provider may start now
    assert rec.events == []  # but nobody hears of it before it is durable
    await future
    assert [e[0] for e in rec.events] == ["TaskStatusChanged"]
    assert [e["to"] for e in await Repository(store).journal_after(0)] == ["Running"]


async def test_a_cancel_during_the_commit_still_mirrors_and_announces_what_landed(
    store: Store, transitions: Transitions, rec: Recorder
) -> None:
    t = await a_task(store)
    committing = asyncio.create_task(transitions.move_task(t, TaskStatus.RUNNING, {"attempt": 1}))
    await asyncio.sleep(0)  # queued, not yet durable
    committing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await committing
    assert t.status is TaskStatus.RUNNING
    assert [e[0] for e in rec.events] == ["TaskStatusChanged"]
    assert [e["to"] for e in await Repository(store).journal_after(0)] == ["Running"]


async def test_an_announcement_commits_its_writes_and_outbox_rows_before_it_is_published(
    store: Store, transitions: Transitions, rec: Recorder
) -> None:
    before = store.commits
    await transitions.announce(
        [Insert("checkpoint", {"id": "c1", "seq": 0})], ("CheckpointCreated", {"checkpoint_id": "c1"})
    )
    assert await store.query("SELECT VALUE id FROM checkpoint") != []
    assert await store.query("SELECT VALUE event_type FROM webhook_delivery") == ["CheckpointCreated"]
    [(event_type, data, commits)] = rec.events
    assert (event_type, data, commits > before) == ("CheckpointCreated", {"checkpoint_id": "c1"}, True)
    assert await Repository(store).journal_after(0) == []  # not a transition


async def test_a_restore_may_only_set_a_final_status() -> None:
    change = restore_change("task", "t1", WID, "a", "RolledBack", "Completed", checkpoint_id="cp")
    assert change.patch == {"restored_from": "cp"} and change.note == "restored from checkpoint cp"
    assert change.event() == {"workflow_id": WID, "status": "Completed", "seq": 0, "task_id": "t1"}
    with pytest.raises(IllegalTransition, match="a restore cannot set Completed to Running"):
        restore_change("task", "t1", WID, "a", "Completed", "Running", checkpoint_id="cp")
    with pytest.raises(IllegalTransition, match="a restore cannot set Completed to Running"):
        restore_change("workflow", WID, WID, "w", "Completed", "Running", checkpoint_id="cp")


async def test_the_engine_is_built_with_its_rollback_service_and_never_without(store: Store) -> None:
    settings = load_settings(db_url="mem://")
    with pytest.raises(TypeError, match="rollbacks"):
        Engine(settings, store, EventBus())  # type: ignore[call-arg]
    engine = Engine(settings, store, EventBus(), rollbacks=RollbackService)
    assert isinstance(engine.rollbacks, RollbackService) and engine.rollbacks.engine is engine
    assert engine.rollbacks.transitions is engine.transitions
