"""The append-only journal and the one function every transition goes through.

:meth:`Journal.commit` numbers each change, writes its journal entry and
whatever else must be atomic with it (a snapshot, webhook outbox rows) in one
store write, waits until that write is durable, and only then announces the
change on the event bus. Persist, then announce.

The journal is the record; task and workflow rows are its projection. Each
entry carries the patch it makes to its entity's row, and the row is written as
a :class:`~shared.store.writes.Lazy` change: the store coalesces those and applies them
in bulk, off the hot path, but before anything reads them. After a crash,
:func:`catch_up` re-applies the entries the rows had not caught up with.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from surrealdb import RecordID

from orchestrator.repository import Repository
from orchestrator.states import FINAL_TASK, FINAL_WORKFLOW
from shared.events.bus import EventBus
from shared.store.store import Store
from shared.store.writes import Append, Insert, Lazy, Merge, Write

# Outbox hook: (event_type, data) -> extra writes committed with the change.
OutboxHook = Callable[[str, dict[str, Any]], list[Write]]

log = logging.getLogger(__name__)

JOURNAL = "journal"
# Rows in these states rarely change again soon: the store applies them first.
_SETTLED = frozenset(str(s) for s in (*FINAL_TASK, *FINAL_WORKFLOW))


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
        entry = {
            "seq": change.seq,
            "at": now,
            "entity_kind": change.entity,
            "entity": change.id,
            "workflow_id": change.workflow_id,
            "name": change.name,
            "from": change.from_status,
            "to": change.to_status,
            "patch": patch,
        }
        if change.note:
            entry["note"] = change.note
        if "attempt" in patch:
            entry["attempt"] = patch["attempt"]
        writes: list[Write] = [
            Append(JOURNAL, change.seq, change.workflow_id, entry),
            Lazy(change.entity, change.id, patch, change.seq, settled=change.to_status in _SETTLED),
        ]
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

    async def persist_and_publish(self, writes: list[Write], event_type: str, data: dict[str, Any]) -> None:
        """For things that are not transitions (progress, checkpoints): write, then announce."""
        extra = self.outbox(event_type, data) if self.outbox is not None else []
        await self.store.write(*writes, *extra)
        self.bus.publish(event_type, data)

    @staticmethod
    def _event_data(change: Change) -> dict[str, Any]:
        data = {"workflow_id": change.workflow_id, "status": change.to_status, "seq": change.seq}
        data.update(change.event_data)
        return data


async def catch_up(
    store: Store, repo: Repository, task_rows_of: Callable[[dict[str, Any]], list[dict[str, Any]]]
) -> int:
    """Bring task and workflow rows up to the journal after a crash; returns how many
    entries were re-applied.

    Rows are applied lazily, so a killed process can leave them behind the journal
    (never ahead: lazy changes are applied only once their entries are durable).
    Every entry after the store's lazy mark is re-applied in order; a workflow
    submitted in that range gets the task rows it is missing, rebuilt from its
    recorded operations. Re-applying an entry that had landed is harmless: each
    patch sets fields to the values that entry recorded."""
    mark = await store.lazy_mark()
    entries = await repo.journal_after(mark)
    if not entries:
        return 0
    patches: dict[tuple[str, str], dict[str, Any]] = {}
    submitted: list[str] = []
    for e in entries:
        if e["entity_kind"] == "workflow" and e.get("note") == "submitted":
            submitted.append(str(e["entity"]))
        patches.setdefault((str(e["entity_kind"]), str(e["entity"])), {}).update(e.get("patch") or {})
    writes: list[Write] = []
    if submitted:
        workflows = await store.query(
            "SELECT * FROM $ids", {"ids": [RecordID("workflow", w) for w in submitted]}
        )
        existing = set(
            await store.query("SELECT VALUE id FROM task WHERE workflow_id IN $wids", {"wids": submitted})
        )
        for wf in workflows:
            for row in task_rows_of(wf):
                if row["id"] not in existing:
                    row.update(patches.pop(("task", row["id"]), {}))
                    writes.append(Insert("task", row))
    writes.extend(Merge(kind, rid, patch) for (kind, rid), patch in patches.items())
    writes.append(store.mark_write(int(entries[-1]["seq"])))
    await store.write(*writes)
    log.info("caught up with the journal", extra={"entries": len(entries), "after": mark})
    return len(entries)
