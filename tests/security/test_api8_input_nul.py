"""API8 (security misconfiguration), issue 8 finding 2: one NUL byte broke the store for good.

The embedded engine stores a string holding NUL but can never return it. Each attack below
once left a row that made every later read of its table answer 503 (the audit log, the
batch list, webhooks, start-up). Now NUL, other C0 controls (tab, CR and LF are text) and
lone surrogates are refused wherever input comes in: 400 in a path or header, 422 naming
the field in a body or query, before anything is stored or audited."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tests.helpers.services import Services, bearer

OP = {"id": "a", "type": "server_batch", "provider": "local", "simulate": {"latency_s": 0}}


def fields_of(doc: dict[str, Any]) -> list[str]:
    return [f["field"] for f in doc.get("details", {}).get("fields", [])]


async def audit_reads_work(services: Services, admin: str) -> list[dict[str, Any]]:
    resp = await services.cc.get("/audit/verify", headers=bearer(admin))
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["data"]["valid"] is True
    resp = await services.cc.get("/audit/logs", headers=bearer(admin))
    assert resp.status == 200, await resp.text()
    resp = await services.cc.get("/audit/logs", params={"format": "ndjson"}, headers=bearer(admin))
    assert resp.status == 200
    records = [json.loads(line) for line in (await resp.text()).splitlines()]
    assert records and all("action" in r and "success" not in r for r in records)  # no 503 spliced in
    return records


async def test_unauthenticated_nul_in_a_path_is_400_and_never_audited(services: Services) -> None:
    resp = await services.orch.post("/batch/operations/x%00y/cancel")
    doc = await resp.json()
    assert resp.status == 400, doc
    assert fields_of(doc) == ["path.id"]
    assert "NUL" in doc["error"]
    resp = await services.orch.get("/batch/operations/x%01y")
    assert resp.status == 400
    admin = await services.admin()
    records = await audit_reads_work(services, admin)
    assert not any("cancel" in r["action"] for r in records)


async def test_a_batch_named_with_nul_is_422_and_the_list_still_works(services: Services) -> None:
    _, operator = await services.user("op1", "operator")
    body = {"name": "evil\u0000", "operations": [OP]}
    resp = await services.orch.post("/batch/execute", json=body, headers=bearer(operator))
    doc = await resp.json()
    assert resp.status == 422, doc
    assert fields_of(doc) == ["name"]
    nested = {"name": "ok", "operations": [OP, {**OP, "id": "b", "description": "bad\u0007"}]}
    resp = await services.orch.post("/batch/execute", json=nested, headers=bearer(operator))
    doc = await resp.json()
    assert resp.status == 422 and fields_of(doc) == ["operations.1.description"], doc
    key = {"name": "ok", "operations": [{**OP, "simulate": {"latency_s": 0, "k\u0000": 1}}]}
    resp = await services.orch.post("/batch/execute", json=key, headers=bearer(operator))
    doc = await resp.json()
    assert resp.status == 422 and fields_of(doc) == ["operations.0.simulate.k\\x00"], doc
    resp = await services.orch.get("/batch/operations", headers=bearer(operator))
    assert resp.status == 200, await resp.text()
    # Tab, CR and LF are text.
    fine = {"name": "multi\tline\r\n", "operations": [OP]}
    resp = await services.orch.post("/batch/execute", json=fine, headers=bearer(operator))
    assert resp.status == 201, await resp.text()


async def test_lone_surrogates_in_a_body_are_422(services: Services) -> None:
    admin = await services.admin()
    raw = b'{"name": "a\\ud800", "operations": [{"id": "a", "type": "server_batch", "provider": "local"}]}'
    resp = await services.orch.post(
        "/batch/execute", data=raw, headers={**bearer(admin), "Content-Type": "application/json"}
    )
    doc = await resp.json()
    assert resp.status == 422 and fields_of(doc) == ["name"], doc
    assert "surrogate" in doc["error"]


async def test_a_webhook_description_with_nul_is_422_and_webhooks_still_list(services: Services) -> None:
    admin = await services.admin()
    resp = await services.cc.post(
        "/webhooks",
        json={"url": "https://example.com/hook", "events": ["*"], "description": "x\u0000"},
        headers=bearer(admin),
    )
    doc = await resp.json()
    assert resp.status == 422 and fields_of(doc) == ["description"], doc
    resp = await services.cc.get("/webhooks", headers=bearer(admin))
    assert resp.status == 200, await resp.text()


async def test_login_with_nul_in_the_username_is_422_never_a_database_message(services: Services) -> None:
    resp = await services.cc.post("/auth/login", json={"username": "a\u0000", "password": "whatever-123"})
    doc = await resp.json()
    assert resp.status == 422, doc
    assert fields_of(doc) == ["username"]
    assert "database" not in doc["error"] and "serialized" not in doc["error"]
    admin = await services.admin()
    await audit_reads_work(services, admin)


@pytest.mark.parametrize(
    ("query", "field"),
    [("status=%00", "query.status"), ("status=a%1Bb", "query.status"), ("x%00=1", "query.x\\x00")],
)
async def test_control_characters_in_query_parameters_are_422(
    services: Services, query: str, field: str
) -> None:
    admin = await services.admin()
    resp = await services.orch.get(f"/batch/operations?{query}", headers=bearer(admin))
    doc = await resp.json()
    assert resp.status == 422, doc
    assert fields_of(doc) == [field]


async def test_header_values_that_are_not_text_are_400(services: Services) -> None:
    """aiohttp itself refuses NUL in a header; bytes that are not UTF-8 reach the app as
    lone surrogates (and would reach the audit log through User-Agent or X-Forwarded-For)."""
    server = services.cc.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(
        b"POST /auth/login HTTP/1.1\r\nHost: x\r\nUser-Agent: evil\xff\xfe\r\n"
        b"Content-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
    )
    await writer.drain()
    answer = await reader.read()
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), answer[:200]
    doc = json.loads(body)
    assert fields_of(doc) == ["header.user-agent"]
    assert b"X-Request-ID" in head
