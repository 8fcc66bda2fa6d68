"""CORS on the orchestrator for the console's origin (``cors_origins``): preflights
answered for allowed origins only, no credentials, headers the console reads exposed;
the streams refuse a browser of another origin; requests without ``Origin`` (the CLI)
are unchanged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from orchestrator.app import create_app as create_orchestrator
from shared.settings import Settings, SettingsError, load_settings

CONSOLE = "http://localhost:9080"  # the default: the control center's own URL
EVIL = "https://evil.example"
PREFLIGHT = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
OP = {"id": "a", "type": "server_batch", "provider": "noop"}


@pytest.fixture
async def orch_cors(aiohttp_client: Any, settings: Settings) -> TestClient:
    """An orchestrator (authentication off) with the default ``cors_origins``."""
    client: TestClient = await aiohttp_client(create_orchestrator(settings))
    return client


def cors_headers(resp: aiohttp.ClientResponse) -> set[str]:
    return {name for name in resp.headers if name.lower().startswith("access-control-")}


# -- the setting ------------------------------------------------------------------------------------


def test_the_default_is_the_control_centers_own_url() -> None:
    assert load_settings().resolved_cors_origins == ("http://localhost:9080", "http://127.0.0.1:9080")
    moved = load_settings(control_center_port=8443, host="ops.internal")
    assert moved.resolved_cors_origins == (
        "http://localhost:8443",
        "http://127.0.0.1:8443",
        "http://ops.internal:8443",
    )


def test_origins_from_the_environment_and_the_toml_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROVISIONING_CORS_ORIGINS", "https://Console.Example.com:443, http://10.0.0.5:9080/")
    assert load_settings().resolved_cors_origins == ("https://console.example.com", "http://10.0.0.5:9080")
    monkeypatch.delenv("PROVISIONING_CORS_ORIGINS")
    path = tmp_path / "provisioning.toml"
    path.write_text('[cors]\norigins = ["http://localhost:5173"]\n')
    assert load_settings(path).cors_origins == ("http://localhost:5173",)


@pytest.mark.parametrize(
    "value", ["*", "localhost:9080", "ftp://x.example", "http://x.example/path", "http://x:99999", "null"]
)
def test_what_is_no_origin_is_refused_naming_the_setting(value: str) -> None:
    with pytest.raises(SettingsError, match="cors_origins"):
        load_settings(cors_origins=value)


# -- preflight and answers ------------------------------------------------------------------------


async def test_a_preflight_of_the_console_is_answered(orch_cors: TestClient) -> None:
    resp = await orch_cors.options("/batch/execute", headers={"Origin": CONSOLE, **PREFLIGHT})
    assert resp.status == 204
    assert resp.headers["Access-Control-Allow-Origin"] == CONSOLE
    assert resp.headers["Access-Control-Allow-Headers"] == "Authorization, Content-Type, Last-Event-ID"
    methods = {m.strip() for m in resp.headers["Access-Control-Allow-Methods"].split(",")}
    assert {"GET", "POST", "PUT", "DELETE"} <= methods
    assert int(resp.headers["Access-Control-Max-Age"]) > 0
    assert "Access-Control-Allow-Credentials" not in resp.headers
    assert resp.headers["Vary"] == "Origin"


@pytest.mark.parametrize("origin", [EVIL, "null", "http://localhost:9081", "http://localhost.evil:9080"])
async def test_a_preflight_of_another_origin_gets_no_cors_headers(orch_cors: TestClient, origin: str) -> None:
    resp = await orch_cors.options("/batch/execute", headers={"Origin": origin, **PREFLIGHT})
    assert resp.status == 403
    assert cors_headers(resp) == set()
    assert (await resp.json())["success"] is False


async def test_the_console_reads_answers_and_their_headers(orch_cors: TestClient) -> None:
    resp = await orch_cors.get("/batch/operations", headers={"Origin": CONSOLE})
    assert resp.status == 200
    assert resp.headers["Access-Control-Allow-Origin"] == CONSOLE
    exposed = {h.strip() for h in resp.headers["Access-Control-Expose-Headers"].split(",")}
    assert exposed == {"X-Total-Count", "Link", "X-Request-Id", "X-Limit", "X-Offset", "Retry-After"}
    assert "Access-Control-Allow-Credentials" not in resp.headers
    # errors too: the console shows the API's message
    resp = await orch_cors.post("/batch/execute", json={}, headers={"Origin": CONSOLE})
    assert resp.status == 422
    assert resp.headers["Access-Control-Allow-Origin"] == CONSOLE


async def test_another_origin_is_served_without_cors_headers(orch_cors: TestClient) -> None:
    resp = await orch_cors.get("/batch/operations", headers={"Origin": EVIL})
    assert resp.status == 200  # the browser keeps the answer from the page
    assert cors_headers(resp) == set()


async def test_without_origin_nothing_changes(orch_cors: TestClient) -> None:
    resp = await orch_cors.get("/batch/operations")
    assert resp.status == 200 and cors_headers(resp) == set() and "Vary" not in resp.headers
    resp = await orch_cors.options("/batch/execute", headers=PREFLIGHT)
    assert resp.status == 405


async def test_configured_origins_replace_the_default(aiohttp_client: Any, settings: Settings) -> None:
    elsewhere = "https://console.example.com"
    moved = settings.model_copy(update={"cors_origins": (elsewhere,)})
    client: TestClient = await aiohttp_client(create_orchestrator(moved))
    resp = await client.options("/batch/execute", headers={"Origin": elsewhere, **PREFLIGHT})
    assert resp.status == 204
    resp = await client.options("/batch/execute", headers={"Origin": CONSOLE, **PREFLIGHT})
    assert resp.status == 403


# -- streams ----------------------------------------------------------------------------------------


async def test_the_websocket_takes_the_console_and_the_cli(orch_cors: TestClient) -> None:
    for headers in ({"Origin": CONSOLE}, {}):
        ws = await orch_cors.ws_connect("/ws?events=batch", headers=headers)
        welcome = await ws.receive_json(timeout=5)
        assert welcome["type"] == "welcome"
        await ws.close()


@pytest.mark.parametrize("origin", [EVIL, "null", "http://127.0.0.1:9999"])
async def test_the_websocket_refuses_a_page_of_another_origin(orch_cors: TestClient, origin: str) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await orch_cors.ws_connect("/ws", headers={"Origin": origin})
    assert refused.value.status == 403


async def test_server_sent_events_refuse_a_page_of_another_origin(orch_cors: TestClient) -> None:
    resp = await orch_cors.get("/events", headers={"Origin": EVIL})
    assert resp.status == 403
    assert "cors_origins" in (await resp.json())["error"]
    resp = await orch_cors.get("/events", headers={"Origin": CONSOLE}, timeout=aiohttp.ClientTimeout(total=5))
    assert resp.status == 200
    assert resp.headers["Access-Control-Allow-Origin"] == CONSOLE
    resp.close()


async def test_the_services_own_origin_is_always_allowed(orch_cors: TestClient) -> None:
    own = f"http://127.0.0.1:{orch_cors.server.port}"
    ws = await orch_cors.ws_connect("/ws", headers={"Origin": own})
    assert (await ws.receive_json(timeout=5))["type"] == "welcome"
    await ws.close()
