"""An MCP client (the official SDK's) on a live test server, and raw JSON-RPC posts (no fixtures)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
from aiohttp.test_utils import TestClient
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

MCP_PATH = "/ext/mcp_http/mcp"
MODERN = "2026-07-28"
ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientCapabilities": {},
}


@asynccontextmanager
async def mcp_client(orch: TestClient, token: str, mode: str = "auto") -> AsyncIterator[Client]:
    """The SDK's client on the orchestrator's real port: ``mode`` "legacy" is the 2025-11-25
    handshake, "auto" probes server/discover and speaks 2026-07-28."""
    url = str(orch.make_url(MCP_PATH))
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as http:
        async with Client(streamable_http_client(url, http_client=http), mode=mode) as client:
            yield client


def result_of(call: Any) -> dict[str, Any]:
    """The JSON a tool result carries as text."""
    doc: dict[str, Any] = json.loads(call.content[0].text)
    return doc


def modern_call(
    method: str, params: dict[str, Any] | None = None, request_id: int = 1
) -> tuple[dict[str, Any], dict[str, str]]:
    """A 2026-07-28 request and its routing headers."""
    body = {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": method,
        "params": {**(params or {}), "_meta": dict(ENVELOPE)},
    }
    headers = {
        "MCP-Protocol-Version": MODERN,
        "Mcp-Method": method,
        "Accept": "application/json, text/event-stream",
    }
    if method == "tools/call":
        headers["Mcp-Name"] = str((params or {}).get("name"))
    return body, headers
