"""``POST /ext/events_demo/publish/{stream}`` and ``GET /ext/events_demo/subscribe/{stream}``."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from aiohttp_sse import EventSourceResponse, sse_response
from pydantic import BaseModel, ConfigDict

from orchestrator.extensions.context import EventsHandle, cancel_all
from orchestrator.extensions.streams import StreamEvent, check_stream
from shared.security.backend import accept_query_token
from shared.web.keys import SETTINGS
from shared.web.routing import BOOL, STR, Api, obj

PUBLISHED = obj({"success": BOOL, "stream": STR, "event_id": STR, "message": STR})
SSE_SEND_TIMEOUT_S = 10.0


class EventBody(BaseModel):
    """Any JSON object: the event's data."""

    model_config = ConfigDict(extra="allow", title="EventData")


async def _pump(resp: EventSourceResponse, source: AsyncIterator[StreamEvent]) -> None:
    """Write each event as it comes; ends with the stream (the extension stopped) or the client."""
    with contextlib.suppress(ConnectionResetError, RuntimeError, TimeoutError):
        async for event in source:
            data: dict[str, Any] = event.to_json()
            await resp.send(json.dumps(data, separators=(",", ":"), ensure_ascii=False), id=event.id)


def build_api(events: EventsHandle) -> Api:
    api = Api()

    @api.route(
        "POST",
        "/publish/{stream}",
        resource="ext",  # replaced by ext:events_demo when mounted
        action="write",
        body=EventBody,
        summary="Publish an event to a named stream",
        response=PUBLISHED,
        raw=True,
    )
    async def publish(request: web.Request, body: EventBody) -> web.Response:
        stream = check_stream(request.match_info["stream"])
        event_id = await events.publish(stream, dict(body.model_extra or {}))
        return web.json_response(
            {"success": True, "stream": stream, "event_id": event_id, "message": "event published"}
        )

    @api.route(
        "GET",
        "/subscribe/{stream}",
        resource="ext",
        action="read",
        summary="Follow a named stream (Server-Sent Events; Last-Event-ID resumes)",
        media={"text/event-stream": {"schema": {"type": "string"}}},
    )
    async def subscribe(request: web.Request) -> web.StreamResponse:
        """Events after ``Last-Event-ID`` (else new ones only), each as ``id:`` and ``data:``
        lines holding ``{"stream", "id", "data", "published_at"}``."""
        stream = check_stream(request.match_info["stream"])
        after = request.headers.get("Last-Event-ID") or None
        source = events.read(stream, after)  # checks the id: 422 before the stream opens
        ping_s = request.app[SETTINGS].sse_ping_s
        async with sse_response(request, ping_interval=ping_s, send_timeout=SSE_SEND_TIMEOUT_S) as resp:
            pump = asyncio.create_task(_pump(resp, source))
            lost = asyncio.create_task(resp.wait())  # ends when the client goes away
            try:
                await asyncio.wait({pump, lost}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                await cancel_all(pump, lost)
        return resp

    accept_query_token(subscribe)  # EventSource cannot send an Authorization header
    return api
