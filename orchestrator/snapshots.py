"""Snapshots of a workflow's state at its milestones.

A snapshot is compact: status counts, progress, the journal position, and only
the operations the counts cannot name (those that failed, were cancelled or
rolled back). So the total size stays linear in the
number of operations, and any state in between is rebuilt by replaying the
journal up to a position (:meth:`orchestrator.state.StateService.state_at`).
"""

from __future__ import annotations

import uuid
from typing import Any

from orchestrator.journal import utcnow
from orchestrator.repository import Repository
from orchestrator.runtime import TaskState, WorkflowState
from shared.store.writes import Write

_IMPLIED = {"Pending", "Completed"}


class Snapshots:
    """Builds snapshot rows; the caller commits each with the transition it describes."""

    def snapshot_write(
        self,
        wf: WorkflowState,
        reason: str,
        seq: int,
        *,
        all_tasks: bool = False,
        changed: list[TaskState] | None = None,
        failed: TaskState | None = None,
        final_status: str | None = None,
    ) -> Write:
        """A snapshot row to commit together with the transition it describes."""
        tasks = list(wf.tasks.values()) if all_tasks else (changed or [])
        counts = dict(wf.counts) if wf.counts else {}
        if not counts:
            for t in wf.tasks.values():
                counts[str(t.status)] = counts.get(str(t.status), 0) + 1
        if failed is not None:  # the failing transition is in the same write
            counts[str(failed.status)] = counts.get(str(failed.status), 0) - 1
            counts["Failed"] = counts.get("Failed", 0) + 1
        counts = {k: v for k, v in counts.items() if v}
        details: dict[str, Any] = {
            "reason": reason,
            "journal_seq": seq,
            "counts": counts,
            "total_operations": len(wf.tasks),
            "progress": wf.progress,
            # Only what the counts cannot say: which operations did not (yet) complete.
            "operations": {
                t.name: status
                for t in tasks
                if (status := "Failed" if t is failed else str(t.status)) not in _IMPLIED
            },
        }
        if failed is not None:
            details["failed_operation"] = {"id": failed.name, "task_id": failed.id}
        if wf.rollback:
            details["rollback"] = wf.rollback
        return self._row(wf, seq, (final_status or str(wf.status)).lower(), details)

    def submitted(self, wf: WorkflowState, seq: int) -> Write:
        """The snapshot of a workflow as submitted: every operation Pending (so none is
        named), without a pass over its thousands of tasks."""
        n = len(wf.tasks)
        details: dict[str, Any] = {
            "reason": "submitted",
            "journal_seq": seq,
            "counts": {"Pending": n} if n else {},
            "total_operations": n,
            "progress": 0.0 if n else 100.0,
            "operations": {},
        }
        return self._row(wf, seq, str(wf.status).lower(), details)

    @staticmethod
    def _row(wf: WorkflowState, seq: int, state: str, details: dict[str, Any]) -> Write:
        return Repository.insert_snapshot(
            {
                "id": str(uuid.uuid4()),
                "workflow_id": wf.id,
                "seq": seq,
                "timestamp": utcnow(),
                "state": state,
                "details": details,
            }
        )
