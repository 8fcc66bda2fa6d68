"""The operator console: the single-page app the control center serves at ``/``.

The bundle is built from ``console/`` and committed under
``control_center/static/console/`` (``index.html`` and hashed files in
``assets/``), so a wheel serves it without Node.js. It is read once when the app
starts: ``index.html`` (at most :data:`MAX_INDEX_BYTES`) and the list of regular
files directly inside ``assets/`` (at most :data:`MAX_ASSETS`, names of
:data:`ASSET_NAME`, known types only). A request can only name one of those
files, so no path leads anywhere else and nothing is listed.

``/`` and every GET that matches no route, asks for HTML and lies outside the
API's own path prefixes answer the index (the app routes in the browser: history
API); everything else keeps the API's JSON 404. Each console answer carries a
Content-Security-Policy without inline or eval'd script whose ``connect-src`` is
this origin and the orchestrator's (:func:`orchestrator_url`), and refuses
framing, sniffing and referrers.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from aiohttp import web

from shared.errors import NotFound
from shared.settings import Settings
from shared.web.cors import is_secure, request_host
from shared.web.keys import SETTINGS
from shared.web.middlewares import CACHE_CONTROL, add_response_headers
from shared.web.routing import STR, Api, obj

log = logging.getLogger(__name__)

BUNDLE_DIR = Path(__file__).resolve().parent / "static" / "console"
MAX_INDEX_BYTES = 1_048_576
MAX_ASSETS = 5_000
ASSET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
# What a build emits, by suffix; anything else in assets/ is not served (nosniff needs a
# right type, and an unknown file has no business there).
CONTENT_TYPES: Mapping[str, str] = {
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".css": "text/css",
    ".map": "application/json",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".webp": "image/webp",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
    ".woff": "font/woff",
    ".wasm": "application/wasm",
    ".txt": "text/plain",
}
_TEXT_TYPES = ("text/javascript", "text/css", "application/json", "image/svg+xml", "text/plain")
IMMUTABLE = "public, max-age=31536000, immutable"  # hashed names: a new build, new names
REVALIDATE = "no-cache"  # the index names the current build's files: always ask again
NOT_BUILT = b"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>provisioning console</title></head>
<body><h1>The console is not built</h1>
<p>This control center has no console bundle in control_center/static/console/.
Build it with <code>npm ci &amp;&amp; npm run build</code> in <code>console/</code>,
or install a release, which ships it. The API is served as usual.</p></body></html>
"""
TAGS = ("console",)


def _package_version() -> str:
    try:
        return version("provisioning")
    except PackageNotFoundError:
        return "0+unknown"


VERSION = _package_version()


@dataclass(frozen=True)
class Bundle:
    """The built console as read at start: the index page and the files of ``assets/``."""

    index: bytes | None
    assets: Mapping[str, Path] = field(default_factory=dict)

    @classmethod
    def load(cls, root: Path) -> Bundle:
        """Read ``root`` (blocking: run it in a thread). A missing or oversized index
        means no console; stray entries of ``assets/`` are skipped and logged."""
        index_path = root / "index.html"
        index: bytes | None = None
        try:
            if index_path.is_file() and not index_path.is_symlink():
                if index_path.stat().st_size > MAX_INDEX_BYTES:
                    log.warning("the console index.html is too large; not served", extra={"path": str(root)})
                else:
                    index = index_path.read_bytes()
        except OSError as exc:
            log.warning("the console's index.html cannot be read", extra={"error": str(exc)})
        assets: dict[str, Path] = {}
        skipped = 0
        try:
            entries = sorted(os.scandir(root / "assets"), key=lambda e: e.name)
        except OSError:
            entries = []
        for entry in entries:
            suffix = os.path.splitext(entry.name)[1].lower()
            if (
                len(assets) < MAX_ASSETS
                and ASSET_NAME.fullmatch(entry.name)
                and suffix in CONTENT_TYPES
                and entry.is_file(follow_symlinks=False)
            ):
                assets[entry.name] = Path(entry.path)
            else:
                skipped += 1
        if skipped:
            log.warning("some files of the console's assets/ are not served", extra={"skipped": skipped})
        return cls(index, assets)


CONSOLE = web.AppKey("console_bundle", Bundle)


def orchestrator_url(request: web.Request, settings: Settings) -> str:
    """Where the page's browser reaches the orchestrator: ``console_orchestrator_url``, or
    the host the page came from (a well-formed ``Host`` only) on ``orchestrator_port``."""
    if settings.console_orchestrator_url:
        return settings.console_orchestrator_url
    host = request_host(request)
    name = "localhost"
    if host is not None:
        name = host[: host.rindex("]") + 1] if host.startswith("[") else host.split(":", 1)[0]
    scheme = "https" if is_secure(request, settings) else "http"
    return f"{scheme}://{name}:{settings.orchestrator_port}"


def _ws(url: str) -> str:
    return "wss" + url[5:] if url.startswith("https") else "ws" + url[4:]


def console_headers(request: web.Request) -> dict[str, str]:
    """The security headers of every console answer (docs/console.md)."""
    settings = request.app[SETTINGS]
    orchestrator = orchestrator_url(request, settings)
    host = request_host(request)
    connect = ["'self'"]
    if host is not None:  # 'self' covers ws: of this origin only in CSP level 3 browsers
        connect.append(f"{'wss' if is_secure(request, settings) else 'ws'}://{host}")
    connect += [orchestrator, _ws(orchestrator)]
    policy = [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src " + " ".join(connect),
        "object-src 'none'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'self'",
    ]
    return {
        "Content-Security-Policy": "; ".join(policy),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
    }


def _index_page(request: web.Request) -> web.Response:
    add_response_headers(request, console_headers(request))
    index = request.app[CONSOLE].index
    request[CACHE_CONTROL] = REVALIDATE
    return web.Response(body=NOT_BUILT if index is None else index, content_type="text/html", charset="utf-8")


api = Api()
HTML = {"text/html": {"schema": {"type": "string", "description": "the console's page"}}}
CONSOLE_CONFIG = obj(
    {
        "orchestrator_url": {**STR, "description": "where the console's browser reaches the orchestrator"},
        "version": {**STR, "description": "the running release"},
    }
)


@api.route("GET", "/", public=True, tags=TAGS, media=HTML)
async def index(request: web.Request) -> web.Response:
    """The operator console (a page saying so when the bundle is not built)."""
    return _index_page(request)


@api.route(
    "GET",
    "/assets/{name}",
    public=True,
    tags=TAGS,
    media={ctype: {"schema": {"type": "string"}} for ctype in sorted(set(CONTENT_TYPES.values()))},
)
async def asset(request: web.Request) -> web.StreamResponse:
    """A file of the console's build (hashed name: cached for a year)."""
    add_response_headers(request, console_headers(request))
    name = request.match_info["name"]
    path = request.app[CONSOLE].assets.get(name)
    if path is None:
        raise NotFound(f"no such console file: {name[:200]}")
    ctype = CONTENT_TYPES[os.path.splitext(name)[1].lower()]
    if ctype in _TEXT_TYPES:
        ctype += "; charset=utf-8"
    request[CACHE_CONTROL] = IMMUTABLE
    return web.FileResponse(path, headers={"Content-Type": ctype})


@api.route("GET", "/console/config.json", public=True, tags=TAGS, response=CONSOLE_CONFIG, raw=True)
async def config(request: web.Request) -> web.Response:
    """What the console needs to start: the orchestrator's URL and the release."""
    add_response_headers(request, console_headers(request))
    settings = request.app[SETTINGS]
    return web.json_response({"orchestrator_url": orchestrator_url(request, settings), "version": VERSION})


def _api_prefixes(app: web.Application) -> frozenset[str]:
    """The first path segments of the app's routes (``users``, ``auth`` …): below them a
    path is the API's, and an unknown one stays a JSON 404."""
    prefixes = set()
    for resource in app.router.resources():
        first = resource.canonical.strip("/").split("/", 1)[0]
        if first:
            prefixes.add(first)
    return frozenset(prefixes)


def install(app: web.Application, root: Path | None = None) -> None:
    """Serve the console of ``root`` (default: the packaged bundle) on ``app``: its routes
    are in :data:`api`; this adds the history-API fallback and reads the bundle at start."""
    prefixes: frozenset[str] = frozenset()

    async def bundle_ctx(app: web.Application) -> AsyncIterator[None]:
        nonlocal prefixes
        app[CONSOLE] = await asyncio.to_thread(Bundle.load, root or BUNDLE_DIR)
        prefixes = _api_prefixes(app)
        if app[CONSOLE].index is None:
            log.info("the console is not built; / says so", extra={"path": str(root or BUNDLE_DIR)})
        yield

    @web.middleware
    async def history_fallback(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Innermost: a GET for an HTML page at a path no route knows is the console's."""
        try:
            return await handler(request)
        except web.HTTPNotFound:
            unmatched = getattr(request.match_info, "http_exception", None) is not None
            first = request.path.strip("/").split("/", 1)[0]
            if (
                not unmatched
                or request.method != "GET"
                or "text/html" not in request.headers.get("Accept", "")
                or first in prefixes
            ):
                raise
            return _index_page(request)

    app.cleanup_ctx.append(bundle_ctx)
    app.middlewares.append(history_fallback)
