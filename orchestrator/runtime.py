"""In-memory state of a workflow while it runs, rebuilt from the store on resume."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from orchestrator.models import OperationSpec, RetryPolicy
from orchestrator.records import Task, Workflow
from orchestrator.states import FINAL_TASK, TaskStatus, WorkflowStatus

# What changes about a task while it runs, read at one instant (TaskState.moment):
# status, progress, attempt, message, output, error, results, started_at, completed_at.
Moment = tuple[
    TaskStatus,
    float,
    int,
    str,
    str | None,
    str | None,
    dict[str, Any] | None,
    datetime | None,
    datetime | None,
]


@dataclass
class TaskState:
    """A task (one operation of a batch) as the scheduler sees it."""

    id: str
    workflow_id: str
    name: str
    index: int
    spec: OperationSpec
    provider: str
    status: TaskStatus = TaskStatus.PENDING
    attempt: int = 0
    progress: float = 0.0
    message: str = ""
    output: str | None = None
    error: str | None = None
    results: dict[str, Any] | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    completed_seq: int | None = None
    timeout_s: float = 300.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    deps: list[tuple[str, str]] = field(default_factory=list)  # (name, kind)
    dependents: list[tuple[str, str]] = field(default_factory=list)
    waiting: int = 0  # dependencies not yet satisfied

    @property
    def final(self) -> bool:
        return self.status in FINAL_TASK

    def moment(self) -> Moment:
        """What changes while it runs, as one value (cheap: a document of thousands of
        operations is read in one synchronous pass, so it shows a single instant)."""
        return (
            self.status,
            self.progress,
            self.attempt,
            self.message,
            self.output,
            self.error,
            self.results,
            self.started_at,
            self.completed_at,
        )

    def record(self, moment: Moment) -> Task:
        """The task as its row would record it at ``moment`` (the fields documents show)."""
        status, progress, attempt, message, output, error, results, started_at, completed_at = moment
        return Task(
            id=self.id,
            workflow_id=self.workflow_id,
            name=self.name,
            status=status,
            index=self.index,
            type=str(self.spec.type),
            provider=self.provider,
            dependency_names=tuple(ref.id for ref in self.spec.dependency_refs),
            attempt=attempt,
            max_attempts=self.retry.max_attempts,
            progress=progress,
            message=message or None,
            output=output,
            error=error,
            results=results,
            created_at=self.created_at,
            started_at=started_at,
            completed_at=completed_at,
        )

    def event_data(self) -> dict[str, Any]:
        return {
            "task_id": self.id,
            "operation_id": self.name,
            "name": self.name,
            "attempt": self.attempt,
            "progress": self.progress,
            "error": self.error,
        }


@dataclass
class WorkflowState:
    id: str
    name: str
    kind: str
    status: WorkflowStatus
    parallel_limit: int
    rollback_enabled: bool
    created_at: datetime | None = None
    started_at: datetime | None = None
    tasks: dict[str, TaskState] = field(default_factory=dict)  # by name, in order
    rollback: dict[str, Any] | None = None
    error: str | None = None
    checkpoint_id: str | None = None
    counts: Counter[str] = field(default_factory=Counter)  # tasks by status, kept current
    version: str | None = None

    def capture(self) -> list[tuple[TaskState, Moment]]:
        """Every task with what changes about it, in one synchronous pass: no transition
        can land in between, so the result is one consistent instant of the workflow."""
        return [(t, t.moment()) for t in self.tasks.values()]

    def record(self) -> Workflow:
        """The workflow as its row records it (while it runs: not yet completed)."""
        return Workflow(
            id=self.id,
            name=self.name,
            status=self.status,
            kind=self.kind,
            version=self.version,
            parallel_limit=self.parallel_limit,
            rollback_enabled=self.rollback_enabled,
            error=self.error,
            rollback=self.rollback,
            checkpoint_id=self.checkpoint_id,
            operation_count=len(self.tasks),
            created_at=self.created_at,
            started_at=self.started_at,
        )

    def recount(self) -> None:
        self.counts = Counter(str(t.status) for t in self.tasks.values())

    @property
    def progress(self) -> float:
        """Percent done: finished operations count fully, running ones by their progress."""
        if not self.tasks:
            return 100.0
        total = sum(100.0 if t.final else t.progress for t in self.tasks.values())
        return round(total / len(self.tasks), 2)
