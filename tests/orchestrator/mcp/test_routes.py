"""The MCP endpoint and the seed's ``mcp_http`` routes over real HTTP: what is refused and
how (foreign origin, no or bad token, unknown method, unsupported version, header
mismatch, sessions), SSE progress, the protected-resource metadata, and the seed's shapes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.helpers.api_tokens import create_token
from tests.helpers.batches import batch, op
from tests.helpers.mcp import MCP_PATH, MODERN, modern_call
from tests.helpers.services import Services, bearer

ACCEPT = {"Accept": "application/json, text/event-stream"}


async def post(services: Services, body: Any, headers: dict[str, str]) -> tuple[int, Any, Any]:
    resp = await services.orch.post(
        MCP_PATH, data=json.dumps(body), headers={"Content-Type": "application/json", **headers}
    )
    text = await resp.text()
    return resp.status, (json.loads(text) if text else None), resp.headers


async def initialize(services: Services, token: str) -> str:
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"},
        },
    }
    status, doc, headers = await post(services, body, {**bearer(token), **ACCEPT})
    assert status == 200 and doc["result"]["protocolVersion"] == "2025-11-25", doc
    session: str = headers["Mcp-Session-Id"]
    return session


async def test_foreign_origin_is_refused(services: Services) -> None:
    token = await services.admin()
    body, headers = modern_call("tools/list")
    status, doc, _ = await post(
        services, body, {**headers, **bearer(token), "Origin": "https://evil.example"}
    )
    assert status == 403 and doc["code"] == "forbidden"
    own = str(services.orch.make_url("/")).rstrip("/")
    status, doc, _ = await post(services, body, {**headers, **bearer(token), "Origin": own})
    assert status == 200 and doc["result"]["tools"]


@pytest.mark.parametrize("authorization", [None, "Bearer not-a-token", "Bearer pvt_aaaaaaaa_" + "x" * 43])
async def test_missing_or_bad_token_is_401_with_resource_metadata(
    services: Services, authorization: str | None
) -> None:
    body, headers = modern_call("tools/list")
    if authorization:
        headers["Authorization"] = authorization
    status, doc, resp_headers = await post(services, body, headers)
    assert status == 401 and doc["code"] == "unauthorized"
    challenge = resp_headers["WWW-Authenticate"]
    metadata = str(services.orch.make_url("/.well-known/oauth-protected-resource"))
    assert challenge.startswith(f'Bearer resource_metadata="{metadata}"')
    assert ('error="invalid_token"' in challenge) == (authorization is not None)
    resp = await services.orch.get("/.well-known/oauth-protected-resource")
    doc = await resp.json()
    assert resp.status == 200 and doc["resource"] == str(services.orch.make_url(MCP_PATH))
    assert doc["bearer_methods_supported"] == ["header"]


async def test_unknown_method(services: Services) -> None:
    token = await services.admin()
    body, headers = modern_call("tools/frobnicate")
    status, doc, _ = await post(services, body, {**headers, **bearer(token)})
    assert status == 404 and doc["error"]["code"] == -32601 and doc["id"] == 1
    session = await initialize(services, token)
    legacy = {"jsonrpc": "2.0", "id": 7, "method": "tools/frobnicate"}
    status, doc, _ = await post(services, legacy, {**bearer(token), **ACCEPT, "Mcp-Session-Id": session})
    assert status == 200 and doc["error"]["code"] == -32601 and doc["id"] == 7


async def test_unsupported_version_lists_the_supported_ones(services: Services) -> None:
    token = await services.admin()
    body, headers = modern_call("tools/list")
    body["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] = "2099-01-01"
    headers["MCP-Protocol-Version"] = "2099-01-01"
    status, doc, _ = await post(services, body, {**headers, **bearer(token)})
    assert status == 400 and doc["error"]["code"] == -32022
    assert doc["error"]["data"] == {"supported": [MODERN], "requested": "2099-01-01"}
    # on the handshake revision, a header naming an unknown version
    session = await initialize(services, token)
    legacy = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    headers = {**bearer(token), **ACCEPT, "Mcp-Session-Id": session, "MCP-Protocol-Version": "1999-01-01"}
    status, doc, _ = await post(services, legacy, headers)
    assert status == 400 and doc["error"]["code"] == -32022
    assert "2025-11-25" in doc["error"]["data"]["supported"] and MODERN in doc["error"]["data"]["supported"]
    # initialize with a version this server does not speak: it answers with its own
    body = {
        "jsonrpc": "2.0",
        "id": 3,
        "method": "initialize",
        "params": {"protocolVersion": "2024-01-01", "capabilities": {}},
    }
    status, doc, _ = await post(services, body, {**bearer(token), **ACCEPT})
    assert status == 200 and doc["result"]["protocolVersion"] == "2025-11-25"


async def test_modern_requests_are_checked(services: Services) -> None:
    token = await services.admin()
    body, headers = modern_call("tools/call", {"name": "provisioning.batch.list", "arguments": {}})
    status, doc, _ = await post(
        services, body, {**headers, **bearer(token), "Mcp-Name": "provisioning.batch.get"}
    )
    assert status == 400 and doc["error"]["code"] == -32020
    status, doc, _ = await post(services, body, {**headers, **bearer(token), "Mcp-Method": "tools/list"})
    assert status == 400 and doc["error"]["code"] == -32020
    del body["params"]["_meta"]["io.modelcontextprotocol/clientCapabilities"]
    status, doc, _ = await post(services, body, {**headers, **bearer(token)})
    assert status == 400 and doc["error"]["code"] == -32602
    body, headers = modern_call("server/discover")
    status, doc, _ = await post(services, body, {**headers, **bearer(token)})
    result = doc["result"]
    assert status == 200 and MODERN in result["supportedVersions"] and result["resultType"] == "complete"
    assert result["capabilities"] == {"tools": {"listChanged": False}}


async def test_handshake_sessions(services: Services) -> None:
    token = await services.admin()
    _, other = await services.user("olga", "operator")
    listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    status, doc, _ = await post(services, listing, {**bearer(token), **ACCEPT})
    assert status == 400 and "Mcp-Session-Id" in doc["error"]["message"]
    session = await initialize(services, token)
    note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    status, doc, _ = await post(services, note, {**bearer(token), **ACCEPT, "Mcp-Session-Id": session})
    assert status == 202 and doc is None
    status, doc, _ = await post(services, listing, {**bearer(token), **ACCEPT, "Mcp-Session-Id": session})
    assert status == 200 and "resultType" not in doc["result"] and doc["result"]["tools"]
    # another user's token cannot use the session
    status, doc, _ = await post(services, listing, {**bearer(other), **ACCEPT, "Mcp-Session-Id": session})
    assert status == 404
    resp = await services.orch.delete(MCP_PATH, headers={**bearer(token), "Mcp-Session-Id": session})
    assert resp.status == 200 and (await resp.json())["ended"] is True
    status, doc, _ = await post(services, listing, {**bearer(token), **ACCEPT, "Mcp-Session-Id": session})
    assert status == 404 and doc["error"]["code"] == -32600


@pytest.mark.parametrize(
    "raw, code",
    [
        ("{not json", -32700),
        ("[]", -32600),
        ('{"jsonrpc": "1.0", "id": 1, "method": "tools/list"}', -32600),
        ('{"jsonrpc": "2.0", "id": true, "method": "tools/list"}', -32600),
        ('{"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": []}', -32602),
    ],
)
async def test_malformed_messages(services: Services, raw: str, code: int) -> None:
    token = await services.admin()
    resp = await services.orch.post(
        MCP_PATH, data=raw, headers={**bearer(token), **ACCEPT, "Content-Type": "application/json"}
    )
    doc = await resp.json()
    assert resp.status == 400 and doc["error"]["code"] == code, doc


async def test_accept_must_allow_json_or_sse(services: Services) -> None:
    token = await services.admin()
    body, headers = modern_call("tools/list")
    status, doc, _ = await post(services, body, {**headers, **bearer(token), "Accept": "text/html"})
    assert status == 406 and doc["code"] == "not_acceptable"


async def test_progress_streams_as_server_sent_events(services: Services) -> None:
    token, _ = await create_token(services, await services.admin())
    arguments = {**batch(op("a"), op("b", ["a"])), "wait_s": 20}
    body, headers = modern_call("tools/call", {"name": "provisioning.batch.submit", "arguments": arguments})
    body["params"]["_meta"]["progressToken"] = "p-1"
    resp = await services.orch.post(MCP_PATH, json=body, headers={**headers, **bearer(token)})
    assert resp.status == 200 and resp.content_type == "text/event-stream"
    events = [json.loads(line[5:]) for line in (await resp.text()).splitlines() if line.startswith("data:")]
    *notes, final = events
    assert notes and all(n["method"] == "notifications/progress" for n in notes)
    assert {n["params"]["progressToken"] for n in notes} == {"p-1"} and notes[-1]["params"][
        "progress"
    ] == 100.0
    assert final["id"] == 1 and final["result"]["isError"] is False
    assert final["result"]["structuredContent"]["status"] == "Completed"
    # without a progress token the same call answers JSON
    body, headers = modern_call("tools/call", {"name": "provisioning.batch.list", "arguments": {}})
    status, doc, resp_headers = await post(services, body, {**headers, **bearer(token)})
    assert status == 200 and resp_headers["Content-Type"].startswith("application/json")
    assert doc["result"]["structuredContent"]["total"] == 1


async def test_the_seed_routes(services: Services) -> None:
    resp = await services.orch.get("/ext/mcp_http/meta")
    meta = await resp.json()
    assert resp.status == 200 and meta["server"] == "provisioning-mcp-http"
    assert {"handshake", "list_tools", "invoke", "schema", "sse"} <= set(meta["capabilities"])
    resp = await services.orch.post(
        "/ext/mcp_http/handshake", json={"client": {"name": "ChatGPT", "version": "1.0"}}
    )
    shake = await resp.json()
    assert resp.status == 200 and shake["server"]["name"] == "provisioning-mcp-http" and shake["session_id"]
    resp = await services.orch.get("/ext/mcp_http/tools")
    assert resp.status == 401 and "resource_metadata" in resp.headers["WWW-Authenticate"]
    _, viewer = await services.user("vera", "viewer")
    resp = await services.orch.get("/ext/mcp_http/tools", headers=bearer(viewer))
    tools = {t["name"]: t for t in (await resp.json())["tools"]}
    assert tools["provisioning.batch.get"]["parameters"]["required"] == ["id"]
    resp = await services.orch.post(
        "/ext/mcp_http/invoke",
        json={"tool": "provisioning.batch.list", "parameters": {}},
        headers=bearer(viewer),
    )
    doc = await resp.json()
    assert resp.status == 200 and doc == {
        "success": True,
        "result": {"items": [], "total": 0, "limit": 50, "offset": 0, "next_cursor": None},
    }
    for tool, parameters, status, code in (
        ("provisioning.batch.submit", batch(op("a")), 403, "forbidden"),
        ("provisioning.batch.list", {"limit": "many"}, 422, "validation_failed"),
        ("provisioning.nothing", {}, 404, "not_found"),
    ):
        resp = await services.orch.post(
            "/ext/mcp_http/invoke", json={"tool": tool, "parameters": parameters}, headers=bearer(viewer)
        )
        doc = await resp.json()
        assert resp.status == status and doc["code"] == code, doc
        if status == 422:
            assert [f["field"] for f in doc["details"]["fields"]] == ["limit"]


@pytest.mark.parametrize("settings_overrides", [{"rate_limit_default": "4/minute"}])
async def test_mcp_calls_count_under_the_users_rate_limit(services: Services) -> None:
    token = await services.admin()
    body, headers = modern_call("tools/list")
    statuses = []
    for _ in range(6):
        status, _doc, resp_headers = await post(services, body, {**headers, **bearer(token)})
        statuses.append(status)
    assert statuses[0] == 200 and statuses[-1] == 429 and "Retry-After" in resp_headers
