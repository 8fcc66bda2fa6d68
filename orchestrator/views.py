"""Every shape the orchestrator's API answers with (seed 004), built from records.

Handlers call a service, then one of these; nothing else turns a record or a row
into JSON. Field names and order are the API contract (``orchestrator/models.py``
holds the matching response schemas).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

from orchestrator.records import BatchSummary, Checkpoint, Task, Workflow
from orchestrator.runtime import Moment, TaskSnapshot, WorkflowState
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


def operation_row_view(row: dict[str, Any]) -> dict[str, Any]:
    """The same entry from a task row as stored, with no record built (what
    :func:`operation_view` shows of ``Task.from_row(row)``)."""
    get = row.get
    undo = get("undo")
    return {
        "id": str(row["name"]),
        "task_id": str(row["id"]),
        "type": get("type"),
        "provider": get("provider"),
        "status": (_TASK_STATUS.get(row["status"]) or TaskStatus(row["status"]))._value_,
        "progress": float(get("progress") or 0.0),
        "attempt": int(get("attempt") or 0),
        "dependencies": list(get("dependency_names") or ()),
        "started_at": get("started_at"),
        "completed_at": get("completed_at"),
        "results": get("results"),
        "output": get("output"),
        "error": get("error"),
        "command": get("command"),
        "args": list(get("args") or ()),
        "undo": None if undo is None else list(undo),
    }


def _argv(argv: tuple[str, ...] | None) -> list[str] | None:
    return None if argv is None else list(argv)


def batch_view(wf: Workflow, tasks: Sequence[TaskLike]) -> dict[str, Any]:
    return {**batch_head(wf, tasks), "operations": [operation_view(t) for t in tasks]}


def batch_head(wf: Workflow, tasks: Sequence[TaskLike]) -> dict[str, Any]:
    """A batch's fields, without its operations."""
    return _batch_fields(wf, progress_of(tasks))


def _batch_fields(wf: Workflow, progress: float) -> dict[str, Any]:
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
        "progress": progress,
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
    counts = dict.fromkeys(_STATUS_VALUES, 0)
    for t in tasks:
        counts[t.status._value_] += 1
    return counts


_STATUS_VALUES = tuple(s.value for s in TaskStatus)
_TASK_STATUS = {s.value: s for s in TaskStatus}
_ACTIVE = frozenset({TaskStatus.RUNNING, TaskStatus.ROLLING_BACK})


class Summary(NamedTuple):
    """What a batch's documents say about its operations as a whole (one instant)."""

    total: int
    counts: dict[str, int]  # by status, every status (zeros included)
    finished: int
    progress: float  # percent done: finished operations count fully, the others by their progress
    running: int  # Running or RollingBack
    step: str | None  # the first running operation's current step
    mean_s: float | None  # how long the finished operations that ran took, on average


class Tally:
    """A batch's operations counted for its documents (:class:`Summary`), kept by adding
    and removing one operation's state at a time: a running batch's tally is updated
    for the operations that changed since it was last read, not counted again."""

    __slots__ = ("counts", "finished", "partial", "ran", "running", "timed", "total")

    def __init__(self) -> None:
        self.total = 0
        self.counts = dict.fromkeys(_STATUS_VALUES, 0)
        self.finished = 0
        self.partial: dict[int, float] = {}  # progress of unfinished operations that report one
        self.running: dict[int, str] = {}  # by position: the current step of each running one
        self.ran = timedelta(0)  # summed exactly, so removing a duration leaves no residue
        self.timed = 0

    def count(
        self,
        index: int,
        name: str,
        status: TaskStatus,
        progress: float,
        message: str | None,
        started_at: datetime | None,
        completed_at: datetime | None,
        sign: int = 1,
    ) -> None:
        """Add (``sign`` 1) or remove (-1) the operation at ``index`` in this state."""
        self.total += sign
        self.counts[status._value_] += sign
        if status in FINAL_TASK:
            self.finished += sign
            if isinstance(started_at, datetime) and isinstance(completed_at, datetime):
                self.ran += (completed_at - started_at) * sign
                self.timed += sign
        elif progress:
            if sign > 0:
                self.partial[index] = progress
            else:
                self.partial.pop(index, None)
        if status in _ACTIVE:
            if sign > 0:
                self.running[index] = message or f"running {name}"
            else:
                self.running.pop(index, None)

    def summary(self) -> Summary:
        total = self.total
        progress = 100.0
        if total:
            progress = round((100.0 * self.finished + sum(self.partial.values())) / total, 2)
        running = self.running
        return Summary(
            total,
            dict(self.counts),
            self.finished,
            progress,
            len(running),
            running[min(running)] if running else None,
            self.ran.total_seconds() / self.timed if self.timed else None,
        )


def summarise(tasks: Sequence[TaskLike]) -> Summary:
    """The summary of a batch's operations (records or snapshots), in one pass."""
    tally = Tally()
    for i, t in enumerate(tasks):
        tally.count(i, t.name, t.status, t.progress, t.message, t.started_at, t.completed_at)
    return tally.summary()


def summarise_rows(rows: Sequence[dict[str, Any]]) -> Summary:
    """The same from task rows as stored (no record built)."""
    tally = Tally()
    for i, row in enumerate(rows):
        get = row.get
        status = row["status"]
        tally.count(
            i,
            str(row["name"]),
            _TASK_STATUS.get(status) or TaskStatus(status),
            float(get("progress") or 0.0),
            get("message"),
            get("started_at"),
            get("completed_at"),
        )
    return tally.summary()


async def batch_document(capture: BatchCapture, fields: tuple[str, ...]) -> bytes:
    """``GET /batch/operations/{id}``'s data, encoded: the batch's ``fields`` (in the
    document's order, ``operations`` last). The operations come encoded from the
    capture (:meth:`~orchestrator.workflows.BatchCapture.operations`), a chunk per
    turn of the event loop, or from what an earlier capture of a running batch
    encoded, for the operations that did not change since."""
    wf, summary = capture.workflow, capture.summary
    whole = {
        **_batch_fields(wf, summary.progress),
        "counts": summary.counts,
        "total_operations": summary.total,
    }
    head = encode_json({name: whole[name] for name in fields if name != "operations"})
    if "operations" not in fields:
        return head
    # Joined, not added: ``+`` copies a megabyte-sized operand ten times slower.
    comma = b"," if len(head) > 2 else b""
    return b"".join((head[:-1], comma, b'"operations":[', await capture.operations(), b"]}"))


async def encode_operations(tasks: Sequence[TaskLike]) -> bytes:
    """The ``operations[]`` entries of ``tasks``, encoded and joined by commas (no brackets),
    a chunk per turn of the event loop."""
    parts = []
    for start in range(0, len(tasks), DOCUMENT_CHUNK):
        if start:
            await asyncio.sleep(0)
        parts.append(encode_json([operation_view(t) for t in tasks[start : start + DOCUMENT_CHUNK]])[1:-1])
    return b",".join(parts)


async def encode_operation_rows(rows: Sequence[dict[str, Any]]) -> bytes:
    """The same from task rows as stored (:func:`operation_row_view`)."""
    parts = []
    for start in range(0, len(rows), DOCUMENT_CHUNK):
        if start:
            await asyncio.sleep(0)
        parts.append(encode_json([operation_row_view(r) for r in rows[start : start + DOCUMENT_CHUNK]])[1:-1])
    return b",".join(parts)


def operation_json(task: TaskLike) -> bytes:
    """One ``operations[]`` entry, encoded."""
    return encode_json(operation_view(task))


# An entry's fields that change while its operation runs come in two runs, split around
# ``dependencies`` (operation_view's order): encoded together, cut where this key begins
# (the values before it, a status, a number and an integer, cannot hold it).
_SECOND_RUN = b',"started_at":'
_FIRST_FACTS = ("id", "task_id", "type", "provider")
_LAST_FACTS = ("command", "args", "undo")

OperationFacts = tuple[bytes, bytes, bytes]


def operation_facts(task: TaskLike) -> OperationFacts:
    """What never changes of a task's ``operations[]`` entry, encoded: the runs of fields
    before, between and after the two runs of those that change (:func:`operation_entry`)."""
    view = operation_view(task)
    return (
        encode_json({k: view[k] for k in _FIRST_FACTS})[:-1],
        encode_json({"dependencies": view["dependencies"]})[1:-1],
        encode_json({k: view[k] for k in _LAST_FACTS})[1:],
    )


def operation_entry(facts: OperationFacts, moment: Moment) -> bytes:
    """A running task's ``operations[]`` entry at ``moment``, encoded: its facts as encoded
    once, and the fields that change (the same bytes as ``operation_view`` encoded)."""
    status, progress, attempt, _, output, error, results, started_at, completed_at = moment
    changing = encode_json(
        {
            "status": status._value_,
            "progress": progress,
            "attempt": attempt,
            "started_at": started_at,
            "completed_at": completed_at,
            "results": results,
            "output": output,
            "error": error,
        }
    )
    cut = changing.index(_SECOND_RUN)
    first, dependencies, last = facts
    return b"".join((first, b",", changing[1:cut], b",", dependencies, changing[cut:-1], b",", last))


async def progress_document(capture: BatchCapture) -> bytes:
    """``/state/workflows/{id}/progress``'s data, encoded."""
    return encode_json(progress_fields(capture.workflow, capture.summary))


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
    return progress_fields(wf, summarise(tasks))


def progress_fields(wf: Workflow, summary: Summary) -> dict[str, Any]:
    """The progress of ``wf`` from the summary of its operations."""
    remaining = summary.total - summary.finished
    eta: float | None
    if remaining == 0:
        eta = 0
    elif summary.mean_s is not None:
        lanes = max(1, min(int(wf.parallel_limit or 1), remaining))
        eta = round(summary.mean_s * remaining / lanes, 1)
    else:
        eta = None
    if summary.step is not None:
        step = summary.step
    elif remaining == 0:
        step = wf.status.value
    else:
        step = "waiting for dependencies"
    return {
        "workflow_id": wf.id,
        "status": wf.status.value,
        "progress": summary.progress,
        "current_step": step,
        "total_steps": summary.total,
        "completed_steps": summary.finished,
        "running_steps": summary.running,
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
