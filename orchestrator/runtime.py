"""In-memory state of a workflow while it runs, rebuilt from the store on resume."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from orchestrator.models import OperationSpec, RetryPolicy
from orchestrator.states import FINAL_TASK, TaskStatus, WorkflowStatus


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

    def recount(self) -> None:
        self.counts = Counter(str(t.status) for t in self.tasks.values())

    @property
    def progress(self) -> float:
        """Percent done: finished operations count fully, running ones by their progress."""
        if not self.tasks:
            return 100.0
        total = sum(100.0 if t.final else t.progress for t in self.tasks.values())
        return round(total / len(self.tasks), 2)
