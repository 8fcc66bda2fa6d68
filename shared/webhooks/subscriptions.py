"""Webhook subscriptions as values, and the in-memory registry the outbox reads.

The outbox hook runs inside the engine's commit path and must not wait for
the store, so it reads subscriptions from this registry. The registry is
loaded at start, updated at once from ``WebhookChanged`` events on the bus (the
control center publishes one after every change it persists) and reloaded
every ``webhook_refresh_s`` for changes made by another process.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from shared.events.bus import Event
from shared.webhooks.catalogue import matches
from shared.webhooks.repository import WebhookRepository

log = logging.getLogger(__name__)

CHANGED_EVENT = "WebhookChanged"
SOURCE_API, SOURCE_CONFIG = "api", "config"
# ``WebhookChanged`` actions that only queue work (their routing may be stale).
QUEUED_ACTIONS = frozenset({"test_queued", "redelivery_queued"})


@dataclass(frozen=True)
class Webhook:
    """One subscription: where, which events, and the secrets that sign for it."""

    id: str
    url: str
    events: tuple[str, ...]
    enabled: bool = True
    description: str = ""
    secret: str = ""
    previous_secret: str | None = None
    previous_secret_expires_at: float | None = None
    source: str = SOURCE_API
    consecutive_failures: int = 0
    disabled_reason: str | None = None
    paused: bool = False  # too many failures: deliveries queue up but are not sent
    paused_reason: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    created_by: str | None = None
    last_success_at: datetime | None = None
    last_failure_at: datetime | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Webhook:
        return cls(
            id=str(row["id"]),
            url=str(row["url"]),
            events=tuple(row.get("events") or ()),
            enabled=bool(row.get("enabled", True)),
            description=str(row.get("description") or ""),
            secret=str(row.get("secret") or ""),
            previous_secret=row.get("previous_secret"),
            previous_secret_expires_at=row.get("previous_secret_expires_at"),
            source=str(row.get("source") or SOURCE_API),
            consecutive_failures=int(row.get("consecutive_failures") or 0),
            disabled_reason=row.get("disabled_reason"),
            paused=bool(row.get("paused", False)),
            paused_reason=row.get("paused_reason"),
            created_at=row.get("created_at"),
            updated_at=row.get("updated_at"),
            created_by=row.get("created_by"),
            last_success_at=row.get("last_success_at"),
            last_failure_at=row.get("last_failure_at"),
        )

    def wants(self, name: str) -> bool:
        """Whether an event is queued for this webhook (a paused one still queues)."""
        return self.enabled and matches(self.events, name)

    @property
    def deliverable(self) -> bool:
        return self.enabled and not self.paused and bool(self.secret)

    def signing_secrets(self, now: float | None = None) -> list[str]:
        """The current secret, then the previous one while its grace period lasts."""
        out = [self.secret]
        now = time.time() if now is None else now
        if self.previous_secret and (self.previous_secret_expires_at or 0) > now:
            out.append(self.previous_secret)
        return out

    def routing(self) -> dict[str, Any]:
        """What a ``WebhookChanged`` event carries so other registries can route at once."""
        return {
            "id": self.id,
            "url": self.url,
            "events": list(self.events),
            "enabled": self.enabled,
            "paused": self.paused,
        }


class Subscriptions:
    """The current subscriptions, by id."""

    def __init__(self, repo: WebhookRepository) -> None:
        self.repo = repo
        self.by_id: dict[str, Webhook] = {}
        self.loaded_at = 0.0
        self._generation = 0
        self._changed_at: dict[str, int] = {}  # id -> generation of its last local change

    async def load(self) -> None:
        """Reload from the store, keeping what changed here while the query ran."""
        started = self._generation
        rows = await self.repo.all_webhooks()
        loaded = {str(r["id"]): Webhook.from_row(r) for r in rows}
        for webhook_id, generation in self._changed_at.items():
            if generation > started:  # newer than what the query could have seen
                if webhook_id in self.by_id:
                    loaded[webhook_id] = self.by_id[webhook_id]
                else:
                    loaded.pop(webhook_id, None)
        self.by_id = loaded
        self._changed_at = {k: g for k, g in self._changed_at.items() if g > started}
        self.loaded_at = time.monotonic()

    def _touch(self, webhook_id: str) -> None:
        self._generation += 1
        self._changed_at[webhook_id] = self._generation

    def targets(self, name: str) -> list[Webhook]:
        """The subscriptions that take an event name right now."""
        return [w for w in self.by_id.values() if w.wants(name)]

    def get(self, webhook_id: str) -> Webhook | None:
        return self.by_id.get(webhook_id)

    def put(self, webhook: Webhook) -> None:
        """A change made here (the dispatcher's own bookkeeping), ahead of the store."""
        self.by_id[webhook.id] = webhook
        self._touch(webhook.id)

    def apply(self, event: Event) -> str | None:
        """Apply a ``WebhookChanged`` event's routing at once; the id it touched."""
        if event.event_type != CHANGED_EVENT:
            return None
        data = event.data
        webhook_id = str(data.get("webhook_id") or "")
        if not webhook_id:
            return None
        action = data.get("action")
        if action in QUEUED_ACTIONS:
            return webhook_id  # work to do, nothing about the webhook changed
        self._touch(webhook_id)
        if action == "deleted":
            self.by_id.pop(webhook_id, None)
            return webhook_id
        routing = data.get("webhook") or {}
        known = self.by_id.get(webhook_id)
        if known is None:
            # Secrets come with the next reload; until then routing is enough for the outbox.
            known = Webhook(id=webhook_id, url=str(routing.get("url", "")), events=())
        self.by_id[webhook_id] = replace(
            known,
            url=str(routing.get("url", known.url)),
            events=tuple(routing.get("events", known.events)),
            enabled=bool(routing.get("enabled", known.enabled)),
            paused=bool(routing.get("paused", known.paused)),
        )
        return webhook_id
