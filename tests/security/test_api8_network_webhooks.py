"""API8: webhook signatures during a secret rotation, and an event catalogue that tells the truth.

During a rotation's grace period ``X-Signature-256`` carried only the new
secret's signature, so a GitHub-style consumer still holding the old secret
rejected every delivery; and the docs offered ``batch.pending``, which nothing
ever sends.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from multidict import CIMultiDict

from provisioning.server import product_registry
from shared.web.keys import BUS
from shared.webhooks import Catalogue, verify_webhook
from shared.webhooks.signing import WebhookVerificationError, signature_256, verify_signature_256
from tests.helpers.services import Services, bearer

DOCS = Path(__file__).resolve().parents[2] / "docs" / "events.md"
# What the services' vocabularies declare, as ``provisioning up`` registers them.
EVENT_NAMES = Catalogue(product_registry()).names


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {
        "webhooks_allow_private": True,
        "webhook_retry_schedule_s": "0,0.05,0.05",
        "webhook_jitter": 0.0,
        "webhook_poll_s": 0.05,
        "webhook_refresh_s": 0.2,
    }


@dataclass
class Consumer:
    url: str = ""
    received: list[tuple[CIMultiDict[str], bytes]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((CIMultiDict(request.headers), await request.read()))
        self.arrived.set()
        return web.Response(text="ok")

    def events(self) -> list[str]:
        return [json.loads(body)["event"] for _, body in self.received]

    async def wait_for(self, done: Callable[[], bool], timeout_s: float = 30.0) -> None:
        async with asyncio.timeout(timeout_s):
            while not done():
                self.arrived.clear()
                await self.arrived.wait()


@pytest.fixture
async def consumer(aiohttp_server: Any) -> Consumer:
    hook = Consumer()
    app = web.Application()
    app.router.add_post("/hook", hook.handle)
    server = await aiohttp_server(app)
    hook.url = str(server.make_url("/hook"))
    return hook


async def register(services: Services, admin: str, url: str, events: list[str]) -> dict[str, Any]:
    resp = await services.cc.post("/webhooks", headers=bearer(admin), json={"url": url, "events": events})
    doc = await resp.json()
    assert resp.status == 201, doc
    services.secrets.add(doc["data"]["secret"])
    data: dict[str, Any] = doc["data"]
    return data


# -- signatures during a rotation ------------------------------------------------------------------


async def test_a_consumer_holding_the_old_secret_verifies_during_the_grace_period(
    services: Services, consumer: Consumer
) -> None:
    admin = await services.admin()
    hook = await register(services, admin, consumer.url, ["webhook.test"])
    old = hook["secret"]
    resp = await services.cc.post(f"/webhooks/{hook['id']}/rotate-secret", headers=bearer(admin))
    assert resp.status == 200
    new = (await resp.json())["data"]["secret"]
    services.secrets.add(new)
    resp = await services.cc.post(f"/webhooks/{hook['id']}/test", headers=bearer(admin))
    assert resp.status == 202
    await consumer.wait_for(lambda: len(consumer.received) >= 1)
    [(headers, body)] = consumer.received

    # GitHub style: one value per secret, newest first; either secret verifies.
    assert headers.getall("X-Signature-256") == [f"{signature_256(new, body)}, {signature_256(old, body)}"]
    verify_signature_256(old, headers, body)
    verify_signature_256(new, headers, body)
    # Standard Webhooks: one v1 signature per secret, space-separated.
    verify_webhook(old, headers, body)
    verify_webhook(new, headers, body)
    with pytest.raises(WebhookVerificationError):
        verify_signature_256("whsec_" + "A" * 44, headers, body)


@pytest.mark.parametrize(
    "settings_overrides",
    [{"webhooks_allow_private": True, "webhook_poll_s": 0.05, "webhook_rotation_grace_s": 0}],
)
async def test_after_the_grace_period_only_the_new_secret_signs(
    services: Services, consumer: Consumer
) -> None:
    admin = await services.admin()
    hook = await register(services, admin, consumer.url, ["webhook.test"])
    resp = await services.cc.post(f"/webhooks/{hook['id']}/rotate-secret", headers=bearer(admin))
    new = (await resp.json())["data"]["secret"]
    services.secrets.add(new)
    await services.cc.post(f"/webhooks/{hook['id']}/test", headers=bearer(admin))
    await consumer.wait_for(lambda: len(consumer.received) >= 1)
    [(headers, body)] = consumer.received
    assert headers["X-Signature-256"] == signature_256(new, body)  # a single value, as before
    verify_signature_256(new, headers, body)
    with pytest.raises(WebhookVerificationError):
        verify_signature_256(hook["secret"], headers, body)


# -- the catalogue -----------------------------------------------------------------------------------


def documented_event_names() -> set[str]:
    text = DOCS.read_text()
    paragraph = text.split("**Event names**", 1)[1].split("Subscribe to", 1)[0]
    return set(re.findall(r"`([a-z_]+\.[a-z_]+)`", paragraph))


def test_the_docs_list_exactly_the_catalogue() -> None:
    assert documented_event_names() == set(EVENT_NAMES)


async def test_events_nothing_sends_cannot_be_subscribed_to(services: Services, consumer: Consumer) -> None:
    admin = await services.admin()
    for name in ("batch.pending", "batch.rolled_back", "task.submitted"):
        resp = await services.cc.post(
            "/webhooks", headers=bearer(admin), json={"url": consumer.url, "events": [name]}
        )
        doc = await resp.json()
        assert resp.status == 422, doc
        assert doc["details"]["fields"][0]["field"] in ("events", "events.0")  # the list, or its item
        assert f"unknown webhook event {name!r}" in doc["details"]["fields"][0]["message"]


def op(name: str, *, deps: tuple[str, ...] = (), retry: int = 1, **simulate: Any) -> dict[str, Any]:
    return {
        "id": name,
        "type": "server_batch",
        "provider": "local",
        "dependencies": list(deps),
        "retry": {"max_attempts": retry},
        "simulate": {"latency_s": 0, **simulate},
    }


async def submit(services: Services, admin: str, operations: list[dict[str, Any]], **kw: Any) -> str:
    body = {"name": "catalogue", "parallel_limit": 4, "operations": operations, **kw}
    resp = await services.orch.post("/batch/execute", headers=bearer(admin), json=body)
    doc = await resp.json()
    assert resp.status == 201, doc
    return str(doc["data"]["batch_id"])


async def final(services: Services, admin: str, batch_id: str) -> dict[str, Any]:
    async with asyncio.timeout(30):
        while True:
            resp = await services.orch.get(f"/batch/operations/{batch_id}", headers=bearer(admin))
            batch: dict[str, Any] = (await resp.json())["data"]
            if batch["status"] in ("Completed", "Failed", "Cancelled"):
                return batch
            await asyncio.sleep(0.02)


async def test_every_catalogued_event_is_really_sent(services: Services, consumer: Consumer) -> None:
    admin = await services.admin()
    hook = await register(services, admin, consumer.url, ["*"])
    # Completed, with progress and a retried operation (task.pending).
    ok = [op("a", latency_s=0.02, progress_steps=2), op("flaky", retry=2, fail_attempts=1)]
    done = await final(services, admin, await submit(services, admin, ok))
    assert done["status"] == "Completed"
    # Failed, rolled back; then failed with a rollback that fails.
    bad = op("bad", deps=("a",), fail_always=True)
    await final(services, admin, await submit(services, admin, [op("a"), bad], rollback_enabled=True))
    undo_fails = [op("a", fail_rollback=True), bad]
    await final(services, admin, await submit(services, admin, undo_fails, rollback_enabled=True))
    # Cancelled while an operation runs.
    slow = await submit(services, admin, [op("slow", latency_s=30)])
    resp = await services.orch.post(f"/batch/operations/{slow}/cancel", headers=bearer(admin))
    assert resp.status in (200, 202), await resp.text()
    await final(services, admin, slow)
    # A restore, and a test delivery.
    resp = await services.orch.post(f"/rollback/restore/{done['checkpoint_id']}", headers=bearer(admin))
    assert resp.status == 200, await resp.text()
    resp = await services.cc.post(f"/webhooks/{hook['id']}/test", headers=bearer(admin))
    assert resp.status == 202

    # The running services offer exactly the catalogue, and send every name of it.
    assert Catalogue(services.cc.app[BUS].registry).names == EVENT_NAMES
    resp = await services.cc.get("/webhooks/events", headers=bearer(admin))
    assert (await resp.json())["data"]["events"] == list(EVENT_NAMES)
    await consumer.wait_for(lambda: set(EVENT_NAMES) <= set(consumer.events()))
    assert set(consumer.events()) == set(EVENT_NAMES)
