"""Webhook event names, how bus events map to them, and subscription patterns.

Bus events carry a type and a status (``TaskStatusChanged`` / ``Completed``);
webhook consumers subscribe to dotted lower-case names (``task.completed``),
to a family (``task.*``) or to everything (``*``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from shared.errors import ValidationFailed

TEST_EVENT = "webhook.test"

# ``task.pending``: an operation goes back to Pending to be retried (after a failed
# attempt, or an attempt a restart interrupted); operations are created Pending with
# their batch, which ``batch.running`` announces. A batch is submitted straight into
# Running and never returns to Pending, so there is no ``batch.pending``.
_TASK = ("pending", "running", "completed", "failed", "cancelled", "rolling_back", "rolled_back", "progress")
_BATCH = ("running", "completed", "failed", "cancelled")
EVENT_NAMES: tuple[str, ...] = (
    *(f"task.{s}" for s in _TASK),
    *(f"batch.{s}" for s in _BATCH),
    "checkpoint.created",
    "rollback.started",
    "rollback.completed",
    "rollback.failed",
    "state.restored",
    TEST_EVENT,
)
_KNOWN = frozenset(EVENT_NAMES)
_FAMILIES = {name.split(".", 1)[0] for name in EVENT_NAMES}
_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


def _status_name(status: Any) -> str:
    """``RollingBack`` -> ``rolling_back``."""
    return _CAMEL.sub("_", str(status)).lower()


def webhook_event_name(event_type: str, data: dict[str, Any]) -> str | None:
    """The webhook name of a bus event, or ``None`` for events webhooks do not carry.

    Only catalogued names come out: what is not in :data:`EVENT_NAMES` is never sent.
    """
    name = _event_name(event_type, data)
    return name if name in _KNOWN else None


def _event_name(event_type: str, data: dict[str, Any]) -> str | None:
    if event_type == "TaskStatusChanged":
        return f"task.{_status_name(data.get('status', ''))}"
    if event_type == "BatchStatusChanged":
        return f"batch.{_status_name(data.get('status', ''))}"
    if event_type == "OperationProgress":
        return "task.progress"
    if event_type == "CheckpointCreated":
        return "checkpoint.created"
    if event_type == "RollbackStarted":
        return "rollback.started"
    if event_type == "RollbackCompleted":
        return "rollback.completed" if data.get("success", True) else "rollback.failed"
    if event_type == "StateRestored":
        return "state.restored"
    return None


def matches(patterns: Iterable[str], name: str) -> bool:
    """Whether a subscription's patterns take an event name."""
    family = name.split(".", 1)[0]
    for pattern in patterns:
        if pattern in ("*", name) or pattern == f"{family}.*":
            return True
    return False


def validate_patterns(events: Iterable[str]) -> list[str]:
    """Known names, ``family.*`` or ``*``; 422 naming the unknown ones."""
    out: list[str] = []
    unknown: list[str] = []
    for raw in events:
        pattern = raw.strip().lower()
        known = (
            pattern == "*" or pattern in EVENT_NAMES or (pattern.endswith(".*") and pattern[:-2] in _FAMILIES)
        )
        if not known:
            unknown.append(raw)
        elif pattern not in out:
            out.append(pattern)
    if unknown:
        raise ValidationFailed(
            f"unknown webhook events: {', '.join(unknown)}; use names such as "
            "task.completed, batch.failed, rollback.completed, a family such as task.*, or *",
            details={
                "fields": [{"field": "events", "message": "unknown event", "unknown": unknown}],
                "known": list(EVENT_NAMES),
            },
        )
    if not out:
        raise ValidationFailed(
            "a webhook needs at least one event",
            details={"fields": [{"field": "events", "message": "empty"}]},
        )
    return out
