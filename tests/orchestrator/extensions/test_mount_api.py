"""``/ext/*`` behind the product's authentication, policy (``ext:{id}``), audit and
metrics, with both services on one store (authentication on)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from openapi_spec_validator import validate

from tests.helpers.extensions import write_extension
from tests.helpers.services import Services, bearer

ROUTES = """
from aiohttp import web
from pydantic import BaseModel, Field
from shared.web.envelope import ok
from shared.web.routing import INT, STR, Api, obj

class Note(BaseModel):
    text: str = Field(min_length=1, max_length=100)

class Ext:
    def setup(self, context):
        api = Api()

        @api.route("GET", "/notes", resource="ext", action="read", response=obj({"count": INT}))
        async def count(request: web.Request) -> web.Response:
            return ok({"count": 0})

        @api.route("POST", "/notes", resource="ext", action="write", body=Note, status=201,
                   response=obj({"text": STR}))
        async def add(request: web.Request, note: Note) -> web.Response:
            return ok({"text": note.text}, status=201)

        async def echo(request: web.Request, ws: web.WebSocketResponse) -> None:
            async for message in ws:
                await ws.send_str(message.data)

        context.routes.include(api)
        context.routes.websocket("echo", echo)

def get_extension():
    return Ext()
"""


@pytest.fixture
def settings_overrides(tmp_path: Path) -> dict[str, Any]:
    root = write_extension(tmp_path / "exts", "notes", ROUTES).parent
    return {"ext_paths": [str(root)], "extensions": {"notes": {"grants": ["ROUTES"]}}}


async def test_policy_on_ext_resources(services: Services) -> None:
    admin = await services.admin()
    _, viewer = await services.user("vera", "viewer", admin_token=admin)
    _, operator = await services.user("otto", "operator", admin_token=admin)
    orch = services.orch
    assert (await orch.get("/ext/notes/notes")).status == 401
    assert (await orch.get("/ext/notes/notes", headers=bearer(viewer))).status == 200
    refused = await orch.post("/ext/notes/notes", json={"text": "hi"}, headers=bearer(viewer))
    body = await refused.json()
    assert refused.status == 403 and body["details"]["resource"] == "ext:notes"
    assert body["details"]["action"] == "write"
    # A client's own scopes grant nothing.
    scoped = {**bearer(viewer), "X-Scopes": "ext:notes:routes ext:notes:write"}
    assert (await orch.post("/ext/notes/notes", json={"text": "hi"}, headers=scoped)).status == 403
    assert (await orch.post("/ext/notes/notes", json={"text": "hi"}, headers=bearer(operator))).status == 201
    invalid = await orch.post("/ext/notes/notes", json={"text": ""}, headers=bearer(admin))
    assert invalid.status == 422 and (await invalid.json())["details"]["fields"][0]["field"] == "text"
    # Rate-limit headers, as on every authenticated route.
    assert "X-RateLimit-Limit" in (await orch.get("/ext/notes/notes", headers=bearer(viewer))).headers
    # Enabling and disabling is for admins, and audited.
    assert (await orch.post("/ext/notes/disable", headers=bearer(operator))).status == 403
    assert (await orch.post("/ext/notes/disable", headers=bearer(admin))).status == 200
    assert (await orch.get("/ext/notes/notes", headers=bearer(admin))).status == 404
    assert (await orch.post("/ext/notes/enable", headers=bearer(admin))).status == 200
    assert (await orch.get("/ext/notes/notes", headers=bearer(admin))).status == 200
    logs = await services.cc.get("/audit/logs", params={"action": "extensions.manage"}, headers=bearer(admin))
    records = (await logs.json())["data"]
    assert {(r["resource"], r["result"], r["username"]) for r in records} >= {
        ("ext/notes/disable", "success", "admin"),
        ("ext/notes/enable", "success", "admin"),
        ("ext/notes/disable", "denied", "otto"),
    }
    writes = await services.cc.get("/audit/logs", params={"action": "ext:notes.write"}, headers=bearer(admin))
    assert {r["username"] for r in (await writes.json())["data"]} >= {"vera", "otto"}


def sample(text: str, series: str) -> float:
    """The value of one series in Prometheus text (0 when absent): metrics are process-wide."""
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


OK_GET = 'extension_requests_total{endpoint="/ext/notes/notes",extension="notes",method="GET",status="200"}'
FORBIDDEN = 'extension_errors_total{endpoint="/ext/notes/notes",error_type="forbidden",extension="notes"}'
LATENCY = (
    'extension_request_duration_seconds_count{endpoint="/ext/notes/notes",extension="notes",method="GET"}'
)
OPEN_WS = 'extension_active_connections{endpoint="/ext/notes/ws/echo",extension="notes"}'


async def test_metrics_health_and_status(services: Services) -> None:
    admin = await services.admin()
    _, viewer = await services.user("vera", "viewer", admin_token=admin)
    orch = services.orch
    before = await (await orch.get("/ext/observability/metrics")).text()
    assert (await orch.get("/ext/notes/notes", headers=bearer(viewer))).status == 200
    assert (await orch.post("/ext/notes/notes", json={"text": "x"}, headers=bearer(viewer))).status == 403
    health = await orch.get("/ext/notes/health", headers=bearer(viewer))
    doc = await health.json()
    assert health.status == 200 and doc["status"] == "healthy" and doc["version"] == "1.0.0"
    assert set(doc) == {"status", "timestamp", "version", "checks"}
    text = await (await orch.get("/ext/observability/metrics")).text()
    for series in (OK_GET, FORBIDDEN, LATENCY):
        assert sample(text, series) == sample(before, series) + 1, series
    assert "http_requests_total" in text  # the product's own metrics too
    status = (await (await orch.get("/ext/status")).json())["extensions"]["notes"]
    assert status["metrics"]["requests_total"] == 3.0 and status["metrics"]["errors_total"] == 1.0
    assert status["metrics"]["latency_ms_sum"] > 0


async def test_websocket_closed_on_disable(services: Services) -> None:
    admin = await services.admin()
    orch = services.orch
    assert (await orch.get("/ext/notes/ws/echo")).status == 401  # authenticated like any route
    ws = await orch.ws_connect("/ext/notes/ws/echo", headers=bearer(admin))
    await ws.send_str("ping")
    assert (await ws.receive(timeout=5)).data == "ping"
    text = await (await orch.get("/ext/observability/metrics")).text()
    assert sample(text, OPEN_WS) >= 1
    assert (await orch.post("/ext/notes/disable", headers=bearer(admin))).status == 200
    closing = await ws.receive(timeout=5)
    assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert ws.close_code == 1001
    await ws.close()


async def test_websocket_closed_on_shutdown(services: Services) -> None:
    admin = await services.admin()
    ws = await services.orch.ws_connect("/ext/notes/ws/echo", headers=bearer(admin))
    stopping = asyncio.create_task(services.orch.server.app.shutdown())
    closing = await ws.receive(timeout=5)
    await stopping
    assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    await ws.close()


async def test_openapi_documents_the_ext_routes(services: Services) -> None:
    doc = await (await services.orch.get("/openapi.json")).json()
    validate(doc)
    paths = doc["paths"]
    for path in ("/ext/status", "/ext/schema/extension.json", "/ext/{id}/enable", "/ext/notes/health"):
        assert path in paths, path
    assert paths["/ext/status"]["get"]["security"] == []
    assert paths["/ext/{id}/enable"]["post"]["x-permission"] == {"resource": "extensions", "action": "manage"}
    assert "/ext/notes/notes" not in paths  # a lazy extension is documented once loaded
    admin = await services.admin()
    assert (await services.orch.get("/ext/notes/notes", headers=bearer(admin))).status == 200
    doc = await (await services.orch.get("/openapi.json")).json()
    validate(doc)
    post = doc["paths"]["/ext/notes/notes"]["post"]
    assert post["x-permission"] == {"resource": "ext:notes", "action": "write"}
    assert {"201", "401", "403", "422", "429"} <= set(post["responses"])
    assert "101" in doc["paths"]["/ext/notes/ws/echo"]["get"]["responses"]
