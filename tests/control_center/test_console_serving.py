"""The console served by the control center: the index, hashed assets, history-API
routing next to the API's JSON 404s, no way out of the bundle, and a page saying so
when the bundle is not built."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from shared.store.store import Store
from tests.helpers.console import INDEX, SCRIPT, STYLE, console_client, make_bundle

HTML = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
JSON = {"Accept": "application/json"}


async def raw_get(port: int, target: str) -> tuple[int, bytes]:
    """A GET with the request target exactly as given (clients normalise ``..``)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: application/json\r\n"
        "Connection: close\r\n\r\n".encode()
    )
    await writer.drain()
    answer = await reader.read()
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    return make_bundle(tmp_path / "bundle")


async def test_the_index_is_served_at_the_root_and_revalidated(
    store: Store, tmp_path: Path, bundle: Path
) -> None:
    async with console_client(store, tmp_path, bundle) as cc:
        resp = await cc.get("/", headers=HTML)
        assert resp.status == 200
        assert await resp.read() == INDEX
        assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
        assert resp.headers["Cache-Control"] == "no-cache"


@pytest.mark.parametrize(
    "path", ["/signin", "/batches", "/batches/7f3c", "/submit", "/checkpoints", "/admin/users", "/x/y/z"]
)
async def test_console_routes_answer_the_index_to_a_browser(
    store: Store, tmp_path: Path, bundle: Path, path: str
) -> None:
    async with console_client(store, tmp_path, bundle) as cc:
        resp = await cc.get(path, headers=HTML)
        assert resp.status == 200
        assert await resp.read() == INDEX
        assert resp.headers["Cache-Control"] == "no-cache"


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/batches/7f3c", JSON),  # not a browser page: the API's answer
        ("/api-ish", JSON),
        ("/api-ish", {}),
        ("/users/x/y", HTML),  # under an API prefix: never the app
        ("/auth/nothing", HTML),
        ("/assets/nothing.js", HTML),
        ("/console/nothing", HTML),
    ],
)
async def test_other_unknown_paths_keep_the_json_404(
    store: Store, tmp_path: Path, bundle: Path, path: str, headers: dict[str, str]
) -> None:
    async with console_client(store, tmp_path, bundle) as cc:
        resp = await cc.get(path, headers=headers)
        assert resp.status == 404
        doc = await resp.json()
        assert doc["success"] is False and doc["code"] == "not_found"
        assert resp.headers["Cache-Control"] == "no-store"


async def test_api_routes_win_over_the_app(store: Store, tmp_path: Path, bundle: Path) -> None:
    async with console_client(store, tmp_path, bundle) as cc:
        resp = await cc.get("/health", headers=HTML)
        assert resp.status == 200
        assert (await resp.json())["success"] is True
        resp = await cc.post("/batches", headers=HTML)  # only GET falls back to the app
        assert resp.status == 404
        resp = await cc.get("/auth/login", headers=HTML)  # a POST route stays a 405
        assert resp.status == 405


async def test_hashed_assets_are_cached_for_a_year_with_their_type(
    store: Store, tmp_path: Path, bundle: Path
) -> None:
    async with console_client(store, tmp_path, bundle) as cc:
        resp = await cc.get("/assets/index-3f2a1b.js")
        assert resp.status == 200
        assert await resp.read() == SCRIPT
        assert resp.headers["Content-Type"] == "text/javascript; charset=utf-8"
        assert resp.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        resp = await cc.get("/assets/index-9c8d7e.css")
        assert await resp.read() == STYLE
        assert resp.headers["Content-Type"] == "text/css; charset=utf-8"


@pytest.mark.parametrize(
    "raw",
    [
        "/assets/../index.html",
        "/assets/%2e%2e/index.html",
        "/assets/..%2findex.html",
        "/assets/%2e%2e%2f%2e%2e%2fapp.py",
        "/assets/..%5c..%5capp.py",
        "/assets/%00index-3f2a1b.js",
        "/assets/.hidden.js",
        "/assets/",
        "/assets",
        "/assets//etc/passwd",
        "/assets/outside.js",
        "/assets/linked.js",
        "/assets/notes.sh",
        "/assets/sub",
        "/assets/" + "a" * 300 + ".js",
    ],
)
async def test_no_path_leads_out_of_the_bundle_or_lists_it(
    store: Store, tmp_path: Path, bundle: Path, raw: str
) -> None:
    outside = tmp_path / "outside.js"
    outside.write_text("secret = 1")
    os.symlink(outside, bundle / "assets" / "linked.js")
    (bundle / "assets" / "notes.sh").write_text("echo no")
    (bundle / "assets" / "sub").mkdir()
    async with console_client(store, tmp_path, bundle) as cc:
        assert cc.server.port is not None
        status, body = await raw_get(cc.server.port, raw)
        assert status in (400, 404), (raw, status)
        assert b"secret" not in body and b"echo no" not in body and b"index-3f2a1b" not in body
        assert b"<a href" not in body


async def test_a_bundle_that_is_not_built_is_said_so(store: Store, tmp_path: Path) -> None:
    async with console_client(store, tmp_path, tmp_path / "no-bundle-here") as cc:
        resp = await cc.get("/", headers=HTML)
        assert resp.status == 200
        text = await resp.text()
        assert "The console is not built" in text and "npm run build" in text
        assert "Content-Security-Policy" in resp.headers
        resp = await cc.get("/batches", headers=HTML)
        assert "The console is not built" in await resp.text()
        resp = await cc.get("/assets/index-3f2a1b.js")
        assert resp.status == 404


async def test_an_oversized_index_is_not_served(store: Store, tmp_path: Path, bundle: Path) -> None:
    (bundle / "index.html").write_bytes(b"<html>" + b" " * (1_048_576 + 1))
    async with console_client(store, tmp_path, bundle) as cc:
        resp = await cc.get("/", headers=HTML)
        assert "The console is not built" in await resp.text()


async def test_config_names_the_orchestrator_as_the_page_reached_us(
    store: Store, tmp_path: Path, bundle: Path
) -> None:
    async with console_client(store, tmp_path, bundle, orchestrator_port=9191) as cc:
        resp = await cc.get("/console/config.json", headers={"Host": "ops.example.com:9080"})
        assert resp.status == 200
        doc = await resp.json()
        assert doc["orchestrator_url"] == "http://ops.example.com:9191"
        assert doc["version"]
        resp = await cc.get("/console/config.json", headers={"Host": "[::1]:9080"})
        assert (await resp.json())["orchestrator_url"] == "http://[::1]:9191"
        # A Host that is no host name is never echoed.
        resp = await cc.get("/console/config.json", headers={"Host": "evil.com;script-src *"})
        assert (await resp.json())["orchestrator_url"] == "http://localhost:9191"
        assert "evil" not in resp.headers["Content-Security-Policy"]


async def test_config_follows_the_setting(store: Store, tmp_path: Path, bundle: Path) -> None:
    url = "https://orchestrator.example.com"
    async with console_client(store, tmp_path, bundle, console_orchestrator_url=url + "/") as cc:
        resp = await cc.get("/console/config.json")
        assert (await resp.json())["orchestrator_url"] == url
        csp = resp.headers["Content-Security-Policy"]
        assert f"{url} wss://orchestrator.example.com" in csp


async def test_many_requests_for_the_console_at_once(store: Store, tmp_path: Path, bundle: Path) -> None:
    async with console_client(store, tmp_path, bundle) as cc:
        answers = await asyncio.gather(
            *(cc.get(p, headers=HTML) for p in ("/", "/batches", "/assets/index-3f2a1b.js") * 20)
        )
        assert {a.status for a in answers} == {200}
