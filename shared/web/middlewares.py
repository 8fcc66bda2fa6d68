"""The middlewares every app runs first: request id, hostile-input checks, the error
envelope for every exception, request metrics, safe response headers and
``Accept`` versioning (406).
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, nullcontext

from aiohttp import web, web_response

from shared.collector import burst
from shared.errors import (
    NotAcceptable,
    ProvisioningError,
    StoreError,
)
from shared.metrics import HTTP_LATENCY, HTTP_REQUESTS
from shared.web.envelope import error_response
from shared.web.keys import SERVICE_KEY, STORE
from shared.web.routing import route_spec
from shared.web.validation import check_request_line, json_body

log = logging.getLogger(__name__)


log = logging.getLogger(__name__)

API_VERSION = 1
_VND = re.compile(r"application/vnd\.provisioning\.v(\d+)\+json")

REQUEST_ID = web.RequestKey("request_id", str)
# Headers any layer wants on the response, error responses included (e.g. X-RateLimit-*).
EXTRA_HEADERS = web.RequestKey("extra_headers", dict[str, str])
# A response's own caching rule (the console's hashed assets), instead of ``no-store``.
CACHE_CONTROL = web.RequestKey("cache_control", str)
# Set by a handler that accepted a workflow submission (the batch rate limit counts these).
SUBMITTED = web.RequestKey("submitted", bool)


def add_response_headers(request: web.Request, headers: dict[str, str]) -> None:
    """Ask for headers on this request's response, whatever the outcome."""
    request.setdefault(EXTRA_HEADERS, {}).update(headers)


_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
# Instead of aiohttp's "Python/3.11 aiohttp/3.x": no versions for an attacker to look up.
SERVER_HEADER = "provisioning"
# aiohttp's own answers (a malformed request line, a bad header) never reach the app or
# its signals; they take the Server header from this module global.
web_response.SERVER_SOFTWARE = SERVER_HEADER  # type: ignore[attr-defined]


def request_id_of(incoming: str) -> str:
    """A client's ``X-Request-ID`` if it is ≤ 64 of ``[A-Za-z0-9._-]``, else a new one."""
    return incoming if _REQUEST_ID.fullmatch(incoming) else str(uuid.uuid4())


async def secure_response_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: on every response the app sends, streams included.

    ``nosniff``; ``Cache-Control: no-store`` (every answer of these APIs is about a
    user's data, tokens, the audit log or live events: nothing a browser or an
    intermediary should keep), unless the request set :data:`CACHE_CONTROL` (the
    console's static files); the Server
    header without versions; ``X-Request-ID`` and the
    headers layers asked for, also on a stream prepared inside its handler (SSE),
    before this module's middleware could add them."""
    headers = response.headers
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Cache-Control"] = request.get(CACHE_CONTROL, "no-store")
    headers["Server"] = SERVER_HEADER
    request_id = request.get(REQUEST_ID)
    if request_id is not None:
        headers.setdefault("X-Request-ID", request_id)
    for name, value in request.get(EXTRA_HEADERS, {}).items():
        headers.setdefault(name, value)


def _server_error(request: web.Request, exc: ProvisioningError, request_id: str) -> web.Response:
    """A 5xx the services raised on purpose: the details go to the log, never to the client
    (a database's message names its internals)."""
    log.error(
        "request failed: %s",
        exc.code,
        extra={"request_id": request_id, "path": request.path, "error": exc.message, "code": exc.code},
    )
    what = "the database is unavailable" if isinstance(exc, StoreError) else "the service failed"
    return error_response(exc.status, f"{what}; quote request id {request_id} when reporting it", exc.code)


def _started(request: web.Request) -> bool:
    """Whether a response has begun on the wire (a stream that failed half-way)."""
    writer = request.writer
    return bool(getattr(writer, "output_size", 0))


@contextmanager
def _bulk(request: web.Request) -> Iterator[None]:
    """A request that allocates and writes in bulk (``RouteSpec.burst``): out of the
    garbage collector's way, and no lazy rows applied before its write."""
    store = request.app.get(STORE)
    with burst(), store.foreground() if store is not None else nullcontext():
        yield


@web.middleware
async def request_context_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """X-Request-ID, hostile-input refusal, metrics by route template, and the error
    envelope for everything.

    Outermost: path parameters, headers, queries and (for routes that declare one) the
    body are checked here, before the policy and audit middlewares see the request."""
    request_id = request_id_of(request.headers.get("X-Request-ID", ""))
    request[REQUEST_ID] = request_id
    started = time.perf_counter()
    try:
        check_request_line(request)
        spec = route_spec(request)
        with _bulk(request) if spec is not None and spec.burst else nullcontext():
            if spec is not None and spec.body is not None:
                await json_body(request)
            response = await handler(request)
    except ProvisioningError as exc:
        if _started(request):
            log.error(
                "a response failed after it started; the connection is closed",
                extra={"request_id": request_id, "path": request.path, "error": exc.message},
            )
            raise ConnectionResetError("response aborted after it started") from None
        if exc.status >= 500:
            response = _server_error(request, exc, request_id)
        else:
            response = error_response(exc.status, exc.message, exc.code, exc.details)
        if exc.status == 429:
            response.headers.update(exc.details.get("headers", {}))
    except web.HTTPRequestEntityTooLarge:
        response = error_response(
            413,
            f"request body is larger than the limit of {request.client_max_size} bytes",
            "payload_too_large",
        )
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = {
            404: f"no such endpoint: {request.method} {request.path}",
            405: f"method {request.method} is not allowed on {request.path}",
        }.get(exc.status, exc.reason)
        response = error_response(exc.status, message, exc.reason.lower().replace(" ", "_"))
        if "Allow" in exc.headers:  # 405: RFC 9110 asks for the methods the resource takes
            response.headers["Allow"] = exc.headers["Allow"]
    except Exception:
        log.exception("unhandled error", extra={"request_id": request_id, "path": request.path})
        if _started(request):
            raise ConnectionResetError("response aborted after it started") from None
        response = error_response(
            500,
            f"internal error; quote request id {request_id} when reporting it",
            "internal_error",
        )
    response.headers["X-Request-ID"] = request_id
    for name, value in request.get(EXTRA_HEADERS, {}).items():
        response.headers.setdefault(name, value)
    elapsed = time.perf_counter() - started
    info = request.match_info.route.resource
    route = info.canonical if info is not None else "unmatched"
    service = request.app.get(SERVICE_KEY, "app")
    HTTP_REQUESTS.labels(service, route, request.method, str(response.status)).inc()
    HTTP_LATENCY.labels(service, route, request.method).observe(elapsed)
    return response


@web.middleware
async def version_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """``Accept: application/vnd.provisioning.v1+json`` is v1; any other version is a 406."""
    accept = request.headers.get("Accept", "")
    for match in _VND.finditer(accept):
        if int(match.group(1)) != API_VERSION:
            raise NotAcceptable(
                f"API version v{match.group(1)} is not supported; this server speaks "
                f"v{API_VERSION} (Accept: application/vnd.provisioning.v{API_VERSION}+json)",
                details={"supported": [f"v{API_VERSION}"]},
            )
    return await handler(request)
