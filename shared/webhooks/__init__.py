"""Signed webhooks that are never lost (Standard Webhooks).

* :mod:`~shared.webhooks.signing` — sign deliveries, and :func:`verify_webhook`
  for consumers;
* :mod:`~shared.webhooks.urlguard` — which targets are allowed;
* :mod:`~shared.webhooks.catalogue` — the event names the registered vocabularies
  declare (shared/events/registry.py), and subscription patterns;
* :mod:`~shared.webhooks.repository` — every SurrealQL statement;
* :mod:`~shared.webhooks.subscriptions` — subscriptions as values, and their registry;
* :mod:`~shared.webhooks.outbox` — delivery rows committed with the change;
* :mod:`~shared.webhooks.dispatcher` — sends them, in order, with retries;
* :mod:`~shared.webhooks.service` — the management rules behind ``/webhooks``.
"""

from __future__ import annotations

from shared.webhooks.catalogue import TEST_EVENT, Catalogue
from shared.webhooks.dispatcher import Dispatcher
from shared.webhooks.outbox import Outbox
from shared.webhooks.service import WebhookChange, WebhookService
from shared.webhooks.signing import (
    WebhookVerificationError,
    new_secret,
    sign_headers,
    signature_256,
    verify_webhook,
)
from shared.webhooks.subscriptions import Subscriptions, Webhook

__all__ = [
    "TEST_EVENT",
    "Catalogue",
    "Dispatcher",
    "Outbox",
    "Subscriptions",
    "Webhook",
    "WebhookChange",
    "WebhookService",
    "WebhookVerificationError",
    "new_secret",
    "sign_headers",
    "signature_256",
    "verify_webhook",
]
