"""Statuses and the one table of allowed transitions.

:mod:`orchestrator.transitions` checks every change of status against this table
before it builds the change. A restore is not a move along the table: it resets
recorded state to a checkpoint, and may set any recorded status to a final one
(:func:`check_restore`)."""

from __future__ import annotations

from enum import StrEnum


class TaskStatus(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    COMPLETED = "Completed"
    FAILED = "Failed"
    CANCELLED = "Cancelled"
    ROLLING_BACK = "RollingBack"
    ROLLED_BACK = "RolledBack"


class WorkflowStatus(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    COMPLETED = "Completed"
    FAILED = "Failed"
    CANCELLED = "Cancelled"


FINAL_TASK = frozenset(
    {TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.ROLLED_BACK}
)
FINAL_WORKFLOW = frozenset({WorkflowStatus.COMPLETED, WorkflowStatus.FAILED, WorkflowStatus.CANCELLED})

TASK_TRANSITIONS: dict[TaskStatus, frozenset[TaskStatus]] = {
    TaskStatus.PENDING: frozenset({TaskStatus.RUNNING, TaskStatus.CANCELLED, TaskStatus.FAILED}),
    # Running -> Pending is a retry after a failed attempt or an interrupted process.
    TaskStatus.RUNNING: frozenset(
        {TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.PENDING}
    ),
    TaskStatus.COMPLETED: frozenset({TaskStatus.ROLLING_BACK}),
    TaskStatus.FAILED: frozenset({TaskStatus.ROLLING_BACK}),
    TaskStatus.CANCELLED: frozenset(),
    # A failed undo leaves the operation Failed with the reason in its error.
    TaskStatus.ROLLING_BACK: frozenset({TaskStatus.ROLLED_BACK, TaskStatus.FAILED}),
    TaskStatus.ROLLED_BACK: frozenset(),
}

WORKFLOW_TRANSITIONS: dict[WorkflowStatus, frozenset[WorkflowStatus]] = {
    WorkflowStatus.PENDING: frozenset(
        {WorkflowStatus.RUNNING, WorkflowStatus.CANCELLED, WorkflowStatus.FAILED}
    ),
    WorkflowStatus.RUNNING: frozenset(
        {WorkflowStatus.COMPLETED, WorkflowStatus.FAILED, WorkflowStatus.CANCELLED}
    ),
    WorkflowStatus.COMPLETED: frozenset(),
    WorkflowStatus.FAILED: frozenset(),
    WorkflowStatus.CANCELLED: frozenset(),
}


class IllegalTransition(RuntimeError):
    """A bug: code asked for a transition the table does not allow."""


def check_task_transition(current: TaskStatus, new: TaskStatus) -> None:
    if new not in TASK_TRANSITIONS[current]:
        raise IllegalTransition(f"task cannot go from {current} to {new}")


def check_workflow_transition(current: WorkflowStatus, new: WorkflowStatus) -> None:
    if new not in WORKFLOW_TRANSITIONS[current]:
        raise IllegalTransition(f"workflow cannot go from {current} to {new}")


def check_restore(current: TaskStatus | WorkflowStatus, new: TaskStatus | WorkflowStatus) -> None:
    """A restore sets a record to the final status it had at a checkpoint (or to
    ``Cancelled`` when it was not final then): never to a status that claims to run."""
    final = FINAL_TASK if isinstance(new, TaskStatus) else FINAL_WORKFLOW
    if new not in final or type(current) is not type(new):
        raise IllegalTransition(f"a restore cannot set {current} to {new}")
