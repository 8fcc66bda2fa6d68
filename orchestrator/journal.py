"""The append-only journal: its numbering, its entries, and catch-up after a crash.

The journal is the record; task and workflow rows are its projection. Each
entry carries the patch it makes to its entity's row, and the row is written as
a :class:`~shared.store.writes.Lazy` change: the store coalesces those and applies them
in bulk, off the hot path, but before anything reads them. After a crash,
:func:`catch_up` re-applies the entries the rows had not caught up with.

This module only builds writes; it commits and announces nothing. Every change
of status is committed, then announced, by :mod:`orchestrator.transitions`.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from orchestrator.repository import Repository
from orchestrator.runtime import TaskState, WorkflowState
from orchestrator.states import FINAL_TASK, FINAL_WORKFLOW
from orchestrator.task_repository import TASK_PAGES
from shared.store.store import Store
from shared.store.writes import Append, Lazy, Merge, Paged, Write

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
    """One transition of a task or workflow, and the event that announces it.

    ``subject`` is the in-memory state the change is mirrored into once it is
    durable; a restore changes records that have none."""

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
    subject: TaskState | WorkflowState | None = field(default=None, repr=False, compare=False)
    page: str | None = None  # a task's: the page holding its row (orchestrator/task_repository.py)
    _announced: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    def event(self) -> dict[str, Any]:
        """The data of the event that announces this change (a new dict each call)."""
        data = {"workflow_id": self.workflow_id, "status": self.to_status, "seq": self.seq}
        data.update(self.event_data)
        return data

    def announcement(self) -> dict[str, Any]:
        """:meth:`event`, made once its position is known and then shared by the webhook
        outbox (which serialises it at once) and the bus: treat it as read-only."""
        if self._announced is None or self._announced["seq"] != self.seq:
            self._announced = self.event()
        return self._announced


class Journal:
    """Allocates journal positions and builds the writes of each entry."""

    def __init__(self, store: Store) -> None:
        self.store = store
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
        """The journal row and the entity's lazy patch, with its counter deltas, for a
        change (assigns its position)."""
        seq = change.seq = self.last_seq = next(self._counter)
        now = utcnow()
        patch = dict(change.patch)
        patch["status"] = change.to_status
        patch["updated_seq"] = seq
        patch["updated_at"] = now
        if change.entity == "task" and change.to_status == "Completed":
            # checkpoints compare against this; a restore keeps the original position
            patch.setdefault("completed_seq", seq)
        entry = {
            "seq": seq,
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
        table, page = change.entity, None
        if change.entity == "task":
            if change.page is None:
                raise ValueError(f"task {change.id}: a change of a task names the page holding its row")
            table, page = TASK_PAGES, change.page
            entry["page"] = page
        counts = Repository.status_counts(
            change.entity, change.workflow_id, change.from_status, change.to_status, patch
        )
        # The counts ride on the lazy change: committed with the entry, applied or not.
        return [
            Append(JOURNAL, seq, change.workflow_id, entry),
            Lazy(
                table, change.id, patch, seq, settled=change.to_status in _SETTLED, counts=counts, page=page
            ),
        ]

    @staticmethod
    def submission(seq: int, workflow_id: str, name: str, status: str, at: datetime) -> Write:
        """The entry that records a submitted workflow. Its rows are inserted whole at
        ``seq``, so the entry patches nothing; catch-up rebuilds missing task rows from
        the workflow's recorded operations when it meets the ``submitted`` note."""
        return Append(
            JOURNAL,
            seq,
            workflow_id,
            {
                "seq": seq,
                "at": at,
                "entity_kind": "workflow",
                "entity": workflow_id,
                "workflow_id": workflow_id,
                "name": name,
                "from": None,
                "to": status,
                "note": "submitted",
                "patch": {},
            },
        )


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
    patch sets fields to the values that entry recorded. Counters are not touched:
    they were committed with the entries (after an upgrade from a version that kept
    none, they are recounted from the rows once those have caught up)."""
    mark = await store.lazy_mark()
    entries = await repo.journal_after(mark)
    if entries:
        await _reapply(store, repo, task_rows_of, mark, entries)
    if await repo.recount_requested():
        await repo.recount()
        log.info("recounted the task and workflow counters after an upgrade")
    return len(entries)


async def _reapply(
    store: Store,
    repo: Repository,
    task_rows_of: Callable[[dict[str, Any]], list[dict[str, Any]]],
    mark: int,
    entries: list[dict[str, Any]],
) -> None:
    patches: dict[tuple[str, str], dict[str, Any]] = {}
    pages: dict[str, str] = {}  # task id -> its page (entries from before pages have none)
    submitted: list[str] = []
    for e in entries:
        if e["entity_kind"] == "workflow" and e.get("note") == "submitted":
            submitted.append(str(e["entity"]))
        if e.get("page"):
            pages[str(e["entity"])] = str(e["page"])
        patches.setdefault((str(e["entity_kind"]), str(e["entity"])), {}).update(e.get("patch") or {})
    writes: list[Write] = []
    if submitted:
        workflows = await repo.workflow_rows(submitted)
        existing = await repo.task_ids_of(workflows)
        for wf in workflows:
            for row in task_rows_of(wf):
                if row["id"] not in existing:
                    row.update(patches.pop(("task", row["id"]), {}))
                    writes.append(Repository.rebuilt_task(row, int(wf.get("submitted_seq") or 0)))
    for (kind, rid), patch in patches.items():
        if kind == "task" and rid in pages:
            writes.append(Paged(TASK_PAGES, pages[rid], rid, patch))
        else:  # a workflow's row, or a task row from before pages (moved into one after)
            writes.append(Merge(kind, rid, patch))
    writes.append(store.mark_write(int(entries[-1]["seq"])))
    await store.write(*writes)
    log.info("caught up with the journal", extra={"entries": len(entries), "after": mark})
