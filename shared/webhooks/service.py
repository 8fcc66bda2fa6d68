"""The rules of managing webhooks: register, change, rotate, test, redeliver, delete.

Each change is persisted, then announced on the bus as ``WebhookChanged``
(carrying the routing, never a secret) so the outbox and dispatcher of this
process act on it at once; other processes pick it up on their next reload.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.errors import Conflict, NotFound
from shared.events.bus import EventBus
from shared.security.actor import Actor
from shared.security.auth import ANONYMOUS
from shared.settings import Settings
from shared.store.keyset import Listing
from shared.store.store import Store
from shared.store.writes import Write
from shared.webhooks.catalogue import TEST_EVENT, Catalogue
from shared.webhooks.outbox import delivery_row, next_seq, payload
from shared.webhooks.repository import PENDING, WebhookRepository
from shared.webhooks.signing import new_secret
from shared.webhooks.subscriptions import CHANGED_EVENT, SOURCE_API, SOURCE_CONFIG, Webhook
from shared.webhooks.urlguard import validate_target


@dataclass(frozen=True)
class WebhookChange:
    """What a caller may change; ``None`` leaves a field as it is."""

    url: str | None = None
    events: list[str] | None = None
    description: str | None = None
    enabled: bool | None = None


class WebhookService:
    """Webhook management for the control center's ``/webhooks`` routes: built once per
    app; answers with records and rows (the control center's views shape them)."""

    def __init__(self, settings: Settings, store: Store, bus: EventBus) -> None:
        self.settings = settings
        self.store = store
        self.bus = bus
        self.catalogue = Catalogue(bus.registry)
        self.repo = WebhookRepository(store)

    async def list_webhooks(self, limit: int, offset: int) -> tuple[list[Webhook], int]:
        rows, total = await self.repo.webhooks(limit, offset)
        return [Webhook.from_row(r) for r in rows], total

    async def get(self, webhook_id: str) -> Webhook:
        row = await self.repo.webhook(webhook_id)
        if row is None:
            raise NotFound(f"no webhook with id {webhook_id}")
        return Webhook.from_row(row)

    async def create(
        self, actor: Actor, url: str, events: list[str], description: str, enabled: bool
    ) -> tuple[Webhook, str]:
        """Register a webhook; returns it and its secret (shown this once)."""
        target = await validate_target(url, allow_private=self.settings.webhooks_allow_private)
        patterns = self.catalogue.validate(events)
        secret = new_secret()
        now = datetime.now(UTC)
        webhook_id = f"wh_{uuid.uuid4().hex[:20]}"
        row = {
            "id": webhook_id,
            "url": target,
            "events": patterns,
            "description": description,
            "enabled": enabled,
            "secret": secret,
            "previous_secret": None,
            "previous_secret_expires_at": None,
            "source": SOURCE_API,
            "consecutive_failures": 0,
            "disabled_reason": None,
            "paused": False,
            "paused_reason": None,
            "created_at": now,
            "updated_at": now,
            "created_by": (actor.principal or ANONYMOUS).username,
            "last_success_at": None,
            "last_failure_at": None,
        }
        await self.store.write(WebhookRepository.insert_webhook(self.repo.sealed(webhook_id, row)))
        webhook = Webhook.from_row(row)
        self._announce(webhook, "created")
        return webhook, secret

    async def update(self, webhook_id: str, change: WebhookChange) -> Webhook:
        only_enabled = change.url is None and change.events is None and change.description is None
        # A webhook from the configuration can still be switched on and off here.
        webhook = await (self.get(webhook_id) if only_enabled else self._editable(webhook_id))
        patch: dict[str, Any] = {"updated_at": datetime.now(UTC)}
        if change.url is not None:
            patch["url"] = await validate_target(
                change.url, allow_private=self.settings.webhooks_allow_private
            )
        if change.events is not None:
            patch["events"] = self.catalogue.validate(change.events)
        if change.description is not None:
            patch["description"] = change.description
        if change.enabled is not None:
            patch["enabled"] = change.enabled
            if change.enabled:  # also resumes a webhook paused after failures
                patch.update(disabled_reason=None, paused=False, paused_reason=None, consecutive_failures=0)
        await self.store.write(WebhookRepository.patch_webhook(webhook_id, patch))
        updated = await self.get(webhook.id)
        self._announce(updated, "updated")
        return updated

    async def delete(self, webhook_id: str) -> None:
        webhook = await self._editable(webhook_id)
        await self.store.write(*WebhookRepository.delete_webhook(webhook.id))
        self.bus.publish(CHANGED_EVENT, {"webhook_id": webhook.id, "action": "deleted"})

    async def rotate_secret(self, webhook_id: str) -> tuple[Webhook, str]:
        """A new secret; the old one still signs (second signature) for the grace period."""
        webhook = await self._editable(webhook_id)
        secret = new_secret()
        grace_until = time.time() + self.settings.webhook_rotation_grace_s
        patch = {
            "secret": secret,
            "previous_secret": webhook.secret,
            "previous_secret_expires_at": grace_until,
            "updated_at": datetime.now(UTC),
        }
        sealed = self.repo.sealed(webhook.id, patch)
        await self.store.write(WebhookRepository.patch_webhook(webhook.id, sealed))
        updated = await self.get(webhook.id)
        self._announce(updated, "secret_rotated")
        return updated, secret

    async def send_test(self, actor: Actor, webhook_id: str) -> dict[str, Any]:
        """Queue a ``webhook.test`` delivery, whatever events the webhook takes; returns its row."""
        webhook = await self.get(webhook_id)
        body = payload(
            TEST_EVENT,
            {
                "webhook_id": webhook.id,
                "message": "test delivery from provisioning",
                "requested_by": (actor.principal or ANONYMOUS).username,
            },
        )
        row = delivery_row(webhook.id, TEST_EVENT, body)
        await self.store.write(WebhookRepository.insert_delivery(row))
        self._announce(webhook, "test_queued", delivery_id=row["id"])
        return row

    async def deliveries(
        self, webhook_id: str, status: str | None, limit: int, offset: int, cursor: str | None = None
    ) -> Listing[dict[str, Any]]:
        """A webhook's deliveries, newest first."""
        await self.get(webhook_id)
        return await self.repo.deliveries(webhook_id, status, limit, offset, cursor)

    async def delivery(
        self, webhook_id: str, delivery_id: str
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """A delivery's row and its attempts."""
        row = await self._delivery(webhook_id, delivery_id)
        return row, await self.repo.attempts(delivery_id)

    async def redeliver(self, webhook_id: str, delivery_id: str) -> dict[str, Any]:
        """Send a delivery again, same ``webhook-id``, behind what is already waiting;
        returns its row as it now stands."""
        webhook = await self.get(webhook_id)
        row = await self._delivery(webhook_id, delivery_id)
        if row.get("status") == PENDING:
            raise Conflict(f"delivery {delivery_id} is still waiting to go out", details={"status": PENDING})
        patch: dict[str, Any] = {
            "status": PENDING,
            "tries": 0,
            "due_at": time.time(),
            "seq": next_seq(),
            "redelivered_at": datetime.now(UTC),
            "updated_at": datetime.now(UTC),
        }
        writes: list[Write] = [WebhookRepository.patch_delivery(delivery_id, patch)]
        await self.store.write(*writes)
        self._announce(webhook, "redelivery_queued", delivery_id=delivery_id)
        row.update(patch)
        return row

    # -- helpers -------------------------------------------------------------------------

    async def _editable(self, webhook_id: str) -> Webhook:
        webhook = await self.get(webhook_id)
        if webhook.source == SOURCE_CONFIG:
            raise Conflict(
                f"webhook {webhook_id} comes from the [webhooks] configuration; change it there",
                details={"source": SOURCE_CONFIG},
            )
        return webhook

    async def _delivery(self, webhook_id: str, delivery_id: str) -> dict[str, Any]:
        row = await self.repo.delivery(delivery_id)
        if row is None or row.get("webhook_id") != webhook_id:
            raise NotFound(f"webhook {webhook_id} has no delivery {delivery_id}")
        return row

    def _announce(self, webhook: Webhook, action: str, **extra: Any) -> None:
        self.bus.publish(
            CHANGED_EVENT,
            {
                "webhook_id": webhook.id,
                "action": action,
                "webhook": webhook.routing(),
                **extra,
            },
        )
