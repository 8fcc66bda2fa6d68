"""Named event streams for extensions: ``publish(stream, data) -> id``, ``subscribe(pattern,
handler)``, ``unsubscribe(pattern)``, and reading a stream after an id (Server-Sent Events
with ``Last-Event-ID``).

Ids are ``<ms>-<seq>`` (milliseconds since the epoch, then a sequence within that
millisecond), increasing within a stream. Two backends:

* :class:`StoreStreams` (the default): durable in the store (``ext_event``), retention
  bounded per stream by count and age; subscribers in this process are called after
  the event is durable;
* :class:`RedisStreams` (``PROVISIONING_EVENTS_REDIS_URL``): Redis Streams, ``XADD`` with
  an approximate ``MAXLEN``; each subscription is a consumer group
  (``XREADGROUP``/``XACK``) named after the extension and pattern, so processes that
  run the same extension share its work and each event is handled once per extension.

A subscriber never slows a publisher down: each subscription has a bounded queue and
its own task; a handler that raises is logged and the next event is delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import json
import logging
import os
import re
import socket
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from orchestrator.extensions.repository import StreamRepository
from shared.errors import ValidationFailed

log = logging.getLogger(__name__)

STREAM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
PATTERN = re.compile(r"^[A-Za-z0-9*?._:-]{1,128}$")
EVENT_ID = re.compile(r"^(\d{1,15})-(\d{1,7})$")
SEQ_BITS = 20  # ids in one millisecond before the next millisecond is used
SUBSCRIBER_QUEUE = 1000  # events queued per subscription before the oldest are dropped
READ_BATCH = 200
TAIL_POLL_S = 1.0  # a reader waiting for new events looks again at least this often
PRUNE_EVERY = 100  # publishes per stream between two retention passes
REDIS_PREFIX = "provisioning:events:"
REDIS_GROUP_REFRESH_S = 2.0  # how often a subscription looks for new matching streams

Handler = Callable[["StreamEvent"], Awaitable[None]]


@dataclass(frozen=True)
class StreamEvent:
    stream: str
    id: str
    data: dict[str, Any]
    published_at: str

    def to_json(self) -> dict[str, Any]:
        """The seed's shape: ``{"stream", "id", "data"}`` (plus when it was published)."""
        return {"stream": self.stream, "id": self.id, "data": self.data, "published_at": self.published_at}


def _refused(field: str, problem: str, expected: str) -> ValidationFailed:
    return ValidationFailed(
        f"{field}: {expected}", details={"fields": [{"field": field, "message": problem}]}
    )


def check_stream(name: str) -> str:
    if not STREAM_NAME.match(name):
        expected = "1 to 128 of letters, digits, '.', '_', ':' and '-', starting with a letter or digit"
        raise _refused("stream", "invalid stream name", expected)
    return name


def check_pattern(pattern: str) -> str:
    if not PATTERN.match(pattern):
        raise _refused(
            "pattern", "invalid stream pattern", "a stream name in which '*' and '?' match anything"
        )
    return pattern


def parse_event_id(text: str) -> tuple[int, int]:
    match = EVENT_ID.match(text)
    if match is None:
        raise _refused("Last-Event-ID", "not an event id", "expected an event id like 1692873600000-0")
    return int(match.group(1)), int(match.group(2))


def _pos(ms: int, seq: int) -> int:
    return (ms << SEQ_BITS) | seq


def _id_of(pos: int) -> str:
    return f"{pos >> SEQ_BITS}-{pos & ((1 << SEQ_BITS) - 1)}"


def _now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


@dataclass(eq=False)
class Subscription:
    """One ``subscribe(pattern, handler)`` of one extension."""

    owner: str
    pattern: str
    handler: Handler
    queue: asyncio.Queue[StreamEvent] = field(default_factory=lambda: asyncio.Queue(SUBSCRIBER_QUEUE))
    task: asyncio.Task[None] | None = None
    dropped: int = 0

    def matches(self, stream: str) -> bool:
        return fnmatch.fnmatchcase(stream, self.pattern)

    async def deliver(self, event: StreamEvent) -> None:
        try:
            await self.handler(event)
        except Exception:
            log.exception(
                "an event handler failed",
                extra={"extension": self.owner, "pattern": self.pattern, "event_id": event.id},
            )

    def offer(self, event: StreamEvent) -> None:
        """Queue an event for the handler; a full queue loses its oldest event."""
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
            log.warning(
                "an event subscriber is too slow; its oldest queued event was dropped",
                extra={"extension": self.owner, "pattern": self.pattern, "dropped": self.dropped},
            )
        self.queue.put_nowait(event)

    def start(self) -> None:
        async def pump() -> None:
            while True:
                await self.deliver(await self.queue.get())

        self.task = asyncio.create_task(pump(), name=f"ext-sub-{self.owner}-{self.pattern}")

    async def stop(self) -> None:
        task, self.task = self.task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


class StreamBackend(Protocol):
    """Where events live: append, read after an id, wait for more, deliver to subscribers."""

    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def append(self, stream: str, data: dict[str, Any]) -> StreamEvent: ...

    async def read(self, stream: str, after: str | None, limit: int) -> list[StreamEvent]: ...

    async def wait(self, stream: str, after: str | None, timeout_s: float) -> None:
        """Return when ``stream`` may hold events after ``after``, or after ``timeout_s``."""
        ...

    def attach(self, subscription: Subscription) -> None: ...

    async def detach(self, subscription: Subscription) -> None: ...


class EventStreams:
    """The named event streams of one process, over one backend."""

    def __init__(self, backend: StreamBackend, *, max_event_bytes: int) -> None:
        self.backend = backend
        self.max_event_bytes = max_event_bytes
        self.subscriptions: list[Subscription] = []

    async def start(self) -> None:
        await self.backend.start()

    async def stop(self) -> None:
        for sub in list(self.subscriptions):
            await self._drop(sub)
        await self.backend.stop()

    async def publish(self, stream: str, data: dict[str, Any]) -> StreamEvent:
        check_stream(stream)
        if not isinstance(data, dict):
            raise _refused("data", "expected an object", "an event is a JSON object")
        size = len(json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode())
        if size > self.max_event_bytes:
            limit = self.max_event_bytes
            raise _refused("data", "too large", f"an event is at most {limit} bytes of JSON, this one {size}")
        return await self.backend.append(stream, data)

    async def subscribe(self, owner: str, pattern: str, handler: Handler) -> Subscription:
        sub = Subscription(owner, check_pattern(pattern), handler)
        self.subscriptions.append(sub)
        self.backend.attach(sub)
        return sub

    async def unsubscribe(self, owner: str, pattern: str) -> int:
        """Drop ``owner``'s subscriptions to ``pattern``; how many there were."""
        gone = [s for s in self.subscriptions if s.owner == owner and s.pattern == pattern]
        for sub in gone:
            await self._drop(sub)
        return len(gone)

    async def drop_owner(self, owner: str) -> None:
        for sub in [s for s in self.subscriptions if s.owner == owner]:
            await self._drop(sub)

    async def _drop(self, sub: Subscription) -> None:
        with contextlib.suppress(ValueError):
            self.subscriptions.remove(sub)
        await self.backend.detach(sub)

    async def tail(self, stream: str, after: str | None) -> AsyncGenerator[StreamEvent, None]:
        """The events of ``stream`` after ``after`` (``None``: from now on), then live ones."""
        check_stream(stream)
        if after is not None:
            parse_event_id(after)
        else:
            last = await self.backend.read(stream, None, 1)
            after = last[-1].id if last else "0-0"
        while True:
            events = await self.backend.read(stream, after, READ_BATCH)
            for event in events:
                yield event
                after = event.id
            if not events:
                await self.backend.wait(stream, after, TAIL_POLL_S)


class StoreStreams:
    """Durable streams in the store, subscribers of this process called after each commit."""

    name = "store"

    def __init__(self, repo: StreamRepository, *, keep: int, max_age_s: float) -> None:
        self.repo = repo
        self.keep = keep
        self.max_age_s = max_age_s
        self._last: dict[str, int] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._published: dict[str, int] = {}
        self._changed: dict[str, asyncio.Event] = {}
        self._subs: list[Subscription] = []

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def append(self, stream: str, data: dict[str, Any]) -> StreamEvent:
        lock = self._locks.setdefault(stream, asyncio.Lock())
        async with lock:  # ids are handed out in order, and written in that order
            last = self._last.get(stream)
            if last is None:
                last = await self.repo.last_pos(stream) or 0
            now_pos = _pos(int(time.time() * 1000), 0)
            pos = max(now_pos, last + 1)
            event = StreamEvent(stream, _id_of(pos), data, _now_iso())
            await self.repo.append(
                {
                    "stream": stream,
                    "pos": pos,
                    "data": json.dumps(data, separators=(",", ":"), ensure_ascii=False),
                    "published_at": event.published_at,
                }
            )
            self._last[stream] = pos
        self._wake(stream)
        for sub in self._subs:
            if sub.matches(stream):
                sub.offer(event)
        count = self._published[stream] = self._published.get(stream, 0) + 1
        if count % PRUNE_EVERY == 0:
            cutoff = _pos(int((time.time() - self.max_age_s) * 1000), 0)
            await self.repo.prune(stream, self.keep, cutoff)
        return event

    def _wake(self, stream: str) -> None:
        changed = self._changed.pop(stream, None)
        if changed is not None:
            changed.set()

    async def read(self, stream: str, after: str | None, limit: int) -> list[StreamEvent]:
        if after is None:  # the newest ``limit`` events' last one is all a caller asks for
            last = self._last.get(stream)
            if last is None:
                last = await self.repo.last_pos(stream)
            return [] if last is None else await self.read(stream, _id_of(last - 1), 1)
        pos = _pos(*parse_event_id(after))
        rows = await self.repo.after(stream, pos, limit)
        return [
            StreamEvent(row["stream"], _id_of(int(row["pos"])), json.loads(row["data"]), row["published_at"])
            for row in rows
        ]

    async def wait(self, stream: str, after: str | None, timeout_s: float) -> None:
        changed = self._changed.setdefault(stream, asyncio.Event())
        last = self._last.get(stream)
        if after is not None and last is not None and last > _pos(*parse_event_id(after)):
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await changed.wait()

    def attach(self, subscription: Subscription) -> None:
        self._subs.append(subscription)
        subscription.start()

    async def detach(self, subscription: Subscription) -> None:
        with contextlib.suppress(ValueError):
            self._subs.remove(subscription)
        await subscription.stop()


class RedisStreams:
    """Streams on Redis: ``XADD``/``XRANGE``/``XREAD``, subscriptions as consumer groups."""

    name = "redis"

    def __init__(self, url: str, *, keep: int) -> None:
        import redis.asyncio as aioredis

        self.url = url
        self.keep = keep
        self.client: Any = aioredis.from_url(url, decode_responses=True)
        self.consumer = f"{socket.gethostname()}-{os.getpid()}"
        self._readers: dict[int, asyncio.Task[None]] = {}

    async def start(self) -> None:
        await self.client.ping()

    async def stop(self) -> None:
        readers, self._readers = list(self._readers.values()), {}
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        await self.client.aclose()

    async def append(self, stream: str, data: dict[str, Any]) -> StreamEvent:
        published_at = _now_iso()
        body = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
        event_id = await self.client.xadd(
            REDIS_PREFIX + stream,
            {"data": body, "published_at": published_at},
            maxlen=self.keep,
            approximate=True,
        )
        return StreamEvent(stream, str(event_id), data, published_at)

    @staticmethod
    def _event(stream: str, event_id: str, fields: dict[str, str]) -> StreamEvent:
        return StreamEvent(stream, event_id, json.loads(fields["data"]), fields.get("published_at", ""))

    async def read(self, stream: str, after: str | None, limit: int) -> list[StreamEvent]:
        key = REDIS_PREFIX + stream
        if after is None:
            found = await self.client.xrevrange(key, count=1)
        else:
            parse_event_id(after)
            found = await self.client.xrange(key, min=f"({after}", count=limit)
        return [self._event(stream, event_id, fields) for event_id, fields in found]

    async def wait(self, stream: str, after: str | None, timeout_s: float) -> None:
        await self.client.xread({REDIS_PREFIX + stream: after or "$"}, count=1, block=int(timeout_s * 1000))

    def attach(self, subscription: Subscription) -> None:
        self._readers[id(subscription)] = asyncio.create_task(
            self._consume(subscription), name=f"ext-redis-{subscription.owner}"
        )

    async def detach(self, subscription: Subscription) -> None:
        task = self._readers.pop(id(subscription), None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _consume(self, sub: Subscription) -> None:
        """Read the subscription's consumer group on every stream its pattern matches."""
        import redis.exceptions

        group = f"provisioning:{sub.owner}:{sub.pattern}"
        joined: dict[str, str] = {}
        first = True
        refreshed = 0.0
        while True:
            try:
                if time.monotonic() - refreshed >= REDIS_GROUP_REFRESH_S:
                    async for key in self.client.scan_iter(match=REDIS_PREFIX + sub.pattern):
                        if key in joined:
                            continue
                        # Streams there when the subscription starts: new events only;
                        # streams that appear later: everything they hold.
                        start = "$" if first else "0"
                        with contextlib.suppress(redis.exceptions.ResponseError):  # BUSYGROUP
                            await self.client.xgroup_create(key, group, id=start, mkstream=True)
                        joined[key] = ">"
                    first = False
                    refreshed = time.monotonic()
                if not joined:
                    await asyncio.sleep(REDIS_GROUP_REFRESH_S / 4)
                    continue
                found = await self.client.xreadgroup(
                    group, self.consumer, joined, count=READ_BATCH, block=int(REDIS_GROUP_REFRESH_S * 500)
                )
                for key, messages in found or []:
                    stream = key[len(REDIS_PREFIX) :]
                    for event_id, fields in messages:
                        await sub.deliver(self._event(stream, event_id, fields))
                        await self.client.xack(key, group, event_id)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "reading a Redis consumer group failed; retrying",
                    extra={"extension": sub.owner, "pattern": sub.pattern, "error": str(exc)},
                )
                await asyncio.sleep(REDIS_GROUP_REFRESH_S)
