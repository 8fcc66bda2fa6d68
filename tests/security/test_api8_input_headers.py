"""API8 (security misconfiguration), issue 8 finding 10 and part of 9: response headers on
every answer (2xx, 4xx, 5xx, streams, aiohttp's own protocol errors), 5xx bodies that never
quote the database, and X-Request-ID bounded to 64 safe characters."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from shared.settings import load_settings
from shared.web.app import base_app
from shared.web.envelope import ok
from shared.web.keys import STORE
from shared.web.routing import ANY, Api
from tests.helpers.services import Services, bearer

OP = {"id": "a", "type": "server_batch", "provider": "local", "simulate": {"latency_s": 0}}


def assert_hardened(headers: Any) -> None:
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Cache-Control"] == "no-store"
    assert headers["Server"] == "provisioning"
    assert "aiohttp" not in headers["Server"] and "Python" not in headers["Server"]
    assert headers["X-Request-ID"]


async def test_every_answer_of_both_services_is_hardened(services: Services) -> None:
    admin = await services.admin()
    answers = [
        await services.orch.get("/health"),
        await services.cc.get("/health"),
        await services.cc.get("/metrics"),
        await services.orch.get("/batch/operations", headers=bearer(admin)),
        await services.orch.get("/batch/operations"),  # 401
        await services.orch.get("/nope"),  # 404
        await services.orch.post("/batch/execute", json={}, headers=bearer(admin)),  # 422
        await services.cc.post("/auth/login", json={"username": "admin", "password": "wrong-password"}),
        await services.cc.get("/audit/logs", params={"format": "ndjson"}, headers=bearer(admin)),
    ]
    for resp in answers:
        assert_hardened(resp.headers)


async def test_server_sent_events_carry_the_request_id_and_the_headers(services: Services) -> None:
    admin = await services.admin()
    resp = await services.orch.get(
        "/events",
        headers={**bearer(admin), "X-Request-ID": "sse-trace-1"},
        timeout=aiohttp.ClientTimeout(total=5),
    )
    try:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        assert resp.headers["X-Request-ID"] == "sse-trace-1"
        assert_hardened(resp.headers)
    finally:
        resp.close()


async def test_aiohttp_protocol_errors_name_no_versions(services: Services) -> None:
    server = services.orch.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nX-Bad: a\x00b\r\n\r\n")
    await writer.drain()
    answer = await reader.read()
    writer.close()
    assert b" 400 " in answer.split(b"\r\n", 1)[0]
    assert b"aiohttp" not in answer and b"Python/" not in answer
    assert b"Server: provisioning" in answer


@pytest.mark.parametrize(
    ("sent", "kept"),
    [("a" * 64, True), ("a" * 65, False), ("trace.id_1-2", True), ("x y", False), ("é", False)],
)
async def test_request_ids_are_kept_only_when_short_and_safe(
    services: Services, sent: str, kept: bool
) -> None:
    resp = await services.orch.get("/health", headers={"X-Request-ID": sent})
    if kept:
        assert resp.headers["X-Request-ID"] == sent
    else:
        uuid.UUID(resp.headers["X-Request-ID"])


async def test_the_audit_log_stores_the_bounded_request_id(services: Services) -> None:
    admin = await services.admin()
    resp = await services.orch.post(
        "/batch/execute",
        json={"name": "rid", "operations": [OP]},
        headers={**bearer(admin), "X-Request-ID": "r" * 128},
    )
    assert resp.status == 201
    replaced = resp.headers["X-Request-ID"]
    assert replaced != "r" * 128
    resp = await services.cc.get("/audit/logs", params={"action": "batch.execute"}, headers=bearer(admin))
    records = (await resp.json())["data"]
    assert [r["request_id"] for r in records] == [replaced]


# -- 5xx bodies -------------------------------------------------------------------------------


async def app_with_failing_routes(aiohttp_client: Any, tmp_path: Any) -> TestClient:
    """The shared app factory with two routes that hit real engine errors."""
    settings = load_settings(db_url="mem://", data_dir=tmp_path, auth_enabled=False)
    api = Api()

    @api.route("GET", "/broken", public=True, response=ANY)
    async def broken(request: web.Request) -> web.Response:
        # A real engine error whose text names the database's internals.
        return ok(await request.app[STORE].query("SELECT * FROM t START $s", {"s": "nope"}))

    @api.route("GET", "/half", public=True, media={"application/x-ndjson": {"schema": {"type": "string"}}})
    async def half(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        await response.write(b'{"line":1}\n')
        await request.app[STORE].query("SELECT * FROM t START $s", {"s": "nope"})
        return response

    client: TestClient = await aiohttp_client(base_app(settings, service="test", api=api))
    return client


async def test_a_503_never_quotes_the_database(aiohttp_client: Any, tmp_path: Any, caplog: Any) -> None:
    client = await app_with_failing_routes(aiohttp_client, tmp_path)
    resp = await client.get("/broken", headers={"X-Request-ID": "db-err-1"})
    doc = await resp.json()
    assert resp.status == 503, doc
    assert doc["code"] == "store_error"
    assert doc["error"] == "the database is unavailable; quote request id db-err-1 when reporting it"
    assert "details" not in doc
    assert_hardened(resp.headers)
    logged = [r for r in caplog.records if getattr(r, "request_id", None) == "db-err-1"]
    assert logged and "START" in logged[0].error  # the details are in the log


async def test_a_stream_that_fails_half_way_is_cut_not_spliced_with_an_error(
    aiohttp_client: Any, tmp_path: Any
) -> None:
    client = await app_with_failing_routes(aiohttp_client, tmp_path)
    resp = await client.get("/half")
    assert resp.status == 200
    with pytest.raises(aiohttp.ClientPayloadError):
        await resp.read()
    # The connection was dropped instead of an error envelope being written into the body;
    # the next request gets its own answer.
    resp = await client.get("/broken")
    assert resp.status == 503
    assert json.loads(await resp.text())["success"] is False
