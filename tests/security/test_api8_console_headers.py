"""API8 (security misconfiguration), issue 11: the console's answers carry a
Content-Security-Policy without inline or eval'd script and refuse framing,
sniffing and referrers; no answer of either service names a server version; no
answer sets a token anywhere but the refresh cookie."""

from __future__ import annotations

import asyncio
import re

from aiohttp import ClientResponse

from shared.web.keys import SETTINGS
from tests.helpers.services import ADMIN_PASSWORD, Services, bearer

HTML = {"Accept": "text/html"}


def directives(csp: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for part in csp.split(";"):
        name, *values = part.split()
        out[name] = values
    return out


def assert_console_headers(resp: ClientResponse, orchestrator_port: int) -> None:
    csp = directives(resp.headers["Content-Security-Policy"])
    assert csp["default-src"] == ["'self'"]
    assert csp["script-src"] == ["'self'"]
    assert csp["style-src"] == ["'self'"]
    assert csp["img-src"] == ["'self'", "data:"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert csp["base-uri"] == ["'none'"]
    assert csp["form-action"] == ["'self'"]
    assert "'self'" in csp["connect-src"]
    assert any(v.startswith("http://") and v.endswith(f":{orchestrator_port}") for v in csp["connect-src"])
    assert any(v.startswith("ws://") and v.endswith(f":{orchestrator_port}") for v in csp["connect-src"])
    text = resp.headers["Content-Security-Policy"]
    assert "unsafe-inline" not in text and "unsafe-eval" not in text and "*" not in text
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Referrer-Policy"] == "no-referrer"
    assert resp.headers["X-Frame-Options"] == "DENY"


def assert_no_server_version(resp: ClientResponse | dict[str, str]) -> None:
    server = resp.get("Server", "") if isinstance(resp, dict) else resp.headers.get("Server", "")
    assert not re.search(r"[0-9]", server), server
    assert "aiohttp" not in server.lower() and "python" not in server.lower()


async def test_every_console_answer_carries_the_security_headers(services: Services) -> None:
    port = services.cc.app[SETTINGS].orchestrator_port
    for path, headers in (
        ("/", HTML),
        ("/batches/abc", HTML),
        ("/admin/policies", HTML),
        ("/console/config.json", {}),
        ("/assets/missing-file.js", {}),
    ):
        resp = await services.cc.get(path, headers=headers)
        assert resp.status in (200, 404), path
        assert_console_headers(resp, port)
        assert_no_server_version(resp)


async def raw_exchange(port: int, request: bytes) -> dict[str, str]:
    """The headers of the answer to raw bytes (aiohttp's own protocol errors too)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    answer = await reader.read(65536)
    writer.close()
    head = answer.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in head[1:])}


async def test_no_answer_of_either_service_names_a_server_version(services: Services) -> None:
    admin = await services.admin()
    origin = {"Origin": "http://127.0.0.1:9080"}
    answers = [
        await services.cc.get("/", headers=HTML),
        await services.cc.get("/console/config.json"),
        await services.cc.get("/nope"),
        await services.cc.get("/auth/me/permissions", headers=bearer(admin)),
        await services.cc.post("/auth/refresh", json={}),
        await services.cc.options(
            "/auth/refresh", headers={**origin, "Access-Control-Request-Method": "POST"}
        ),
        await services.orch.get("/health", headers=origin),
        await services.orch.options(
            "/batch/operations", headers={**origin, "Access-Control-Request-Method": "GET"}
        ),
        await services.orch.options(
            "/batch/operations",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
        ),
        await services.orch.get("/events", headers={"Origin": "https://evil.example", **bearer(admin)}),
        await services.orch.get("/batch/operations"),
    ]
    for resp in answers:
        assert_no_server_version(resp)
    for client in (services.cc, services.orch):
        assert client.server.port is not None
        for raw in (b"NONSENSE\r\n\r\n", b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n"):
            assert_no_server_version(await raw_exchange(client.server.port, raw))


async def test_no_answer_sets_a_cookie_but_the_refresh_cookie(services: Services) -> None:
    admin = await services.admin()
    answers = [
        await services.cc.get("/", headers=HTML),
        await services.cc.get("/console/config.json"),
        await services.cc.get("/users/me", headers=bearer(admin)),
        await services.cc.post("/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}),
        await services.cc.post("/auth/refresh", json={"token": admin}),
        await services.orch.get("/batch/operations", headers=bearer(admin)),
    ]
    for resp in answers:
        assert "Set-Cookie" not in resp.headers


async def test_the_consoles_login_sets_the_refresh_cookie_only(services: Services) -> None:
    await services.admin()
    body = {"username": "admin", "password": ADMIN_PASSWORD, "mfa_code": services.code("admin")}
    resp = await services.cc.post("/auth/login", json=body, headers={"X-Refresh-Cookie": "1"})
    assert resp.status == 200
    [cookie] = resp.headers.getall("Set-Cookie")
    services.secrets.add(cookie.split(";", 1)[0].split("=", 1)[1])
    data = (await resp.json())["data"]
    services.secrets.add(data["token"])
    assert cookie.startswith("provisioning_refresh=")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/auth" in cookie
    assert "refresh_token" not in data
    assert data["token"] not in cookie  # the access token never goes into a cookie


async def test_a_browser_of_another_origin_cannot_open_the_streams(services: Services) -> None:
    admin = await services.admin()
    for client in (services.orch, services.cc):
        resp = await client.get("/events", headers={**bearer(admin), "Origin": "https://evil.example"})
        assert resp.status == 403
        assert "Access-Control-Allow-Origin" not in resp.headers
