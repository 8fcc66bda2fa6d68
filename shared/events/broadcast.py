"""Fan-out of a service's bus events to its open streams (``shared/events/streams.py``
holds the WebSocket and SSE endpoints that open them).

One :class:`Broadcaster` per app rather than a task per connection: a bus listener
appends each event to the current window, and a flush a couple of milliseconds later
writes each WebSocket's events as ready-made frames (serialised once per event, not
once per subscriber) in a single write; an SSE stream's own task is woken instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections import deque
from dataclasses import dataclass, field

from aiohttp import web

from shared.events.bus import Event
from shared.events.registry import EventRegistry
from shared.security.auth import Principal

# WebSocket close codes (4000-4999 are the application's).
CLOSE_GOING_AWAY = 1001
CLOSE_BAD_MESSAGE = 4400
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_TOO_SLOW = 4408
CLOSE_TIMEOUT_S = 2.0  # a peer that does not take the close frame in time is cut off
FLUSH_DELAY_S = 0.002  # events published within this window go out in one write
BLOCKED_RETRY_S = 0.05  # how soon to try again a socket whose buffer was full


@dataclass(eq=False)
class Stream:
    """One open stream: who, what it takes, what waits to go out, and how it ends."""

    transport: str  # "websocket" | "sse"
    principal: Principal
    kinds: tuple[str, ...]
    workflow_id: str | None
    maxsize: int
    socket: asyncio.Transport | None = None  # WebSocket: frames are written here directly
    pending: deque[Event] = field(default_factory=deque)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    close_code: int = CLOSE_GOING_AWAY
    close_reason: str = ""
    last_sent: int = 0
    # The request whose credentials stand for the stream (a renewed token replaces it).
    auth_request: web.Request | None = None
    requested: tuple[str, ...] = ()  # the kinds asked for; ``kinds`` is what is allowed

    def accept(self, event: Event) -> bool:
        if event.kind not in self.kinds:
            return False
        return self.workflow_id is None or event.workflow_id == self.workflow_id

    def enqueue(self, events: list[Event]) -> None:
        """Hold events back (the client is behind); drop the stream when it is too far behind."""
        if len(self.pending) + len(events) > self.maxsize:
            self.end(
                CLOSE_TOO_SLOW,
                (
                    f"too slow: over {self.maxsize} events queued; reconnect with "
                    "?since=<id of the last event you received>"
                ),
            )
            self.pending.clear()
            return
        self.pending.extend(events)

    def end(self, code: int, reason: str) -> None:
        if not self.stop.is_set():
            self.close_code, self.close_reason = code, reason
            self.stop.set()


class _Group:
    """The events of one flush that streams with the same filter take, framed once."""

    __slots__ = ("_frames", "events")

    def __init__(self, events: list[Event]) -> None:
        self.events = events
        self._frames: bytes | None = None

    @property
    def frames(self) -> bytes:
        if self._frames is None:
            self._frames = b"".join(e.ws_frame for e in self.events)
        return self._frames


class Broadcaster:
    """Routes bus events to an app's open streams and writes them out in batches.

    Publishing only appends the event to the current window. The flush then
    filters the window once per distinct filter (kinds, workflow) and writes
    the same bytes to every WebSocket with that filter that is keeping up; a
    socket whose buffer is full keeps its events in its own bounded queue.
    """

    def __init__(self, write_buffer_limit: int, registry: EventRegistry) -> None:
        self.streams: weakref.WeakSet[Stream] = weakref.WeakSet()
        self.registry = registry
        self.write_buffer_limit = max(16_384, write_buffer_limit)
        self._window: list[Event] = []
        self._timer: asyncio.TimerHandle | None = None
        # The kinds some open stream asked for: no other event is worth a place in the
        # window (the control center's streams never take the engine's task events, a
        # batch watcher never takes them either). A superset is harmless: the flush
        # filters per stream.
        self._wanted: frozenset[str] = frozenset()

    def add(self, stream: Stream) -> None:
        self.streams.add(stream)
        self._rewant()

    def discard(self, stream: Stream) -> None:
        self.streams.discard(stream)
        self._rewant()

    def _rewant(self) -> None:
        # ``requested`` (what was asked for) covers whatever a re-check later allows.
        self._wanted = frozenset(k for s in self.streams for k in (s.requested or s.kinds))

    def on_event(self, event: Event) -> None:
        """The bus listener: runs inside ``publish``, so it only appends (and ends streams)."""
        if self.streams:
            self.revoke(event)
            if event.kind in self._wanted:
                self._window.append(event)
                self._schedule(FLUSH_DELAY_S)

    def revoke(self, event: Event) -> None:
        """End (4401) every stream whose credentials this event revoked, if its type revokes."""
        revocation = self.registry.revocation(event.event_type, event.data)
        if revocation is None:
            return
        session_id, user_id = revocation.session_id, revocation.user_id
        if session_id is None and user_id is None:
            return
        for stream in list(self.streams):
            principal = stream.principal
            if (session_id is not None and principal.claims.get("sid") == session_id) or (
                user_id is not None and principal.user_id == user_id
            ):
                reason = f"credentials revoked ({revocation.reason}); log in again"
                stream.end(CLOSE_UNAUTHORIZED, reason[:120])

    def _schedule(self, delay_s: float) -> None:
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(delay_s, self.flush)

    def flush(self) -> None:
        """Write the window: one write per WebSocket, a wake-up per SSE stream."""
        self._timer = None
        window, self._window = self._window, []
        groups: dict[tuple[tuple[str, ...], str | None], _Group] = {}
        blocked = False
        for stream in list(self.streams):
            if stream.stop.is_set():
                stream.pending.clear()
                continue
            key = (stream.kinds, stream.workflow_id)
            group = groups.get(key)
            if group is None:
                group = groups[key] = _Group([e for e in window if stream.accept(e)])
            if not group.events and not stream.pending:
                continue
            events = group.events
            if events and events[0].id <= stream.last_sent:
                # Joined during this window: its replay already covered these.
                events = [e for e in events if e.id > stream.last_sent]
            sock = stream.socket
            if sock is None:  # SSE: its own task writes
                stream.enqueue(events)
                stream.ready.set()
                continue
            if sock.is_closing():
                stream.pending.clear()
                continue
            if sock.get_write_buffer_size() > self.write_buffer_limit:
                stream.enqueue(events)  # not reading: the queue grows until 4408
                blocked = True
                continue
            if stream.pending or events is not group.events:
                stream.enqueue(events)  # a backlog from before goes first
                if stream.stop.is_set() or not stream.pending:
                    continue
                backlog = stream.pending
                stream.pending = deque()
                sock.write(b"".join(e.ws_frame for e in backlog))
                stream.last_sent = backlog[-1].id
            else:
                sock.write(group.frames)
                stream.last_sent = events[-1].id
        if blocked:
            self._schedule(BLOCKED_RETRY_S)

    async def close_all(self, app: web.Application) -> None:
        """``on_shutdown``: end every stream and wait (briefly) for them to close."""
        streams = list(self.streams)
        for stream in streams:
            stream.end(CLOSE_GOING_AWAY, "server shutting down; reconnect with ?since=<last id>")
        if streams:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLOSE_TIMEOUT_S * 2):
                    await asyncio.gather(*(s.done.wait() for s in streams))
