"""One event model and one in-process bus.

Publishers call :meth:`EventBus.publish` only after the change is persisted.
The bus numbers events monotonically, keeps a bounded retention window for
replay (``since``), and hands each subscriber its own bounded queue so a slow
consumer can never block the engine: on overflow the subscription is marked
overflowed and its owner decides what to do (close the socket, say why).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.metrics import EVENTS_PUBLISHED

DEFAULT_QUEUE_SIZE = 1000

# Which stream kind each event type belongs to, for ``?events=task,batch,…`` filters.
EVENT_KINDS = {
    "TaskStatusChanged": "task",
    "OperationProgress": "task",
    "BatchStatusChanged": "batch",
    "WorkflowSubmitted": "batch",
    "CheckpointCreated": "rollback",
    "RollbackStarted": "rollback",
    "RollbackCompleted": "rollback",
    "StateRestored": "rollback",
}


@dataclass(frozen=True)
class Event:
    """``{event_type, timestamp, data, metadata}`` as in seed 004, plus a stream id."""

    event_type: str
    data: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)
    timestamp: str = ""
    id: int = 0

    @property
    def kind(self) -> str:
        return EVENT_KINDS.get(self.event_type, "system")

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


class Subscription:
    """A subscriber's bounded queue, with an optional filter."""

    def __init__(self, bus: EventBus, accept: Callable[[Event], bool], maxsize: int) -> None:
        self.bus = bus
        self.accept = accept
        self.queue: asyncio.Queue[Event] = asyncio.Queue(maxsize)
        self.overflowed = False

    def offer(self, event: Event) -> None:
        if self.overflowed or not self.accept(event):
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed = True

    async def get(self) -> Event:
        return await self.queue.get()

    def close(self) -> None:
        self.bus.unsubscribe(self)


class EventBus:
    """Monotonic ids, bounded retention, fan-out to bounded subscriber queues."""

    def __init__(self, retention_count: int = 10_000, retention_s: float = 3600.0) -> None:
        self._ids = itertools.count(1)
        self._retained: deque[tuple[float, Event]] = deque(maxlen=retention_count)
        self.retention_s = retention_s
        self._subs: list[Subscription] = []
        self._listeners: list[Callable[[Event], None]] = []

    @property
    def last_id(self) -> int:
        return self._retained[-1][1].id if self._retained else 0

    def publish(
        self, event_type: str, data: dict[str, Any], metadata: dict[str, Any] | None = None
    ) -> Event:
        """Number, retain and fan out an event. Never blocks."""
        event = Event(
            event_type=event_type,
            data=data,
            metadata=metadata if metadata is not None else dict(data),
            timestamp=datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            id=next(self._ids),
        )
        now = time.monotonic()
        self._retained.append((now, event))
        while self._retained and now - self._retained[0][0] > self.retention_s:
            self._retained.popleft()
        EVENTS_PUBLISHED.labels(event_type).inc()
        for sub in self._subs:
            sub.offer(event)
        for listener in self._listeners:
            listener(event)
        return event

    def subscribe(
        self,
        accept: Callable[[Event], bool] | None = None,
        *,
        maxsize: int = DEFAULT_QUEUE_SIZE,
    ) -> Subscription:
        sub = Subscription(self, accept or (lambda _e: True), maxsize)
        self._subs.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subs:
            self._subs.remove(sub)

    def add_listener(self, listener: Callable[[Event], None]) -> None:
        """A synchronous callback for every event (metrics, outbox wake-ups)."""
        self._listeners.append(listener)

    def since(self, event_id: int) -> Iterable[Event]:
        """Retained events with an id greater than ``event_id``, oldest first."""
        return [e for _, e in self._retained if e.id > event_id]

    @property
    def subscriber_count(self) -> int:
        return len(self._subs)
