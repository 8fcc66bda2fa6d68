"""API10 (unsafe consumption of APIs), issue 8 finding 2: a webhook consumer's answer holding
NUL was kept raw in the delivery log, after which /webhooks, the dispatcher and every restart
failed on that row. What comes back from a consumer is now kept sanitised (NUL and other
controls except tab/CR/LF replaced) and bounded, and the store could not keep a NUL anyway."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from shared.settings import load_settings
from shared.web.app import open_store
from tests.helpers.services import running_apps

HOSTILE = b"ok\x00then\x07bell\x1b[31mred\r\n\ttab" + b"\xff" + b"y" * 3000


@asynccontextmanager
async def up(tmp_path: Path) -> AsyncIterator[tuple[TestClient, TestClient]]:
    """Both services on a surrealkv:// data directory (so a restart reads what was written)."""
    settings = load_settings(
        data_dir=tmp_path, auth_enabled=False, webhooks_allow_private=True, webhook_poll_s=0.05
    )
    store = open_store(settings)
    await store.open()
    try:
        async with running_apps(settings, store) as (cc, orch):
            yield cc, orch
    finally:
        await store.close()


async def test_a_hostile_consumer_answer_is_kept_sanitised_and_bounded(
    tmp_path: Path, aiohttp_server: Any
) -> None:
    async def hook(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=200, body=HOSTILE)

    consumer = web.Application()
    consumer.router.add_post("/hook", hook)
    server = await aiohttp_server(consumer)
    async with up(tmp_path) as (cc, _orch):
        resp = await cc.post(
            "/webhooks", json={"url": str(server.make_url("/hook")), "events": ["webhook.test"]}
        )
        assert resp.status == 201, await resp.text()
        webhook_id = (await resp.json())["data"]["id"]
        resp = await cc.post(f"/webhooks/{webhook_id}/test")
        delivery_id = (await resp.json())["data"]["id"]
        async with asyncio.timeout(10):
            while True:
                resp = await cc.get(f"/webhooks/{webhook_id}/deliveries/{delivery_id}")
                assert resp.status == 200, await resp.text()
                detail = (await resp.json())["data"]
                if detail["status"] == "delivered":
                    break
                await asyncio.sleep(0.02)
        kept = detail["attempts"][0]["response"]
        assert kept.startswith("ok\ufffdthen\ufffdbell\ufffd[31mred\r\n\ttab\ufffdyyy")
        assert "\x00" not in kept and "\x1b" not in kept
        assert len(kept) <= 1024
        assert (await cc.get("/webhooks")).status == 200
    # A restart reads every row back.
    async with up(tmp_path) as (cc, _orch):
        resp = await cc.get("/webhooks")
        assert resp.status == 200 and len((await resp.json())["data"]) == 1
        resp = await cc.get(f"/webhooks/{webhook_id}/deliveries")
        assert resp.status == 200, await resp.text()
