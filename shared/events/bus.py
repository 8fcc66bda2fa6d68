"""One event model and one in-process bus.

Publishers call :meth:`EventBus.publish` only after the change is persisted.
The bus numbers events monotonically, keeps a bounded retention window for
replay (``since``), and calls synchronous listeners, which never block: the
streams' broadcaster (shared/events/streams.py) gives each connection a bounded queue
so a slow consumer cannot hold the engine up.

Event ids start from the clock (microseconds since the epoch) rather than 1,
so they keep growing across a restart: a client that reconnects with the id
of the last event it saw never mistakes a new process's events for old ones,
and learns of a gap when its id is older than what is still retained.
"""

from __future__ import annotations

import functools
import itertools
import json
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from shared.events.registry import DEFAULT_KIND, EventRegistry
from shared.metrics import EVENTS_PUBLISHED

# What ``metadata`` carries by default: the fields a consumer routes on, as in the
# seed's example (``{"task_id", "status"}``), not a second copy of ``data``.
METADATA_KEYS = (
    "workflow_id",
    "batch_id",
    "task_id",
    "operation_id",
    "status",
    "kind",
    "checkpoint_id",
    "rollback_id",
    "user_id",
    "username",
    "policy_id",
    "webhook_id",
    "seq",
)


@functools.cache
def _published(event_type: str) -> Any:
    """The ``events_published_total`` child of an event type, looked up once."""
    return EVENTS_PUBLISHED.labels(event_type)


def routing_metadata(data: dict[str, Any]) -> dict[str, Any]:
    """The default ``metadata`` of an event: the routing fields of its data."""
    return {k: data[k] for k in METADATA_KEYS if data.get(k) is not None}


def utc_timestamp() -> str:
    """Now as ISO 8601 with a ``Z``, the seed's timestamp format."""
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def iso_timestamp(at: float) -> str:
    """``at`` (seconds since the epoch) in the seed's timestamp format."""
    return datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")


class Event:
    """``{event_type, timestamp, data, metadata}`` as in seed 004, plus a stream id, and
    the stream kind its bus's registry gave it (not serialised).

    Publishing is on the engine's hot path (two events per operation), so an event is a
    small slotted object: what only a reader needs (the ISO timestamp, the routing
    ``metadata``, the serialised forms) is worked out when first read, once, and most
    events are never read by anyone. Treat it as immutable."""

    __slots__ = ("_at", "_json", "_metadata", "_sse", "_timestamp", "_ws", "data", "event_type", "id", "kind")

    def __init__(
        self,
        event_type: str,
        data: dict[str, Any],
        metadata: dict[str, Any] | None = None,
        timestamp: str = "",
        id: int = 0,
        kind: str = DEFAULT_KIND,
        *,
        at: float | None = None,
    ) -> None:
        self.event_type = event_type
        self.data = data
        self.id = id
        self.kind = kind
        # ``metadata`` None: the routing fields of ``data``, taken when first read.
        self._metadata = metadata
        # ``at`` (seconds since the epoch): the timestamp, formatted when first read.
        self._at = at
        self._timestamp = timestamp
        self._json: str | None = None
        self._ws: bytes | None = None
        self._sse: bytes | None = None

    def __repr__(self) -> str:
        return f"Event(id={self.id}, event_type={self.event_type!r}, kind={self.kind!r}, data={self.data!r})"

    @property
    def metadata(self) -> dict[str, Any]:
        if self._metadata is None:
            self._metadata = routing_metadata(self.data)
        return self._metadata

    @property
    def timestamp(self) -> str:
        if not self._timestamp and self._at is not None:
            self._timestamp = iso_timestamp(self._at)
        return self._timestamp

    @property
    def workflow_id(self) -> str | None:
        wid = self.data.get("workflow_id") or self.metadata.get("workflow_id")
        return str(wid) if wid else None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "event_type": self.event_type,
            "timestamp": self.timestamp,
            "data": self.data,
            "metadata": self.metadata,
        }

    @property
    def json_text(self) -> str:
        """The serialised event, computed once however many subscribers send it."""
        if self._json is None:
            self._json = json.dumps(self.to_json(), default=str, separators=(",", ":"))
        return self._json

    @property
    def ws_frame(self) -> bytes:
        """The event as one WebSocket text frame, built once for every subscriber."""
        if self._ws is None:
            self._ws = websocket_text_frame(self.json_text.encode())
        return self._ws

    @property
    def sse_frame(self) -> bytes:
        """The event as one Server-Sent Events message with its ``id:`` line."""
        if self._sse is None:
            self._sse = f"id: {self.id}\r\ndata: {self.json_text}\r\n\r\n".encode()
        return self._sse


def websocket_text_frame(payload: bytes) -> bytes:
    """A final, unmasked text frame (RFC 6455 section 5.2), as a server sends it."""
    size = len(payload)
    if size < 126:
        header = bytes((0x81, size))
    elif size < 1 << 16:
        header = bytes((0x81, 126)) + size.to_bytes(2, "big")
    else:
        header = bytes((0x81, 127)) + size.to_bytes(8, "big")
    return header + payload


class EventBus:
    """Monotonic ids, bounded retention, synchronous listeners (the streams' broadcaster,
    the outbox wake-up); replay from the retention window.

    ``registry`` holds the vocabularies of what is published here (see
    shared/events/registry.py); each app factory registers its own.
    """

    def __init__(
        self,
        retention_count: int = 10_000,
        retention_s: float = 3600.0,
        registry: EventRegistry | None = None,
    ) -> None:
        self.registry = registry if registry is not None else EventRegistry()
        # Ids start at the clock in microseconds so they grow across restarts (see above).
        self._ids = itertools.count(time.time_ns() // 1000)
        self._retained: deque[tuple[float, Event]] = deque(maxlen=max(1, retention_count))
        self.retention_s = retention_s
        self._listeners: list[Callable[[Event], None]] = []

    @property
    def last_id(self) -> int:
        return self._retained[-1][1].id if self._retained else 0

    @property
    def oldest_id(self) -> int:
        """The id of the oldest event still retained (0 when none is)."""
        self._expire(time.monotonic())
        return self._retained[0][1].id if self._retained else 0

    def publish(self, event_type: str, data: dict[str, Any], metadata: dict[str, Any] | None = None) -> Event:
        """Number, retain and fan out an event. Never blocks."""
        event = Event(
            event_type, data, metadata, "", next(self._ids), self.registry.kind_of(event_type), at=time.time()
        )
        now = time.monotonic()
        self._retained.append((now, event))
        self._expire(now)
        _published(event_type).inc()
        for listener in self._listeners:
            listener(event)
        return event

    def _expire(self, now: float) -> None:
        while self._retained and now - self._retained[0][0] > self.retention_s:
            self._retained.popleft()

    def replay(
        self, since: int | None, accept: Callable[[Event], bool] | None = None
    ) -> tuple[list[Event], bool]:
        """Retained events after ``since`` that ``accept`` takes, and whether some may be
        missing because they already left the retention window."""
        if since is None:
            return [], False
        oldest = self.oldest_id
        gap = since > 0 and (oldest == 0 or since < oldest - 1) and since < self.last_id
        events = self.since(since)
        return ([e for e in events if accept(e)] if accept else events), gap

    def add_listener(self, listener: Callable[[Event], None]) -> None:
        """A synchronous callback for every event (metrics, outbox wake-ups)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[Event], None]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def since(self, event_id: int) -> list[Event]:
        """Retained events with an id greater than ``event_id``, oldest first."""
        self._expire(time.monotonic())
        if not self._retained or self._retained[-1][1].id <= event_id:
            return []
        return [e for _, e in self._retained if e.id > event_id]
