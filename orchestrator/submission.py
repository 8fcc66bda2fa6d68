"""A batch as its submission records it: the workflow's runtime state, and the one
write that records it (workflow row, task rows, journal entry, checkpoint, first
snapshot) with the events that announce it. Pure: no I/O; the engine commits it.

A caller may need something recorded in the same commit (the request's audit
record, :meth:`shared.security.audit.AuditLog.record_with`): a :data:`Join` takes the
engine's commit and calls it with the writes to add, again if that write failed for
a reason of the joiner's (a new position and new task ids each time: positions are
taken in the order commits are queued)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import orjson

from orchestrator.events import EventType
from orchestrator.ids import task_ids
from orchestrator.journal import Journal
from orchestrator.models import BatchRequest
from orchestrator.repository import Repository
from orchestrator.runtime import WorkflowState
from orchestrator.snapshots import Snapshots
from orchestrator.states import WorkflowStatus
from orchestrator.task_repository import page_id
from orchestrator.tasks import TaskFactory
from orchestrator.transitions import Announcement
from shared.store.writes import Write

Commit = Callable[[Sequence[Write]], Awaitable[WorkflowState]]
Join = Callable[[Commit], Awaitable[WorkflowState]]


@dataclass
class Submission:
    """What submitting a batch records and announces."""

    wf: WorkflowState
    writes: list[Write]
    events: tuple[Announcement, ...]


@dataclass(frozen=True)
class Recorder:
    """Builds submissions with one engine's task factory and snapshots."""

    tasks: TaskFactory
    snapshots: Snapshots

    def build(
        self,
        batch: BatchRequest,
        *,
        seq: int,
        now: datetime,
        kind: str,
        wid: str,
        task_id: str | None,
        submitted_by: str | None,
    ) -> Submission:
        """The batch (validated) submitted at journal position ``seq``, its tasks Pending
        and the workflow Running (dependencies not linked yet: ``Engine._link``)."""
        wf = WorkflowState(
            id=wid,
            name=batch.name,
            kind=kind,
            status=WorkflowStatus.RUNNING,
            parallel_limit=batch.parallel_limit,
            rollback_enabled=batch.rollback_enabled,
            created_at=now,
            started_at=now,
            version=batch.version,
        )
        ops = batch.operations
        # A task's id names the page of its row (orchestrator/ids.py), unless the caller
        # chose it (a single-purpose workflow's task id is the workflow's).
        if task_id and len(ops) == 1:
            ids = [task_id]
        else:
            ids = task_ids(seq, len(ops)) or [str(uuid.uuid4()) for _ in ops]
        states, rows = self.tasks.submitted(wid, ops, ids, now, lambda index: page_id(seq, index))
        wf.tasks = {t.name: t for t in states}
        task_rows = Repository.create_tasks(rows, seq)
        checkpoint_id = str(uuid.uuid4())
        wf.checkpoint_id = checkpoint_id
        wf_row = {
            "id": wid,
            "name": batch.name,
            "version": batch.version,
            "kind": kind,
            "description": batch.description,
            "environment": batch.environment,
            "storage_backend": batch.storage_backend,
            "parallel_limit": batch.parallel_limit,
            "rollback_enabled": batch.rollback_enabled,
            "status": str(WorkflowStatus.RUNNING),
            "created_at": now,
            "started_at": now,
            "completed_at": None,
            "error": None,
            "rollback": None,
            "checkpoint_id": checkpoint_id,
            "submitted_by": submitted_by,
            "operation_count": len(batch.operations),
            "updated_seq": seq,
            "submitted_seq": seq,
            # The operations as submitted and their task ids, as JSON text: only resume,
            # rollback and catch-up read them, and a nested document of 5,000 operations
            # cost the store 120 ms to insert. The task rows themselves are applied
            # lazily (see journal.py); these are what rebuilds them after a crash.
            "operations_json": batch.operations_json,
            "task_ids_json": orjson.dumps(ids).decode(),
        }
        checkpoint_name = f"before {kind} {batch.name}"
        writes: list[Write] = [
            *Repository.insert_workflow(wf_row),
            *task_rows,
            Journal.submission(seq, wid, batch.name, str(WorkflowStatus.RUNNING), now),
            Repository.insert_checkpoint(
                {
                    "id": checkpoint_id,
                    "name": checkpoint_name,
                    "description": f"automatic checkpoint before workflow {wid}",
                    "workflow_id": wid,
                    "seq": seq - 1,
                    "auto": True,
                    "created_at": now,
                }
            ),
            self.snapshots.submitted(wf, seq),
        ]
        events: tuple[Announcement, ...] = (
            (
                EventType.CHECKPOINT_CREATED,
                {"checkpoint_id": checkpoint_id, "workflow_id": wid, "auto": True, "name": checkpoint_name},
            ),
            (
                EventType.BATCH_STATUS_CHANGED,
                {
                    "workflow_id": wid,
                    "batch_id": wid,
                    "name": batch.name,
                    "status": str(WorkflowStatus.RUNNING),
                    "kind": kind,
                    "operations": len(batch.operations),
                    "seq": seq,
                },
            ),
        )
        return Submission(wf, writes, events)
