"""The transition table, pair by pair: every (from, to) move of an operation (task)
and of a workflow is either allowed or refused, and the expected answer is written
out here rather than read from the table it checks."""

from __future__ import annotations

import itertools

import pytest

from orchestrator.states import (
    FINAL_TASK,
    FINAL_WORKFLOW,
    TASK_TRANSITIONS,
    WORKFLOW_TRANSITIONS,
    IllegalTransition,
    TaskStatus,
    WorkflowStatus,
    check_restore,
    check_task_transition,
    check_workflow_transition,
)

T = TaskStatus
W = WorkflowStatus

TASK_ALLOWED = {
    (T.PENDING, T.RUNNING),  # started
    (T.PENDING, T.CANCELLED),  # skipped, not started, cancelled
    (T.PENDING, T.FAILED),  # stopped while waiting to retry
    (T.RUNNING, T.COMPLETED),
    (T.RUNNING, T.FAILED),
    (T.RUNNING, T.CANCELLED),
    (T.RUNNING, T.PENDING),  # a retry, or an attempt interrupted by a restart
    (T.COMPLETED, T.ROLLING_BACK),
    (T.FAILED, T.ROLLING_BACK),  # on_failure: rollback undoes the failed operation too
    (T.ROLLING_BACK, T.ROLLED_BACK),
    (T.ROLLING_BACK, T.FAILED),  # a failed or interrupted undo
}
WORKFLOW_ALLOWED = {
    (W.PENDING, W.RUNNING),
    (W.PENDING, W.CANCELLED),
    (W.PENDING, W.FAILED),
    (W.RUNNING, W.COMPLETED),
    (W.RUNNING, W.FAILED),
    (W.RUNNING, W.CANCELLED),
}

TASK_PAIRS = list(itertools.product(TaskStatus, repeat=2))
WORKFLOW_PAIRS = list(itertools.product(WorkflowStatus, repeat=2))


def _id(pair: tuple[TaskStatus | WorkflowStatus, TaskStatus | WorkflowStatus]) -> str:
    return f"{pair[0]}->{pair[1]}"


@pytest.mark.parametrize("pair", [p for p in TASK_PAIRS if p in TASK_ALLOWED], ids=_id)
def test_an_allowed_task_move_passes(pair: tuple[TaskStatus, TaskStatus]) -> None:
    check_task_transition(*pair)


@pytest.mark.parametrize("pair", [p for p in TASK_PAIRS if p not in TASK_ALLOWED], ids=_id)
def test_a_refused_task_move_raises_naming_both_statuses(pair: tuple[TaskStatus, TaskStatus]) -> None:
    with pytest.raises(IllegalTransition, match=f"task cannot go from {pair[0]} to {pair[1]}$"):
        check_task_transition(*pair)


@pytest.mark.parametrize("pair", [p for p in WORKFLOW_PAIRS if p in WORKFLOW_ALLOWED], ids=_id)
def test_an_allowed_workflow_move_passes(pair: tuple[WorkflowStatus, WorkflowStatus]) -> None:
    check_workflow_transition(*pair)


@pytest.mark.parametrize("pair", [p for p in WORKFLOW_PAIRS if p not in WORKFLOW_ALLOWED], ids=_id)
def test_a_refused_workflow_move_raises_naming_both_statuses(
    pair: tuple[WorkflowStatus, WorkflowStatus],
) -> None:
    with pytest.raises(IllegalTransition, match=f"workflow cannot go from {pair[0]} to {pair[1]}$"):
        check_workflow_transition(*pair)


def test_the_table_names_every_status_and_no_other_move() -> None:
    assert set(TASK_TRANSITIONS) == set(TaskStatus)
    assert set(WORKFLOW_TRANSITIONS) == set(WorkflowStatus)
    assert {(a, b) for a, tos in TASK_TRANSITIONS.items() for b in tos} == TASK_ALLOWED
    assert {(a, b) for a, tos in WORKFLOW_TRANSITIONS.items() for b in tos} == WORKFLOW_ALLOWED


def test_no_status_moves_to_itself_and_final_ones_only_into_a_rollback() -> None:
    assert not any(a == b for a, b in TASK_ALLOWED | WORKFLOW_ALLOWED)
    assert {b for a, b in TASK_ALLOWED if a in FINAL_TASK} == {T.ROLLING_BACK}
    assert not [pair for pair in WORKFLOW_ALLOWED if pair[0] in FINAL_WORKFLOW]


# A restore resets a record to the final status it had at a checkpoint (or Cancelled).


@pytest.mark.parametrize("pair", TASK_PAIRS, ids=_id)
def test_a_restore_sets_a_task_to_a_final_status_only(pair: tuple[TaskStatus, TaskStatus]) -> None:
    current, new = pair
    if new in {T.COMPLETED, T.FAILED, T.CANCELLED, T.ROLLED_BACK}:
        check_restore(current, new)
    else:
        with pytest.raises(IllegalTransition, match=f"a restore cannot set {current} to {new}$"):
            check_restore(current, new)


@pytest.mark.parametrize("pair", WORKFLOW_PAIRS, ids=_id)
def test_a_restore_sets_a_workflow_to_a_final_status_only(
    pair: tuple[WorkflowStatus, WorkflowStatus],
) -> None:
    current, new = pair
    if new in {W.COMPLETED, W.FAILED, W.CANCELLED}:
        check_restore(current, new)
    else:
        with pytest.raises(IllegalTransition, match=f"a restore cannot set {current} to {new}$"):
            check_restore(current, new)


def test_a_restore_never_mixes_a_task_status_with_a_workflow_status() -> None:
    with pytest.raises(IllegalTransition):
        check_restore(T.RUNNING, W.CANCELLED)
    with pytest.raises(IllegalTransition):
        check_restore(W.RUNNING, T.CANCELLED)
