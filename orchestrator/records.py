"""Workflows, tasks and checkpoints as the store holds them: frozen records (workflows and
tasks: named tuples, built by position).

The repository's typed reads turn rows into these at its boundary, so services
and views see attributes with types (statuses as enums), never ``dict[str, Any]``.
Nothing here runs a workflow: the engine's in-memory state is :mod:`orchestrator.runtime`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from orchestrator.states import FINAL_TASK, TaskStatus, WorkflowStatus

DEFAULT_KIND = "batch"  # the kind of a workflow submitted as a batch


def _tuple(value: Any) -> tuple[Any, ...]:
    return tuple(value) if value else ()


# Statuses by their stored value: a dict lookup instead of the enum's call (~1 µs a row).
_TASK_STATUS = {s.value: s for s in TaskStatus}


class Task(NamedTuple):
    """One operation of a workflow, as recorded. A tuple, like the running task's
    :class:`~orchestrator.runtime.TaskSnapshot`: a 5,000-operation document makes 5,000
    of these, and a frozen dataclass of 23 fields built by keyword took ~8 µs each
    (40 ms a document), a tuple built by position ~1 µs."""

    id: str
    workflow_id: str | None
    name: str
    status: TaskStatus
    index: int = 0  # type: ignore[assignment]  # (shadows tuple.index, which nothing calls)
    type: str | None = None
    provider: str | None = None
    command: str | None = None
    args: tuple[str, ...] = ()
    undo: tuple[str, ...] | None = None  # a command operation's undo argv
    dependencies: tuple[str, ...] = ()  # task ids
    dependency_names: tuple[str, ...] = ()  # operation ids
    attempt: int = 0
    max_attempts: int | None = None
    progress: float = 0.0
    message: str | None = None
    output: str | None = None
    error: str | None = None
    results: dict[str, Any] | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Task:
        get = row.get
        workflow_id = get("workflow_id")
        status = row["status"]
        undo = get("undo")
        return cls(
            str(row["id"]),
            None if workflow_id is None else str(workflow_id),
            str(row["name"]),
            _TASK_STATUS.get(status) or TaskStatus(status),
            int(get("index") or 0),
            get("type"),
            get("provider"),
            get("command"),
            _tuple(get("args")),
            None if undo is None else tuple(undo),
            _tuple(get("dependencies")),
            _tuple(get("dependency_names")),
            int(get("attempt") or 0),
            get("max_attempts"),
            float(get("progress") or 0.0),
            get("message"),
            get("output"),
            get("error"),
            get("results"),
            get("created_at"),
            get("started_at"),
            get("completed_at"),
        )

    @property
    def final(self) -> bool:
        return self.status in FINAL_TASK

    @property
    def duration_s(self) -> float | None:
        """How long it ran, if it started and finished."""
        if isinstance(self.started_at, datetime) and isinstance(self.completed_at, datetime):
            return (self.completed_at - self.started_at).total_seconds()
        return None


_WORKFLOW_STATUS = {s.value: s for s in WorkflowStatus}


class Workflow(NamedTuple):
    """A submitted batch or single-purpose workflow, as recorded (without its operations'
    specs). A tuple, as :class:`Task` is: a page of 50 is built in a few µs each."""

    id: str
    name: str
    status: WorkflowStatus
    kind: str = DEFAULT_KIND
    version: str | None = None
    description: str | None = None
    environment: str | None = None
    parallel_limit: int | None = None
    rollback_enabled: bool | None = None
    error: str | None = None
    rollback: dict[str, Any] | None = None
    checkpoint_id: str | None = None
    submitted_by: str | None = None
    operation_count: int | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    duration_s: float | None = None
    submitted_seq: int | None = None  # its submission's journal position: where its task pages are

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Workflow:
        get = row.get
        status = row["status"]
        return cls(
            str(row["id"]),
            str(row["name"]),
            _WORKFLOW_STATUS.get(status) or WorkflowStatus(status),
            str(get("kind") or DEFAULT_KIND),
            get("version"),
            get("description"),
            get("environment"),
            get("parallel_limit"),
            get("rollback_enabled"),
            get("error"),
            get("rollback"),
            get("checkpoint_id"),
            get("submitted_by"),
            get("operation_count"),
            get("created_at"),
            get("started_at"),
            get("completed_at"),
            get("duration_s"),
            get("submitted_seq"),
        )


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A named position in the journal (``auto``: taken before a workflow started)."""

    id: str
    name: str
    seq: int
    description: str | None = None
    workflow_id: str | None = None
    auto: bool = False
    created_at: datetime | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Checkpoint:
        return cls(
            id=str(row["id"]),
            name=str(row["name"]),
            seq=int(row["seq"]),
            description=row.get("description"),
            workflow_id=row.get("workflow_id"),
            auto=bool(row.get("auto")),
            created_at=row.get("created_at"),
        )


@dataclass(frozen=True, slots=True)
class BatchSummary:
    """A listed workflow: its tasks counted by status and, for a small one, the tasks."""

    workflow: Workflow
    counts: dict[str, int]
    tasks: list[Task] | None = None  # None: not listed (a big batch, or the summary view)

    @property
    def total_operations(self) -> int:
        return sum(self.counts.values())
