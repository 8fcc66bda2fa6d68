"""The built-in extensions' own behaviour: observability (and its token), webui, mcp_http's
glue, and the STATIC capability they rely on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from orchestrator.extensions.builtin.webui.extension import CONSOLE
from tests.helpers.extensions import orchestrator, status, write_extension

STATIC = """
from pathlib import Path

class Ext:
    def setup(self, context):
        context.static.serve(Path(__file__).parent / "public")

def get_extension():
    return Ext()
"""


async def test_builtins_are_listed_with_their_grants(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await orchestrator(aiohttp_client, tmp_path, [])
    doc = await status(client)
    ext = doc["extensions"]
    assert {ext[i]["state"] for i in ("observability", "mcp_http")} == {"loaded"}  # eager
    assert {ext[i]["state"] for i in ("webui", "events_demo")} == {"pending"}  # on first request
    assert ext["observability"]["capabilities"] == ["ROUTES"]
    assert ext["events_demo"]["capabilities"] == ["EVENTS_PUB", "EVENTS_SUB", "ROUTES"]
    assert ext["mcp_http"]["capabilities"] == ["ROUTES", "TOOLS"]
    assert ext["webui"]["info"] == {
        "id": "webui",
        "name": "Web UI",
        "version": "0.1.0",
        "description": "The operator console (control_center/static/console/) served at /ext/webui/",
    }
    assert doc["discovery_sources"] == ["builtin", "entry_point"]


async def test_observability_follows_the_metrics_token(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await orchestrator(aiohttp_client, tmp_path, [], metrics_token="scrape-secret-1234")
    refused = await client.get("/ext/observability/metrics")
    assert refused.status == 401 and refused.headers["WWW-Authenticate"] == 'Bearer realm="metrics"'
    resp = await client.get(
        "/ext/observability/metrics", headers={"Authorization": "Bearer scrape-secret-1234"}
    )
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/plain")
    text = await resp.text()
    for family in ("extension_requests_total", "extension_errors_total", "extension_active_connections"):
        assert f"# TYPE {family.removesuffix('_total')}" in text or f"# TYPE {family}" in text


async def test_webui(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await orchestrator(aiohttp_client, tmp_path, [])
    resp = await client.get("/ext/webui/")
    assert resp.status == 200 and resp.content_type == "text/html"
    page = await resp.text()
    if (CONSOLE / "index.html").is_file():
        assert page == (CONSOLE / "index.html").read_text()
    else:
        assert "control_center/static/console/" in page
    health = await (await client.get("/ext/webui/health")).json()
    assert health["status"] == "healthy" and "console" in health["checks"]


async def test_mcp_http_mounts_the_mcp_routes(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await orchestrator(aiohttp_client, tmp_path, [])
    health = await (await client.get("/ext/mcp_http/health")).json()
    assert health["status"] == "healthy" and health["checks"] == {"mcp": "healthy"}
    assert (await client.get("/ext/mcp_http/meta")).status == 200
    doc = await (await client.get("/openapi.json")).json()
    assert {"/ext/mcp_http/meta", "/ext/mcp_http/mcp"} <= set(doc["paths"])


async def test_static_files_stay_inside_their_directory(aiohttp_client: Any, tmp_path: Path) -> None:
    root = write_extension(tmp_path / "exts", "files", STATIC, grants=["STATIC"])
    (root / "public" / "css").mkdir(parents=True)
    (root / "public" / "index.html").write_text("<p>index</p>")
    (root / "public" / "css" / "site.css").write_text("p {}")
    (root / "secret.txt").write_text("not served")
    client = await orchestrator(
        aiohttp_client, tmp_path, [root.parent], extensions={"files": {"grants": ["STATIC"]}}
    )
    css = await client.get("/ext/files/static/css/site.css")
    assert css.status == 200 and css.content_type == "text/css" and await css.text() == "p {}"
    assert await (await client.get("/ext/files/static/")).text() == "<p>index</p>"
    for path in (
        "/ext/files/static/../secret.txt",
        "/ext/files/static/%2e%2e/secret.txt",
        "/ext/files/static/no",
    ):
        resp = await client.get(path)
        assert resp.status in (400, 404), path
        assert "not served" not in await resp.text()
