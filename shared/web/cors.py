"""Which browser origins may use a service: CORS for the console, and the origin checks
of the streams and of the refresh cookie.

The console is served by the control center and calls the orchestrator directly
(no proxy), with bearer tokens: the orchestrator answers CORS for the origins of
``cors_origins`` (default: the control center's own URL), never with credentials,
and a disallowed origin gets no CORS headers at all. A browser's WebSocket is not
bound by CORS, so the streams check ``Origin`` themselves (:func:`origin_allowed`);
a request without ``Origin`` (the CLI, a script) is not a browser's and is not
affected.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from aiohttp import web

from shared.errors import Forbidden
from shared.settings import Settings, normal_origin
from shared.web.keys import SETTINGS
from shared.web.middlewares import add_response_headers

ALLOW_METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE"
ALLOW_HEADERS = "Authorization, Content-Type, Last-Event-ID"
EXPOSE_HEADERS = "X-Total-Count, Link, X-Request-Id, X-Limit, X-Offset, Retry-After"
PREFLIGHT_MAX_AGE_S = 600  # how long a browser may reuse a preflight's answer
# A Host header worth building an origin from: a DNS name or a bracketed IPv6 address,
# and a port. Anything else (spaces, semicolons, paths) is never echoed anywhere.
_HOST = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}))*\.?|\[[0-9A-Fa-f:.]{2,45}\])"
    r"(?::[0-9]{1,5})?"
)


def is_secure(request: web.Request, settings: Settings) -> bool:
    """Whether the browser reached us over TLS: directly, or (``X-Forwarded-Proto``) through
    one of ``trusted_proxies``; nobody else is believed."""
    if request.secure:
        return True
    if request.remote is not None and request.remote in settings.trusted_proxies:
        proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
        return proto == "https"
    return False


def request_host(request: web.Request) -> str | None:
    """The ``Host`` the client asked for (``name[:port]``), if it is a well-formed one."""
    host = request.host
    return host if _HOST.fullmatch(host) else None


def own_origin(request: web.Request, settings: Settings) -> str | None:
    """This service's origin as the client addressed it (``scheme://host[:port]``)."""
    host = request_host(request)
    if host is None:
        return None
    try:
        return normal_origin(f"{'https' if is_secure(request, settings) else 'http'}://{host}")
    except ValueError:
        return None


def allowed_origin(request: web.Request, origin: str) -> str | None:
    """``Origin`` (as browsers spell it) if it is one of ``cors_origins`` or this
    service's own origin; else None."""
    settings = request.app[SETTINGS]
    try:
        normal = normal_origin(origin)
    except ValueError:
        return None  # "null", a path, a port out of range …
    if normal in settings.resolved_cors_origins or normal == own_origin(request, settings):
        return normal
    return None


def origin_allowed(request: web.Request, origin: str) -> bool:
    return allowed_origin(request, origin) is not None


@web.middleware
async def cors_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Answer preflights of allowed origins; let allowed origins read every answer
    (errors and streams included). No credentials: the console sends bearer tokens."""
    origin = request.headers.get("Origin")
    if origin is None:
        return await handler(request)
    allowed = allowed_origin(request, origin)
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        if allowed is None:
            raise Forbidden(
                "this origin may not call the service from a browser; add it to cors_origins",
                details={"origin": origin[:200]},
            )
        return web.Response(
            status=204,
            headers={
                "Access-Control-Allow-Origin": allowed,
                "Access-Control-Allow-Methods": ALLOW_METHODS,
                "Access-Control-Allow-Headers": ALLOW_HEADERS,
                "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE_S),
                "Vary": "Origin",
            },
        )
    headers = {"Vary": "Origin"}
    if allowed is not None:
        headers["Access-Control-Allow-Origin"] = allowed
        headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
    add_response_headers(request, headers)
    return await handler(request)
