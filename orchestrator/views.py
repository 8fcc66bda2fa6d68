"""Every shape the orchestrator's API answers with (seed 004), built from records.

Handlers call a service, then one of these; nothing else turns a record or a row
into JSON. Field names and order are the API contract (``orchestrator/models.py``
holds the matching response schemas).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from orchestrator.records import BatchSummary, Checkpoint, Task, Workflow
from orchestrator.runtime import TaskSnapshot, WorkflowState
from orchestrator.states import FINAL_TASK, TaskStatus, WorkflowStatus
from shared.web.envelope import encode_json

if TYPE_CHECKING:
    from orchestrator.state import RollbackStatistics, StateStatistics, SystemHealth, SystemMetrics
    from orchestrator.workflows import BatchCapture

DOCUMENT_CHUNK = 1_000  # operations encoded between two turns of the event loop (~2 ms)
# A task as a document shows it: its record, or a running task's snapshot.
TaskLike = Task | TaskSnapshot

BYTES_PER_JOURNAL_ENTRY = 256  # measured average of a journal row, for a checkpoint's size


def human_size(n_bytes: int) -> str:
    size = float(n_bytes)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


# -- tasks and batches -------------------------------------------------------------------


def task_view(task: Task) -> dict[str, Any]:
    """``/tasks`` entry: the seed's fields first, then what else a task knows."""
    return {
        "id": task.id,
        "name": task.name,
        "command": task.command,
        "args": list(task.args),
        "dependencies": list(task.dependencies),
        "status": task.status._value_,  # .value is a descriptor call, ~15 times slower
        "created_at": task.created_at,
        "started_at": task.started_at,
        "completed_at": task.completed_at,
        "output": task.output,
        "error": task.error,
        "workflow_id": task.workflow_id,
        "type": task.type,
        "provider": task.provider,
        "attempt": task.attempt,
        "max_attempts": task.max_attempts,
        "progress": task.progress,
        "message": task.message,
        "results": task.results,
        "undo": _argv(task.undo),
    }


def operation_view(task: TaskLike) -> dict[str, Any]:
    """A batch's ``operations[]`` entry."""
    return {
        "id": task.name,
        "task_id": task.id,
        "type": task.type,
        "provider": task.provider,
        "status": task.status._value_,
        "progress": task.progress,
        "attempt": task.attempt,
        "dependencies": list(task.dependency_names),
        "started_at": task.started_at,
        "completed_at": task.completed_at,
        "results": task.results,
        "output": task.output,
        "error": task.error,
        "command": task.command,
        "args": list(task.args),
        "undo": _argv(task.undo),
    }


def _argv(argv: tuple[str, ...] | None) -> list[str] | None:
    return None if argv is None else list(argv)


def batch_view(wf: Workflow, tasks: Sequence[TaskLike]) -> dict[str, Any]:
    return {**batch_head(wf, tasks), "operations": [operation_view(t) for t in tasks]}


def batch_head(wf: Workflow, tasks: Sequence[TaskLike]) -> dict[str, Any]:
    """A batch's fields, without its operations."""
    return {
        "batch_id": wf.id,
        "name": wf.name,
        "version": wf.version,
        "kind": wf.kind,
        "status": wf.status.value,
        "created_at": wf.created_at,
        "started_at": wf.started_at,
        "completed_at": wf.completed_at,
        "parallel_limit": wf.parallel_limit,
        "rollback_enabled": wf.rollback_enabled,
        "progress": progress_of(tasks),
        "error": wf.error,
        "rollback": wf.rollback,
        "checkpoint_id": wf.checkpoint_id,
    }


def batch_list_view(item: BatchSummary) -> dict[str, Any]:
    """A ``GET /batch/operations`` entry: the batch, its operations counted by status, and
    the operations themselves only when listed (a small batch, full view)."""
    if item.tasks is not None:
        doc = batch_view(item.workflow, item.tasks)
    else:  # counted, not listed: no operation to build
        doc = batch_head(item.workflow, ())
        total = item.total_operations
        done = sum(n for status, n in item.counts.items() if TaskStatus(status) in FINAL_TASK)
        doc["progress"] = round(done / total * 100, 2) if total else 100.0
    doc["counts"] = item.counts
    doc["total_operations"] = item.total_operations
    return doc


def status_counts(tasks: Sequence[TaskLike]) -> dict[str, int]:
    """How many operations are in each status (every status, zeros included)."""
    counts = dict.fromkeys((s.value for s in TaskStatus), 0)
    for t in tasks:
        counts[t.status._value_] += 1
    return counts


async def batch_document(capture: BatchCapture, fields: tuple[str, ...]) -> bytes:
    """``GET /batch/operations/{id}``'s data, encoded: the batch's ``fields`` (in the
    document's order, ``operations`` last), its operations encoded a chunk per turn
    of the event loop."""
    wf, tasks = capture.workflow, capture.tasks
    whole = {**batch_head(wf, tasks), "counts": status_counts(tasks), "total_operations": len(tasks)}
    head = encode_json({name: whole[name] for name in fields if name != "operations"})
    if "operations" not in fields:
        return head
    parts = []
    for start in range(0, len(tasks), DOCUMENT_CHUNK):
        if start:
            await asyncio.sleep(0)
        chunk = tasks[start : start + DOCUMENT_CHUNK]
        parts.append(encode_json([operation_view(t) for t in chunk])[1:-1])
    operations = b'"operations":[' + b",".join(parts) + b"]"
    return head[:-1] + (b"," if len(head) > 2 else b"") + operations + b"}"


async def progress_document(capture: BatchCapture) -> bytes:
    """``/state/workflows/{id}/progress``'s data, encoded."""
    return encode_json(workflow_progress(capture.workflow, capture.tasks))


def submitted_view(wf: WorkflowState) -> dict[str, Any]:
    """``POST /batch/execute``'s answer: the batch just started, every operation pending."""
    pending = TaskStatus.PENDING.value  # an enum member's .value is a descriptor call: once
    return {
        "batch_id": wf.id,
        "status": WorkflowStatus.RUNNING.value,  # as submitted, whatever it has reached since
        "checkpoint_id": wf.checkpoint_id,
        "operations": [
            {"id": t.name, "task_id": t.id, "status": pending, "progress": 0.0} for t in wf.tasks.values()
        ],
    }


def progress_of(tasks: Sequence[TaskLike]) -> float:
    """Percent done: finished operations count fully, the others by their progress."""
    if not tasks:
        return 100.0
    total = sum(100.0 if t.final else t.progress for t in tasks)
    return round(total / len(tasks), 2)


def workflow_progress(wf: Workflow, tasks: Sequence[TaskLike]) -> dict[str, Any]:
    """``/state/workflows/{id}/progress``: percent, current step and an ETA in seconds."""
    finished = [t for t in tasks if t.final]
    running = [t for t in tasks if t.status in (TaskStatus.RUNNING, TaskStatus.ROLLING_BACK)]
    durations = [d for t in finished if (d := t.duration_s) is not None]
    remaining = len(tasks) - len(finished)
    eta: float | None
    if remaining == 0:
        eta = 0
    elif durations:
        lanes = max(1, min(int(wf.parallel_limit or 1), remaining))
        eta = round(sum(durations) / len(durations) * remaining / lanes, 1)
    else:
        eta = None
    if running:
        current = running[0]
        step = current.message or f"running {current.name}"
    elif remaining == 0:
        step = wf.status.value
    else:
        step = "waiting for dependencies"
    return {
        "workflow_id": wf.id,
        "status": wf.status.value,
        "progress": progress_of(tasks),
        "current_step": step,
        "total_steps": len(tasks),
        "completed_steps": len(finished),
        "running_steps": len(running),
        "estimated_time_remaining": eta,
    }


# -- state: snapshots, journal, system --------------------------------------------------


def snapshot_view(row: dict[str, Any]) -> dict[str, Any]:
    """The seed's snapshot shape."""
    return {
        "snapshot_id": row["id"],
        "timestamp": row["timestamp"],
        "state": row["state"],
        "details": row.get("details", {}),
    }


def journal_entry_view(entry: dict[str, Any]) -> dict[str, Any]:
    """One recorded transition of ``/state/workflows/{id}/journal``."""
    return {
        "seq": entry["seq"],
        "at": entry["at"],
        "entity_kind": entry["entity_kind"],
        "entity_id": entry["entity"],
        "name": entry["name"],
        "from": entry.get("from"),
        "to": entry["to"],
        "attempt": entry.get("attempt"),
        "note": entry.get("note"),
    }


def system_metrics_view(metrics: SystemMetrics) -> dict[str, Any]:
    return {
        "total_workflows": metrics.total_workflows,
        "active_workflows": metrics.active_workflows,
        "completed_workflows": metrics.completed_workflows,
        "failed_workflows": metrics.failed_workflows,
        "cancelled_workflows": metrics.cancelled_workflows,
        "system_load": {
            "cpu_usage": metrics.cpu_percent,
            "memory_usage": metrics.memory_mb,
            "disk_usage": metrics.disk_percent,
        },
    }


def system_health_view(health: SystemHealth) -> dict[str, Any]:
    return {
        "overall_status": health.overall.value,
        "components": {
            "storage": health.storage.value,
            "batch_coordinator": health.batch_coordinator.value,
            "monitoring": health.monitoring.value,
        },
        "last_check": health.checked_at,
    }


def state_statistics_view(stats: StateStatistics) -> dict[str, Any]:
    return {
        "total_workflows": stats.total_workflows,
        "active_snapshots": stats.snapshots,
        "storage_usage": stats.storage_usage,
        "average_workflow_duration": stats.mean_duration_s,
        "workflows_by_status": stats.workflows_by_status,
        "workflows_by_kind": stats.workflows_by_kind,
        "total_tasks": sum(stats.tasks_by_status.values()),
        "tasks_by_status": stats.tasks_by_status,
        "total_checkpoints": stats.checkpoints,
        "retention": {"days": stats.retention_days, "pruned": stats.pruned},
    }


# -- checkpoints and rollbacks ------------------------------------------------------------


def checkpoint_view(cp: Checkpoint, *, operations_count: int | None = None) -> dict[str, Any]:
    """A checkpoint; with ``operations_count`` (how many operations stood completed at it)
    for the detail route."""
    out: dict[str, Any] = {
        "id": cp.id,
        "name": cp.name,
        "description": cp.description,
        "created_at": cp.created_at,
        # Journal ids are positions, so the journal held ``seq`` entries then.
        "size": human_size(cp.seq * BYTES_PER_JOURNAL_ENTRY),
        "journal_seq": cp.seq,
        "workflow_id": cp.workflow_id,
        "automatic": cp.auto,
    }
    if operations_count is not None:
        out["operations_count"] = operations_count
    return out


def rollback_statistics_view(stats: RollbackStatistics) -> dict[str, Any]:
    return {
        "total_checkpoints": stats.total_checkpoints,
        "total_rollbacks": stats.total_rollbacks,
        "success_rate": stats.success_rate,
        "average_rollback_time": stats.mean_duration_s,
    }
