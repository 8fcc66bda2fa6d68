"""The events and webhooks suites' helpers: both services on one store and one bus, and a real
HTTP webhook consumer whose answers a test can script."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from shared.events.bus import EventBus
from shared.settings import Settings, load_settings
from shared.store.store import Store
from tests.helpers.services import both_apps

FAST_RETRY = "0,0.05,0.05,0.05,0.05,0.05"


def event_settings(**overrides: Any) -> Settings:
    """mem:// store, auth off, private targets allowed, fast retries and polling."""
    values: dict[str, Any] = {
        "db_url": "mem://",
        "auth_enabled": False,
        "webhooks_allow_private": True,
        "webhook_retry_schedule_s": FAST_RETRY,
        "webhook_jitter": 0.0,
        "webhook_poll_s": 0.05,
        "webhook_refresh_s": 0.2,
        "webhook_timeout_s": 5.0,
        "default_initial_delay_s": 0.01,
        "default_max_delay_s": 0.05,
    }
    values.update(overrides)
    return load_settings(**values)


@dataclass
class Services:
    """The orchestrator and the control center of one process, as HTTP clients."""

    orch: TestClient
    cc: TestClient
    bus: EventBus
    store: Store
    settings: Settings


ServicesFactory = Callable[..., Any]


@pytest.fixture
async def make_services(aiohttp_client: Any) -> AsyncIterator[ServicesFactory]:
    """Build both apps on one fresh store and bus, as ``provisioning up`` does."""
    made: list[Services] = []

    async def make(**overrides: Any) -> Services:
        settings = event_settings(**overrides)
        store = Store("mem://")
        await store.open()
        bus = EventBus(settings.event_retention_count, settings.event_retention_s)
        cc_app, orch_app = both_apps(settings, store, bus)
        cc = await aiohttp_client(cc_app)
        orch = await aiohttp_client(orch_app)
        made.append(Services(orch, cc, bus, store, settings))
        return made[-1]

    yield make
    for services in made:  # the apps stop (engine, dispatcher) before their store closes
        await services.orch.close()
        await services.cc.close()
        await services.store.close()


@pytest.fixture
async def services(make_services: ServicesFactory) -> Services:
    result: Services = await make_services()
    return result


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Consumer:
    """A webhook endpoint: records every request, answers from ``script`` then ``default``."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    script: deque[int] = field(default_factory=deque)
    default: int = 200
    reply: bytes = b"ok"
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.append(Received(dict(request.headers), body))
        self.arrived.set()
        status = self.script.popleft() if self.script else self.default
        return web.Response(status=status, body=self.reply)

    async def wait_for(
        self, predicate: Callable[[list[Received]], bool], timeout_s: float = 15.0
    ) -> list[Received]:
        """Wait until the requests received so far satisfy ``predicate``."""
        async with asyncio.timeout(timeout_s):
            while not predicate(self.received):
                self.arrived.clear()
                await self.arrived.wait()
        return self.received


@pytest.fixture
async def consumer(aiohttp_server: Any) -> Consumer:
    hook = Consumer()
    app = web.Application()
    app.router.add_post("/hook", hook.handle)
    server: TestServer = await aiohttp_server(app)
    hook.url = str(server.make_url("/hook"))
    return hook


async def register(cc: TestClient, url: str, events: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    """``POST /webhooks`` on the control center; returns the created webhook with its secret."""
    resp = await cc.post("/webhooks", json={"url": url, "events": events or ["*"], **extra})
    doc = await resp.json()
    assert resp.status == 201, doc
    data: dict[str, Any] = doc["data"]
    return data


def ops(n: int, prefix: str = "op", **simulate: Any) -> list[dict[str, Any]]:
    sim = {"latency_s": 0, **simulate}
    return [
        {"id": f"{prefix}{i}", "type": "server_batch", "provider": "local", "simulate": dict(sim)}
        for i in range(n)
    ]


async def submit(orch: TestClient, operations: list[dict[str, Any]], **kw: Any) -> str:
    body: dict[str, Any] = {"name": "events-test", "parallel_limit": 10, "operations": operations, **kw}
    resp = await orch.post("/batch/execute", json=body)
    doc = await resp.json()
    assert resp.status == 201, doc
    return str(doc["data"]["batch_id"])


async def wait_final(orch: TestClient, batch_id: str, timeout_s: float = 30.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout_s):
        while True:
            resp = await orch.get(f"/batch/operations/{batch_id}")
            batch: dict[str, Any] = (await resp.json())["data"]
            if batch["status"] in ("Completed", "Failed", "Cancelled"):
                return batch
            await asyncio.sleep(0.02)
