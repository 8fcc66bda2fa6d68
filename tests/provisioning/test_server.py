"""The composition root: ``build_apps`` builds the chosen services on one store and bus,
and a control center started alone (``provisioning control-center``, a real
subprocess) still offers the orchestrator's webhook names, because every process's
bus holds both services' vocabularies."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import aiohttp
import pytest

from provisioning.server import build_apps, product_registry
from shared.events.bus import EventBus
from shared.settings import Settings
from shared.store.store import Store
from shared.web.keys import BUS, SERVICE_KEY, STORE
from shared.webhooks.catalogue import Catalogue

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


async def openapi(port: int) -> dict[str, object]:
    async with aiohttp.ClientSession() as http:
        for _ in range(300):
            try:
                async with http.get(f"http://{HOST}:{port}/openapi.json") as resp:
                    if resp.status == 200:
                        doc: dict[str, object] = await resp.json()
                        return doc
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("the control center did not start")


async def test_a_control_center_alone_offers_the_orchestrators_webhook_names(tmp_path: Path) -> None:
    port = free_port()
    env = dict(os.environ)
    env.update(
        {
            "PROVISIONING_DATA_DIR": str(tmp_path / "data"),
            "PROVISIONING_DB_URL": "mem://",
            "PROVISIONING_HOST": HOST,
            "PROVISIONING_CONTROL_CENTER_PORT": str(port),
            "PROVISIONING_ADMIN_PASSWORD": "alone-test-secret-7c2d1a",
            "PROVISIONING_LOG_LEVEL": "WARNING",
            "PROVISIONING_ACCESS_LOG": "false",
        }
    )
    log = tmp_path / "control-center.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "provisioning", "control-center", env=env, stdout=out, stderr=out
        )
        try:
            doc = await openapi(port)
        finally:
            proc.send_signal(signal.SIGTERM)
            async with asyncio.timeout(20):
                await proc.wait()
    schemas = doc["components"]["schemas"]  # type: ignore[index]
    enum = schemas["WebhookCreate"]["properties"]["events"]["items"]["enum"]  # type: ignore[index]
    assert enum == list(Catalogue(product_registry()).patterns)
    assert "task.completed" in enum and "rollback.failed" in enum
    assert proc.returncode == 0, log.read_text()


def test_both_apps_share_one_store_and_one_bus_and_start_control_center_first(
    settings: Settings, store: Store
) -> None:
    bus = EventBus()
    apps = build_apps(settings, store, bus)
    order = apps.in_start_order()
    assert [name for name, _ in order] == ["control_center", "orchestrator"]
    for name, app in order:
        assert app[STORE] is store and app[BUS] is bus and app[SERVICE_KEY] == name


def test_one_service_alone_and_an_unknown_one_refused(settings: Settings, store: Store) -> None:
    apps = build_apps(settings, store, EventBus(), ("orchestrator",))
    assert apps.control_center is None and apps.orchestrator is not None
    with pytest.raises(ValueError, match="unknown services"):
        build_apps(settings, store, EventBus(), ("orchestrator", "registry"))
