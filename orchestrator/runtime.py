"""In-memory state of a workflow while it runs, rebuilt from the store on resume."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from orchestrator.models import OperationSpec, RetryPolicy
from orchestrator.records import Workflow
from orchestrator.states import FINAL_TASK, TaskStatus, WorkflowStatus

# What changes about a task while it runs, read at one instant (TaskState.moment):
# status, progress, attempt, message, output, error, results, started_at, completed_at.
Moment = tuple[
    TaskStatus,
    float,
    int,
    str | None,
    str | None,
    str | None,
    dict[str, Any] | None,
    datetime | None,
    datetime | None,
]
# What never changes about a task once submitted (TaskState.facts): id, workflow_id,
# name, type, provider, dependency_names, max_attempts, created_at, command, args, undo.
Facts = tuple[
    str,
    str,
    str,
    str,
    str,
    tuple[str, ...],
    int,
    datetime | None,
    str | None,
    tuple[str, ...],
    tuple[str, ...] | None,
]


class TaskSnapshot(NamedTuple):
    """A running task as a document shows it: the fields of its record
    (:class:`~orchestrator.records.Task`) that documents read, at one instant. A tuple,
    so that thousands are made in a few milliseconds (records take ten times longer)."""

    id: str
    workflow_id: str
    name: str
    type: str
    provider: str
    dependency_names: tuple[str, ...]
    max_attempts: int
    created_at: datetime | None
    command: str | None
    args: tuple[str, ...]
    undo: tuple[str, ...] | None
    status: TaskStatus
    progress: float
    attempt: int
    message: str | None
    output: str | None
    error: str | None
    results: dict[str, Any] | None
    started_at: datetime | None
    completed_at: datetime | None

    @property
    def final(self) -> bool:
        return self.status in FINAL_TASK

    @property
    def duration_s(self) -> float | None:
        """How long it ran, if it finished."""
        started, completed = self.started_at, self.completed_at
        return None if started is None or completed is None else (completed - started).total_seconds()


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
    # What its provider says it runs (``/tasks``' command and args), as submission recorded it.
    command: str | None = None
    args: tuple[str, ...] = ()
    # The page holding its row (orchestrator/task_repository.py), set when it is recorded.
    page: str | None = None
    _facts: Facts | None = field(default=None, repr=False, compare=False)

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
            self.message or None,
            self.output,
            self.error,
            self.results,
            self.started_at,
            self.completed_at,
        )

    @property
    def facts(self) -> Facts:
        """What never changes about it (worked out once)."""
        if self._facts is None:
            self._facts = (
                self.id,
                self.workflow_id,
                self.name,
                str(self.spec.type),
                self.provider,
                tuple(ref.id for ref in self.spec.dependency_refs),
                self.retry.max_attempts,
                self.created_at,
                self.command,
                self.args,
                None if (undo := self.spec.undo_argv) is None else tuple(undo),
            )
        return self._facts

    def snapshot(self, moment: Moment) -> TaskSnapshot:
        """The task as documents show it at ``moment``."""
        return TaskSnapshot._make(self.facts + moment)

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
    completed_at: datetime | None = None  # set with its final status (its documents show it)

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
            completed_at=self.completed_at,
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
