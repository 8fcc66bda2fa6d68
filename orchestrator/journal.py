"""The append-only journal and the one function every transition goes through.

:meth:`Journal.commit` numbers each change, writes the entity's new state, its
journal row and whatever else must be atomic with it (a snapshot, webhook
outbox rows) in one store write, waits until that write is durable, and only
then announces the change on the event bus. Persist, then announce.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from orchestrator.repository import Repository
from shared.events import EventBus
from shared.store import Merge, Store, Write

# Outbox hook: (event_type, data) -> extra writes committed with the change.
OutboxHook = Callable[[str, dict[str, Any]], list[Write]]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Change:
    """One transition of a task or workflow, and the event that announces it."""

    entity: str  # "task" | "workflow"
    id: str
    workflow_id: str
    name: str
    from_status: str | None
    to_status: str
    patch: dict[str, Any] = field(default_factory=dict)
    event_type: str = ""
    event_data: dict[str, Any] = field(default_factory=dict)
    note: str | None = None
    seq: int = 0


class Journal:
    """Allocates journal positions and commits changes durably before announcing them."""

    def __init__(self, store: Store, bus: EventBus, outbox: OutboxHook | None = None) -> None:
        self.store = store
        self.bus = bus
        self.outbox = outbox
        self._counter = itertools.count(1)
        self.last_seq = 0

    async def load(self) -> None:
        """Continue numbering after the last persisted entry."""
        last = await Repository(self.store).last_journal_seq()
        self._counter = itertools.count(last + 1)
        self.last_seq = last

    def next_seq(self) -> int:
        self.last_seq = next(self._counter)
        return self.last_seq

    def writes_for(self, change: Change) -> list[Write]:
        """The entity patch and journal row for a change (assigns its position)."""
        change.seq = self.next_seq()
        now = utcnow()
        patch = dict(change.patch)
        patch["status"] = change.to_status
        patch["updated_seq"] = change.seq
        patch["updated_at"] = now
        if change.entity == "task" and change.to_status == "Completed":
            # checkpoints compare against this; a restore keeps the original position
            patch.setdefault("completed_seq", change.seq)
        row = {
            "id": change.seq,
            "seq": change.seq,
            "at": now,
            "entity_kind": change.entity,
            "entity": change.id,
            "workflow_id": change.workflow_id,
            "name": change.name,
            "from": change.from_status,
            "to": change.to_status,
        }
        if change.note:
            row["note"] = change.note
        if "attempt" in patch:
            row["attempt"] = patch["attempt"]
        writes: list[Write] = [Merge(change.entity, change.id, patch), Repository.append_journal(row)]
        if self.outbox is not None and change.event_type:
            writes.extend(self.outbox(change.event_type, self._event_data(change)))
        return writes

    async def commit(self, changes: list[Change], extra: list[Write] | None = None) -> None:
        """Persist the changes (and ``extra``) atomically, then publish their events."""
        writes: list[Write] = []
        for change in changes:
            writes.extend(self.writes_for(change))
        if extra:
            writes.extend(extra)
        await self.store.write(*writes)
        for change in changes:
            if change.event_type:
                self.bus.publish(change.event_type, self._event_data(change))

    async def persist_and_publish(
        self, writes: list[Write], event_type: str, data: dict[str, Any]
    ) -> None:
        """For things that are not transitions (progress, checkpoints): write, then announce."""
        extra = self.outbox(event_type, data) if self.outbox is not None else []
        await self.store.write(*writes, *extra)
        self.bus.publish(event_type, data)

    @staticmethod
    def _event_data(change: Change) -> dict[str, Any]:
        data = {"workflow_id": change.workflow_id, "status": change.to_status, "seq": change.seq}
        data.update(change.event_data)
        return data
