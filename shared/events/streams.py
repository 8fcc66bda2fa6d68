"""Live event streams over WebSocket and Server-Sent Events, for either service.

Both transports work the same way:

* the caller is authenticated at connect (``Authorization: Bearer``, or
  ``?token=``; a WebSocket may instead send ``{"type": "auth", "token": …}`` as
  its first message), and again on every heartbeat and when the token
  expires — the stream is closed (4401) once it no longer checks out;
* a revocation closes the streams it concerns at once (4401), not at the next
  heartbeat: an event type whose declaration says it revokes (the control
  center's logouts, session revokes, refresh-token reuse, users disabled,
  deleted or given other roles: see control_center/events.py) makes the
  broadcaster, a bus listener, end every stream of that session or user as
  the event is published. ``?token=`` is accepted on these routes only
  (shared/security/backend.py);
* a browser's stream is accepted only from an allowed ``Origin``
  (``cors_origins`` or the service's own: shared/web/cors.py), else 403 before
  the upgrade, since WebSockets are not bound by CORS; a request without
  ``Origin`` (the CLI) is not a browser's. The console sends its token in the
  first WebSocket message, never in the URL;
* a service streams the kinds its own vocabulary declares
  (shared/events/registry.py), each behind its own permission (the
  orchestrator's ``task`` events need ``tasks:read``, the control center's
  ``security`` events ``audit:read``, …), so subscribers see only what their
  policies let them read; ``?events=task,batch`` and ``?workflow_id=``
  narrow further;
* ``?since=<event id>`` (or SSE's ``Last-Event-ID``) replays what is still
  retained after that id, then continues live with nothing missed or
  repeated; a client whose id is older than the retention window is told
  (``gap``);
* the bus never waits for a consumer: each stream has a bounded queue, and a
  consumer that falls ``ws_queue_size`` events behind is dropped (4408) with
  a reason saying how to resume;
* every stream is closed when the app shuts down.

Fan-out is done by one :class:`~shared.events.broadcast.Broadcaster` per app
(``shared/events/broadcast.py``) rather than a task per connection: a hundred
subscribers cost the engine a few appends per event instead of a hundred task
wake-ups.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMsgType, web
from aiohttp_sse import EventSourceResponse, sse_response
from multidict import CIMultiDict
from pydantic import Field, create_model

from shared.errors import Forbidden, ProvisioningError, Unauthorized, ValidationFailed
from shared.events.broadcast import (
    CLOSE_BAD_MESSAGE,
    CLOSE_FORBIDDEN,
    CLOSE_GOING_AWAY,
    CLOSE_TIMEOUT_S,
    CLOSE_UNAUTHORIZED,
    Broadcaster,
    Stream,
)
from shared.events.bus import Event, EventBus, websocket_text_frame
from shared.events.registry import Vocabulary
from shared.metrics import WEBSOCKET_CONNECTIONS
from shared.security.audit import audit_refusal
from shared.security.auth import AUTH_BACKEND, PRINCIPAL, AuthBackend, Principal
from shared.security.backend import accept_query_token
from shared.web.cors import origin_allowed
from shared.web.keys import BUS, SERVICE_KEY, SETTINGS
from shared.web.routing import Api, Model
from shared.web.validation import input_limits, parse_json

log = logging.getLogger(__name__)

MAX_CLIENT_MESSAGE_BYTES = 16_384
SSE_SEND_TIMEOUT_S = 10.0  # aiohttp-sse aborts a client that takes no bytes for this long


class StreamQuery(Model):
    """``?events=task,batch&workflow_id=…&since=<event id>`` (``token`` is read by auth)."""

    events: str | None = Field(None, description="comma-separated kinds; default: all allowed")
    workflow_id: str | None = None
    since: int | None = Field(None, ge=0, description="replay retained events after this id")


@dataclass(frozen=True)
class StreamConfig:
    """What one service streams (the kinds its vocabulary declares, each behind its own
    permission), and the route-level permission to connect at all."""

    vocabulary: Vocabulary
    resource: str
    action: str = "read"

    @property
    def kinds(self) -> tuple[str, ...]:
        return self.vocabulary.kind_names

    def permission(self, kind: str) -> tuple[str, str]:
        return self.vocabulary.kind(kind).permission


BROADCASTER = web.AppKey("broadcaster", Broadcaster)
STREAM_CONFIG = web.AppKey("stream_config", StreamConfig)


def install(app: web.Application, config: StreamConfig) -> None:
    """Route the app's bus to its streams; close them all in ``on_shutdown``.

    The service's vocabulary must be registered with the app's bus first (its app
    factory does it), so that its events get the kinds its streams offer."""
    registry = app[BUS].registry
    if not registry.registered(config.vocabulary):
        raise RuntimeError(
            f"register the {config.vocabulary.name} vocabulary with the bus before installing its streams"
        )
    broadcaster = Broadcaster(app[SETTINGS].ws_send_buffer_bytes, registry)
    app[BROADCASTER] = broadcaster
    app[STREAM_CONFIG] = config

    async def listen(app: web.Application) -> None:
        app[BUS].add_listener(broadcaster.on_event)

    async def unlisten(app: web.Application) -> None:
        app[BUS].remove_listener(broadcaster.on_event)

    app.on_startup.append(listen)
    app.on_shutdown.append(broadcaster.close_all)
    app.on_cleanup.append(unlisten)


def stream_api(config: StreamConfig, *, ws_path: str = "/ws", sse_path: str = "/events") -> Api:
    """The WebSocket and SSE routes of a service (``install`` the config on its app too)."""
    api = Api()
    tags = ("events",)
    kinds = "|".join(config.kinds)
    # ``events`` as the handler reads it, said in the model and so in the document.
    query_model = create_model(
        "EventStreamQuery",
        __base__=StreamQuery,
        events=(
            str | None,
            Field(
                None,
                pattern=f"^(({kinds})(,({kinds}))*)?$",
                description=f"comma-separated kinds of {', '.join(config.kinds)}; default: all allowed",
            ),
        ),
    )
    stream_errors = (400, 401, 403)

    # Public for the middleware: the handler authenticates itself so a browser
    # can send its token as the first message instead of in the URL.
    @api.route(
        "GET",
        ws_path,
        public=True,
        resource=config.resource,
        action=config.action,
        query=query_model,
        tags=tags,
        summary="Live events over WebSocket (?token=, or a first auth message)",
        upgrade=True,  # 101; a GET that is not an upgrade is a 400
        errors=stream_errors,
    )
    async def websocket(request: web.Request, query: StreamQuery) -> web.StreamResponse:
        return await websocket_stream(request, query)

    @api.route(
        "GET",
        sse_path,
        resource=config.resource,
        action=config.action,
        query=query_model,
        tags=tags,
        summary="Live events as Server-Sent Events (resume with Last-Event-ID)",
        media={"text/event-stream": {"schema": {"type": "string", "description": "Server-Sent Events"}}},
        errors=stream_errors,
    )
    async def events(request: web.Request, query: StreamQuery) -> web.StreamResponse:
        return await sse_stream(request, query)

    for spec in api.specs:
        accept_query_token(spec.handler)
    return api


# -- shared steps ---------------------------------------------------------------------------


def requested_kinds(raw: str | None, offered: tuple[str, ...]) -> tuple[str, ...]:
    """``?events=`` as kinds of this service; 422 naming any it does not stream."""
    if not raw:
        return offered
    wanted = tuple(dict.fromkeys(k.strip().lower() for k in raw.split(",") if k.strip()))
    unknown = [k for k in wanted if k not in offered]
    if unknown:
        raise ValidationFailed(
            f"unknown event kinds: {', '.join(unknown)}; this service streams {', '.join(offered)}",
            details={
                "fields": [{"field": "events", "message": "unknown kind", "unknown": unknown}],
                "kinds": list(offered),
            },
        )
    return wanted


async def allowed_kinds(
    backend: AuthBackend, principal: Principal, kinds: tuple[str, ...], request: web.Request
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The kinds (of this service's) this principal may read, and those it may not."""
    config = request.app[STREAM_CONFIG]
    allowed: list[str] = []
    denied: list[str] = []
    for kind in kinds:
        resource, action = config.permission(kind)
        try:
            await backend.authorize(principal, resource, action, request)
        except Forbidden:
            denied.append(kind)
        else:
            allowed.append(kind)
    return tuple(allowed), tuple(denied)


def check_origin(request: web.Request) -> None:
    """403 for a browser page of an origin that may not read this service's events."""
    origin = request.headers.get("Origin")
    if origin is not None and not origin_allowed(request, origin):
        raise Forbidden(
            "this origin may not open the service's event streams; add it to cors_origins",
            details={"origin": origin[:200]},
        )


def _has_credentials(request: web.Request) -> bool:
    return "Authorization" in request.headers or bool(request.query.get("token"))


def _with_token(request: web.Request, token: str) -> web.Request:
    """The upgrade request as if it had carried ``Authorization: Bearer <token>``."""
    headers = CIMultiDict(request.headers)
    headers["Authorization"] = f"Bearer {token}"
    return request.clone(headers=headers)


def _limit_send_buffer(request: web.Request, size: int) -> None:
    """A bounded kernel send buffer, so a stalled reader fills its queue soon, not after MBs."""
    if size <= 0 or request.transport is None:
        return
    sock = request.transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)


def _since(query: StreamQuery, last_event_id: str | None) -> int | None:
    if query.since is not None:
        return query.since
    if last_event_id:
        try:
            return max(0, int(last_event_id))
        except ValueError:
            raise ValidationFailed("Last-Event-ID must be an event id (an integer)") from None
    return None


def _control(kind: str, **fields: Any) -> str:
    return json.dumps({"type": kind, **fields}, default=str, separators=(",", ":"))


def _opening(
    stream: Stream, bus: EventBus, denied: tuple[str, ...], replaying: int, gap: bool, since: int | None
) -> list[str]:
    """The control messages a stream starts with: who it is for, and any gap."""
    out = [
        _control(
            "welcome",
            user=stream.principal.username,
            events=list(stream.kinds),
            denied=list(denied),
            workflow_id=stream.workflow_id,
            last_event_id=bus.last_id,
            replaying=replaying,
        )
    ]
    if gap:
        out.append(
            _control(
                "gap",
                since=since,
                oldest_event_id=bus.oldest_id,
                message="events after your id are no longer retained; reload the state you need "
                "from the REST API",
            )
        )
    return out


async def _recheck(stream: Stream, backend: AuthBackend) -> None:
    """Authenticate and authorize the stream again: its token may have been revoked, its
    user's roles or the policy may have changed. Raises ``Unauthorized`` or ``Forbidden``."""
    assert stream.auth_request is not None
    principal = await backend.authenticate(stream.auth_request)
    allowed, _ = await allowed_kinds(backend, principal, stream.requested, stream.auth_request)
    if not allowed:
        raise Forbidden(f"no longer allowed to read any of: {', '.join(stream.requested)}")
    stream.principal = principal
    stream.kinds = allowed


async def _guard(stream: Stream, backend: AuthBackend, heartbeat_s: float) -> None:
    """End the stream when its token expires, and check it again every heartbeat."""
    while not stream.stop.is_set():
        timeout = heartbeat_s
        if stream.principal.expires_at is not None:
            timeout = min(timeout, max(0.0, stream.principal.expires_at - time.time()))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await stream.stop.wait()
                return
        expires = stream.principal.expires_at
        if expires is not None and expires <= time.time():
            stream.end(CLOSE_UNAUTHORIZED, "token expired; reconnect with a fresh token")
            return
        try:
            await _recheck(stream, backend)
        except Unauthorized as exc:
            stream.end(CLOSE_UNAUTHORIZED, f"token no longer valid: {exc.message}"[:120])
            return
        except Forbidden as exc:
            stream.end(CLOSE_FORBIDDEN, exc.message[:120])
            return


def _track(request: web.Request, stream: Stream) -> Callable[[], None]:
    service = request.app.get(SERVICE_KEY, "app")
    gauge = WEBSOCKET_CONNECTIONS.labels(service, stream.transport)
    gauge.inc()
    broadcaster = request.app[BROADCASTER]

    def untrack() -> None:
        gauge.dec()
        broadcaster.discard(stream)
        stream.done.set()

    return untrack


async def _stop_tasks(*tasks: asyncio.Task[Any]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


# -- WebSocket ---------------------------------------------------------------------------------


async def websocket_stream(request: web.Request, query: StreamQuery) -> web.StreamResponse:
    """``GET /ws``: authenticate, check permissions, replay ``since``, then stream live."""
    check_origin(request)
    config = request.app[STREAM_CONFIG]
    settings = request.app[SETTINGS]
    backend = request.app[AUTH_BACKEND]
    kinds = requested_kinds(query.events, config.kinds)
    auth_request = request
    principal: Principal | None = None
    try:
        principal = await backend.authenticate(request)
    except Unauthorized:
        if _has_credentials(request):
            raise  # a bad token is refused before the upgrade, as an HTTP 401
    if principal is not None:
        request[PRINCIPAL] = principal  # a refusal is audited under the caller's name
        await backend.authorize(principal, config.resource, config.action, request)
    ws = web.WebSocketResponse(
        heartbeat=settings.ws_heartbeat_s, compress=False, max_msg_size=MAX_CLIENT_MESSAGE_BYTES
    )
    _limit_send_buffer(request, settings.ws_send_buffer_bytes)
    await ws.prepare(request)
    if principal is None:
        got = await _first_message_auth(request, ws, settings.ws_auth_timeout_s)
        if got is None:
            return ws
        principal, auth_request = got
        try:
            await backend.authorize(principal, config.resource, config.action, auth_request)
        except Forbidden as exc:
            await _close(request, ws, CLOSE_FORBIDDEN, exc.message)
            return ws
    request[PRINCIPAL] = principal
    allowed, denied = await allowed_kinds(backend, principal, kinds, auth_request)
    if not allowed:
        await _close(request, ws, CLOSE_FORBIDDEN, f"not allowed to read any of: {', '.join(kinds)}")
        return ws
    transport = request.transport
    if transport is None or transport.is_closing():
        return ws
    bus = request.app[BUS]
    stream = Stream(
        "websocket",
        principal,
        allowed,
        query.workflow_id,
        maxsize=settings.ws_queue_size,
        socket=transport,  # type: ignore[arg-type]
        auth_request=auth_request,
        requested=kinds,
    )
    # Replay and join the live fan-out without yielding: nothing falls in between.
    replay, gap = bus.replay(query.since, stream.accept)
    opening = _opening(stream, bus, denied, len(replay), gap, query.since)
    transport.write(
        b"".join([*(websocket_text_frame(m.encode()) for m in opening), *(e.ws_frame for e in replay)])
    )
    # The live part starts after everything published so far (the replay covered it).
    stream.last_sent = bus.last_id
    request.app[BROADCASTER].add(stream)
    untrack = _track(request, stream)

    guard = asyncio.create_task(_guard(stream, backend, settings.ws_heartbeat_s))
    closer = asyncio.create_task(_close_when_stopped(request, ws, stream))
    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                await _client_message(ws, stream, msg.data, backend, request)
            elif msg.type == WSMsgType.ERROR:
                break
    finally:
        stream.end(stream.close_code, stream.close_reason or "client closed")
        await _stop_tasks(guard)
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await closer
        untrack()
    return ws


async def _first_message_auth(
    request: web.Request, ws: web.WebSocketResponse, timeout_s: float
) -> tuple[Principal, web.Request] | None:
    """Wait for ``{"type": "auth", "token": …}``; close with 4401 if it does not come right."""
    try:
        msg = await ws.receive(timeout=timeout_s)
    except TimeoutError:
        await _close(
            request, ws, CLOSE_UNAUTHORIZED, f'send {{"type": "auth", "token": …}} within {timeout_s:g} s'
        )
        return None
    token = None
    if msg.type == WSMsgType.TEXT:
        with contextlib.suppress(ProvisioningError, AttributeError):
            doc = parse_json(msg.data, "message", input_limits(request))
            if doc.get("type") == "auth":
                token = doc.get("token")
    if not isinstance(token, str) or not token:
        await _close(
            request,
            ws,
            CLOSE_UNAUTHORIZED,
            'authentication required: the first message must be {"type": "auth", "token": …}',
        )
        return None
    auth_request = _with_token(request, token)
    try:
        principal = await request.app[AUTH_BACKEND].authenticate(auth_request)
    except ProvisioningError as exc:
        await audit_refusal(request, exc, channel="ws_auth")
        await _close(request, ws, CLOSE_UNAUTHORIZED, exc.message)
        return None
    return principal, auth_request


async def _client_message(
    ws: web.WebSocketResponse,
    stream: Stream,
    text: str,
    backend: AuthBackend,
    request: web.Request,
) -> None:
    """``ping``, and ``auth`` with a fresh token to keep a stream past its token's expiry."""
    try:
        doc = parse_json(text, "message", input_limits(request))
    except ProvisioningError:
        doc = None
    kind = doc.get("type") if isinstance(doc, dict) else None
    if kind == "ping":
        await ws.send_str(_control("pong", last_event_id=stream.last_sent))
    elif kind == "auth" and isinstance(doc, dict) and isinstance(doc.get("token"), str):
        renewed = _with_token(request, doc["token"])
        try:
            principal = await backend.authenticate(renewed)
        except Unauthorized as exc:
            await audit_refusal(request, exc, channel="ws_reauth")
            await ws.send_str(_control("error", code=CLOSE_UNAUTHORIZED, error=exc.message))
            return
        if principal.user_id != stream.principal.user_id:
            await ws.send_str(
                _control(
                    "error", code=CLOSE_FORBIDDEN, error="a stream's token can only be renewed for its user"
                )
            )
            return
        stream.principal = principal
        stream.auth_request = renewed
        await ws.send_str(_control("auth_ok", expires_at=principal.expires_at))
    else:
        await ws.send_str(
            _control(
                "error",
                code=CLOSE_BAD_MESSAGE,
                error='unknown message; send {"type": "ping"} or {"type": "auth", "token": …}',
            )
        )


async def _close_when_stopped(request: web.Request, ws: web.WebSocketResponse, stream: Stream) -> None:
    await stream.stop.wait()
    if not ws.closed:
        await _close(request, ws, stream.close_code, stream.close_reason)


async def _close(request: web.Request, ws: web.WebSocketResponse, code: int, reason: str) -> None:
    """Close with a code and reason; cut the connection if the peer does not take it."""
    message = reason.encode()[:123]  # a close frame's reason is at most 123 bytes
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT_S):
            await ws.close(code=code, message=message)
    except (TimeoutError, ConnectionResetError, RuntimeError):
        if request.transport is not None:
            request.transport.abort()


# -- Server-Sent Events ---------------------------------------------------------------------------


async def sse_stream(request: web.Request, query: StreamQuery) -> web.StreamResponse:
    """``GET /events``: like ``/ws``, as ``text/event-stream`` with ``id:`` lines."""
    check_origin(request)
    config = request.app[STREAM_CONFIG]
    settings = request.app[SETTINGS]
    backend = request.app[AUTH_BACKEND]
    principal = request[PRINCIPAL]
    kinds = requested_kinds(query.events, config.kinds)
    allowed, denied = await allowed_kinds(backend, principal, kinds, request)
    if not allowed:
        raise Forbidden(f"not allowed to read any of: {', '.join(kinds)}", details={"denied": list(denied)})
    since = _since(query, request.headers.get("Last-Event-ID"))
    bus = request.app[BUS]
    stream = Stream(
        "sse",
        principal,
        allowed,
        query.workflow_id,
        maxsize=settings.ws_queue_size,
        auth_request=request,
        requested=kinds,
    )
    replay, gap = bus.replay(since, stream.accept)
    opening = _opening(stream, bus, denied, len(replay), gap, since)
    stream.last_sent = bus.last_id  # the live part starts here; the replay covers the rest
    request.app[BROADCASTER].add(stream)
    untrack = _track(request, stream)

    _limit_send_buffer(request, settings.ws_send_buffer_bytes)
    try:
        async with sse_response(
            request, ping_interval=settings.sse_ping_s, send_timeout=SSE_SEND_TIMEOUT_S
        ) as resp:
            pump = asyncio.create_task(_sse_pump(resp, stream, opening, replay))
            guard = asyncio.create_task(_guard(stream, backend, settings.ws_heartbeat_s))
            ended = asyncio.create_task(stream.stop.wait())
            lost = asyncio.create_task(resp.wait())  # ends when the client goes away
            try:
                await asyncio.wait({pump, ended, lost}, return_when=asyncio.FIRST_COMPLETED)
                if stream.stop.is_set():
                    with contextlib.suppress(Exception):
                        async with asyncio.timeout(CLOSE_TIMEOUT_S):
                            await resp.send(
                                _control("close", code=stream.close_code, reason=stream.close_reason),
                                event="close",
                            )
            finally:
                await _stop_tasks(pump, guard, ended, lost)
    finally:
        stream.end(stream.close_code, stream.close_reason or "client closed")
        untrack()
    return resp


async def _sse_pump(
    resp: EventSourceResponse, stream: Stream, opening: list[str], replay: list[Event]
) -> None:
    """Write the opening, the replay, then whatever the broadcaster queues, in batches."""
    try:
        for i, message in enumerate(opening):
            await resp.send(message, event="welcome" if i == 0 else "gap")
        if replay:
            await resp.write(b"".join(e.sse_frame for e in replay))
        while not stream.stop.is_set():
            await stream.ready.wait()
            stream.ready.clear()
            batch = stream.pending
            stream.pending = deque()
            if batch:
                await resp.write(b"".join(e.sse_frame for e in batch))
                stream.last_sent = batch[-1].id
    except (ConnectionResetError, RuntimeError, TimeoutError):
        stream.end(CLOSE_GOING_AWAY, "connection lost")
