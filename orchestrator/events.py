"""The orchestrator's event vocabulary: every event type it publishes, the stream kind
each belongs to, and the webhook names it is sent as.

To add an event: a member of :class:`EventType`, and an entry in
:data:`VOCABULARY` (with its webhook names, if webhooks carry it, and
``docs/events.md``'s list of them). ``create_app`` registers the vocabulary with
the bus; ``provisioning.server`` registers it too, on the bus of every process,
so that a control center running alone still offers these webhook names (see
shared/events/registry.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from orchestrator.states import TaskStatus, WorkflowStatus
from shared.events.registry import DEFAULT_KIND, EventSpec, Kind, Vocabulary, status_webhooks


class EventType(StrEnum):
    TASK_STATUS_CHANGED = "TaskStatusChanged"
    OPERATION_PROGRESS = "OperationProgress"
    BATCH_STATUS_CHANGED = "BatchStatusChanged"
    WORKFLOW_SUBMITTED = "WorkflowSubmitted"
    CHECKPOINT_CREATED = "CheckpointCreated"
    ROLLBACK_STARTED = "RollbackStarted"
    ROLLBACK_COMPLETED = "RollbackCompleted"
    STATE_RESTORED = "StateRestored"


# The kinds the orchestrator's /ws and /events offer (``?events=task,batch``), and the
# permission each needs. ``system`` is also where events nobody declared end up.
TASK = Kind("task", "tasks", "read")
BATCH = Kind("batch", "batch", "read")
ROLLBACK = Kind("rollback", "rollback", "read")
SYSTEM = Kind(DEFAULT_KIND, "state", "read")


def _rollback_outcome(data: Mapping[str, Any]) -> str:
    return "rollback.completed" if data.get("success", True) else "rollback.failed"


# ``task.pending``: an operation goes back to Pending to be retried (after a failed
# attempt, or an attempt a restart interrupted); operations are created Pending with
# their batch, which ``batch.running`` announces. A batch is submitted straight into
# Running and never returns to Pending, so there is no ``batch.pending``.
_BATCH_STATUSES = [s for s in WorkflowStatus if s is not WorkflowStatus.PENDING]

VOCABULARY = Vocabulary(
    "orchestrator",
    kinds=(TASK, BATCH, ROLLBACK, SYSTEM),
    events=(
        EventSpec(EventType.TASK_STATUS_CHANGED, TASK.name, *status_webhooks("task", TaskStatus)),
        EventSpec(EventType.OPERATION_PROGRESS, TASK.name, webhooks=("task.progress",)),
        EventSpec(EventType.BATCH_STATUS_CHANGED, BATCH.name, *status_webhooks("batch", _BATCH_STATUSES)),
        EventSpec(EventType.WORKFLOW_SUBMITTED, BATCH.name),
        EventSpec(EventType.CHECKPOINT_CREATED, ROLLBACK.name, webhooks=("checkpoint.created",)),
        EventSpec(EventType.ROLLBACK_STARTED, ROLLBACK.name, webhooks=("rollback.started",)),
        EventSpec(
            EventType.ROLLBACK_COMPLETED,
            ROLLBACK.name,
            webhooks=("rollback.completed", "rollback.failed"),
            webhook_name=_rollback_outcome,
        ),
        EventSpec(EventType.STATE_RESTORED, ROLLBACK.name, webhooks=("state.restored",)),
    ),
)
