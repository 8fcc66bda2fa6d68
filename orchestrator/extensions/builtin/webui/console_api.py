"""``GET /ext/webui/``: the console's index.html, or a page saying where it will be."""

from __future__ import annotations

import html
from pathlib import Path

from aiohttp import web

from shared.web.routing import Api

PLACEHOLDER = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>provisioning console</title></head>
<body><h1>The operator console is not installed</h1>
<p>It is served here once its bundle is built into <code>{where}</code>
(<code>index.html</code> and its assets).</p>
<p>Meanwhile: <a href="/ext/status">/ext/status</a>, <a href="/openapi.json">/openapi.json</a>.</p>
</body></html>
"""
HTML = "text/html"


def build_api(console: Path, shown_as: str) -> Api:
    api = Api()

    @api.route(
        "GET",
        "/",
        public=True,
        summary="The operator console",
        media={HTML: {"schema": {"type": "string"}}},
    )
    async def console_index(request: web.Request) -> web.StreamResponse:
        index = console / "index.html"
        if index.is_file():
            return web.FileResponse(index, headers={"Content-Type": HTML})
        return web.Response(text=PLACEHOLDER.format(where=html.escape(shown_as)), content_type=HTML)

    return api
