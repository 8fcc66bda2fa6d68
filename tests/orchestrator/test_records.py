"""Records at the repository boundary: rows become frozen values with enum statuses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from orchestrator.records import Checkpoint, Task, Workflow
from orchestrator.states import TaskStatus, WorkflowStatus
from orchestrator.views import operation_view, progress_of, task_view, workflow_progress

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def task(name: str, status: str, **row: object) -> Task:
    return Task.from_row({"id": f"t-{name}", "workflow_id": "w", "name": name, "status": status, **row})


def test_a_task_row_becomes_a_frozen_record_with_an_enum_status() -> None:
    t = task("a", "Completed", started_at=NOW, completed_at=NOW + timedelta(seconds=3), progress=None)
    assert t.status is TaskStatus.COMPLETED and t.final and t.duration_s == 3.0
    assert (t.progress, t.attempt, t.args, t.dependencies) == (0.0, 0, (), ())  # absent or null
    with pytest.raises(AttributeError):  # a tuple's fields cannot be set
        t.status = TaskStatus.FAILED  # type: ignore[misc]


def test_a_status_the_enums_do_not_know_is_refused() -> None:
    with pytest.raises(ValueError):
        task("a", "Done")
    with pytest.raises(ValueError):
        Workflow.from_row({"id": "w", "name": "n", "status": "RollingBack"})


def test_a_workflow_without_a_kind_is_a_batch_and_a_checkpoint_knows_its_position() -> None:
    wf = Workflow.from_row({"id": "w", "name": "n", "status": "Running", "parallel_limit": 2})
    assert wf.kind == "batch" and wf.status is WorkflowStatus.RUNNING
    cp = Checkpoint.from_row({"id": "c", "name": "n", "seq": "7"})
    assert cp.seq == 7 and not cp.auto


def test_views_show_statuses_as_the_api_s_strings() -> None:
    t = task("a", "RollingBack", progress=40)
    assert task_view(t)["status"] == "RollingBack" and type(task_view(t)["status"]) is str
    assert operation_view(t)["progress"] == 40.0


def test_progress_counts_finished_tasks_fully_and_estimates_the_rest() -> None:
    wf = Workflow.from_row({"id": "w", "name": "n", "status": "Running", "parallel_limit": 2})
    done = task("a", "Completed", started_at=NOW, completed_at=NOW + timedelta(seconds=10))
    running = task("b", "Running", progress=50.0, message="halfway")
    waiting = task("c", "Pending")
    assert progress_of([done, running, waiting]) == 50.0
    shown = workflow_progress(wf, [done, running, waiting])
    assert shown["current_step"] == "halfway" and shown["running_steps"] == 1
    assert shown["estimated_time_remaining"] == 10.0  # 10 s each, 2 left, 2 lanes
    assert progress_of([]) == 100.0
