"""Checkpoints are named positions in the journal; restore resets recorded state to one.

Restore runs no provider: it sets every task and workflow that changed after
the checkpoint back to the status it had then, through the transition protocol
(:func:`~orchestrator.transitions.restore_change`), journaled like any change.
Whatever did not exist yet, or was still in flight then, is recorded as
``Cancelled``, so nothing is left claiming to run.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from orchestrator.events import EventType
from orchestrator.journal import Change, utcnow
from orchestrator.models import CheckpointRequest
from orchestrator.repository import Repository
from orchestrator.states import FINAL_TASK, FINAL_WORKFLOW, TaskStatus, WorkflowStatus
from orchestrator.task_repository import page_of_key
from orchestrator.transitions import restore_change
from shared.errors import Conflict, NotFound

if TYPE_CHECKING:
    from orchestrator.engine import Engine


class Checkpoints:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.repo: Repository = engine.repo

    async def create(self, req: CheckpointRequest) -> str:
        """A checkpoint at the current journal position."""
        if req.workflow_id is not None and await self.repo.workflow(req.workflow_id) is None:
            raise NotFound(f"no workflow with id {req.workflow_id}")
        cid = str(uuid.uuid4())
        seq = self.engine.transitions.last_seq
        await self.engine.transitions.announce(
            [
                Repository.insert_checkpoint(
                    {
                        "id": cid,
                        "name": req.name,
                        "description": req.description,
                        "workflow_id": req.workflow_id,
                        "seq": seq,
                        "auto": False,
                        "created_at": utcnow(),
                    }
                )
            ],
            (
                EventType.CHECKPOINT_CREATED,
                {"checkpoint_id": cid, "name": req.name, "workflow_id": req.workflow_id, "auto": False},
            ),
        )
        return cid

    async def _pages_of(self, touched: dict[str, dict[str, Any]]) -> dict[str, str]:
        """The page of each task these entries touch: named by the entry, or (entries
        from before pages) by the task's row."""
        tasks = {t: e for t, e in touched.items() if e["entity_kind"] == "task"}
        pages = {t: str(e["page"]) for t, e in tasks.items() if e.get("page")}
        unnamed = [t for t in tasks if t not in pages]
        for row in await self.repo.tasks_by_ids(unnamed) if unnamed else []:
            pages[str(row["id"])] = page_of_key(str(row["lk"]))
        return pages

    def _refuse_if_busy(self) -> None:
        if self.engine.runs or self.engine.submitting:
            raise Conflict(
                "workflows are running; cancel them or wait before restoring",
                details={"running_workflows": sorted(self.engine.runs)},
            )

    async def get(self, checkpoint_id: str) -> dict[str, Any]:
        row = await self.repo.checkpoint(checkpoint_id)
        if row is None:
            raise NotFound(f"no checkpoint with id {checkpoint_id}")
        return row

    async def restore(self, checkpoint_id: str) -> int:
        """Reset recorded state to the checkpoint; returns how many records changed."""
        cp = await self.get(checkpoint_id)
        seq = int(cp["seq"])
        async with self.engine.admin_lock:
            self._refuse_if_busy()
            later = await self.repo.journal_after(seq)
            touched: dict[str, dict[str, Any]] = {}
            for e in later:
                touched[str(e["entity"])] = e  # last entry after the checkpoint
            if not touched:
                return 0
            wanted = set(touched) | {str(e["workflow_id"]) for e in touched.values()}
            before = await self.repo.journal_upto(seq, sorted(wanted))
            then: dict[str, str] = {str(e["entity"]): str(e["to"]) for e in before}
            completed_at_seq = {
                str(e["entity"]): int(e["seq"]) for e in before if e["to"] == str(TaskStatus.COMPLETED)
            }
            changes: list[Change] = []
            submitted: dict[str, bool] = {}
            pages = await self._pages_of(touched)
            for entity, last in touched.items():
                kind = last["entity_kind"]
                wid = str(last["workflow_id"])
                if kind == "task":
                    if wid not in submitted:
                        submitted[wid] = wid in then
                    status = then.get(entity, str(TaskStatus.PENDING) if submitted[wid] else None)
                    if status is None or TaskStatus(status) not in FINAL_TASK:
                        status = str(TaskStatus.CANCELLED)
                else:
                    status = then.get(entity)
                    if status is None or WorkflowStatus(status) not in FINAL_WORKFLOW:
                        status = str(WorkflowStatus.CANCELLED)
                if status == last["to"]:
                    continue
                patch: dict[str, Any] = {}
                if kind == "task" and status == str(TaskStatus.COMPLETED):
                    patch["undone_seq"] = None
                    patch["completed_seq"] = completed_at_seq.get(entity)
                changes.append(
                    restore_change(
                        kind,
                        entity,
                        wid,
                        str(last["name"]),
                        str(last["to"]),
                        status,
                        checkpoint_id=checkpoint_id,
                        patch=patch,
                        page=pages.get(entity),
                    )
                )
            restored = {"checkpoint_id": checkpoint_id, "records": len(changes)}
            # Checked again with no await before the commit is queued: a batch submitted
            # while this read the journal must not be overwritten under its driver.
            self._refuse_if_busy()
            await self.engine.transitions.commit(changes, announce=[(EventType.STATE_RESTORED, restored)])
            return len(changes)
