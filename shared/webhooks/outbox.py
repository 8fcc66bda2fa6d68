"""The webhook outbox: delivery rows written in the same transaction as the change.

:class:`Outbox` is the journal's outbox hook. For a bus event that webhooks
carry it returns one ``webhook_delivery`` row per subscription that wants it;
the journal commits those rows atomically with the transition, so a delivery
exists exactly when the change does, and a crash can lose neither. The
dispatcher sends them later, in ``seq`` order per webhook.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from shared.events.bus import utc_timestamp
from shared.store.writes import Write
from shared.webhooks.catalogue import Catalogue
from shared.webhooks.repository import PENDING, WebhookRepository
from shared.webhooks.subscriptions import Subscriptions

_seq_lock = threading.Lock()
_last_seq = 0


def next_seq() -> int:
    """A delivery position: nanoseconds since the epoch, strictly increasing in this process.

    Taken when the rows are built, which is also the order the store commits
    them in, so it orders each webhook's deliveries as their changes happened,
    across restarts (the clock moves on) and roughly across processes.
    """
    global _last_seq
    with _seq_lock:
        _last_seq = max(_last_seq + 1, time.time_ns())
        return _last_seq


def new_message_id() -> str:
    """The ``webhook-id`` of a message: the consumer's idempotency key."""
    return f"msg_{uuid.uuid4().hex}"


def payload(name: str, data: dict[str, Any], timestamp: str | None = None) -> str:
    """The body the seed documents: ``{"event", "timestamp", "data"}``, serialised once."""
    doc = {"event": name, "timestamp": timestamp or utc_timestamp(), "data": data}
    return json.dumps(doc, default=str, separators=(",", ":"))


def delivery_row(
    webhook_id: str, name: str, body: str, *, msg_id: str | None = None, **extra: Any
) -> dict[str, Any]:
    """A new pending delivery, due now."""
    now = time.time()
    row: dict[str, Any] = {
        "id": msg_id or new_message_id(),
        "webhook_id": webhook_id,
        "seq": next_seq(),
        "event": name,
        "body": body,
        "status": PENDING,
        "attempts": 0,
        "tries": 0,  # attempts in the current round (a redelivery starts a new one)
        "due_at": now,
        "created_at": datetime.fromtimestamp(now, UTC),
        "created_epoch": now,
        "last_status_code": None,
        "last_error": None,
        "last_latency_ms": None,
        "delivered_at": None,
    }
    row.update(extra)
    return row


class Outbox:
    """The journal's outbox hook: ``(event_type, data) -> [delivery rows]``."""

    def __init__(self, subscriptions: Subscriptions, catalogue: Catalogue) -> None:
        self.subscriptions = subscriptions
        self.catalogue = catalogue
        self.rows_built = 0

    def __call__(self, event_type: str, data: dict[str, Any]) -> list[Write]:
        if not self.subscriptions.by_id:  # nobody subscribes to anything: the common case
            return []
        name = self.catalogue.name_of(event_type, data)
        if name is None:
            return []
        targets = self.subscriptions.targets(name)
        if not targets:
            return []
        body = payload(name, data)
        self.rows_built += len(targets)
        return [WebhookRepository.insert_delivery(delivery_row(w.id, name, body)) for w in targets]
