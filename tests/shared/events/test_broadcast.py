"""The broadcaster's fan-out on the bus, without sockets: a stream gets every event of
the kinds it asked for, in publish order, and nothing else; events no open stream asked
for are not even windowed (a batch watcher costs the engine's task events nothing);
revocations still end streams whatever kinds they follow."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from provisioning.server import product_bus
from shared.events.broadcast import CLOSE_UNAUTHORIZED, Broadcaster, Stream
from shared.events.bus import EventBus
from shared.security.auth import Principal
from shared.settings import load_settings


class Socket:
    """What the broadcaster writes to: the frames it got, decoded."""

    def __init__(self) -> None:
        self.raw = b""

    def write(self, data: bytes) -> None:
        self.raw += data

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    def events(self) -> list[dict[str, Any]]:
        out, buf = [], self.raw
        while buf:
            assert buf[0] == 0x81
            size, start = buf[1], 2
            if size == 126:
                size, start = int.from_bytes(buf[2:4], "big"), 4
            elif size == 127:
                size, start = int.from_bytes(buf[2:10], "big"), 10
            out.append(json.loads(buf[start : start + size]))
            buf = buf[start + size :]
        return out


def wired() -> tuple[EventBus, Broadcaster]:
    bus = product_bus(load_settings())
    broadcaster = Broadcaster(1 << 20, bus.registry)
    bus.add_listener(broadcaster.on_event)
    return bus, broadcaster


def stream(kinds: tuple[str, ...], socket: Socket, *, session: str = "s1", since: int = 0) -> Stream:
    who = Principal("u1", "op", ("operator",), claims={"sid": session})
    s = Stream("websocket", who, kinds, None, 10_000, socket=socket, requested=kinds)  # type: ignore[arg-type]
    s.last_sent = since
    return s


def publish_batch(bus: EventBus, batch: str, tasks: int) -> None:
    bus.publish("BatchStatusChanged", {"batch_id": batch, "workflow_id": batch, "status": "Running"})
    for i in range(tasks):
        for status in ("Running", "Completed"):
            bus.publish(
                "TaskStatusChanged", {"workflow_id": batch, "task_id": f"{batch}-{i}", "status": status}
            )
    bus.publish("BatchStatusChanged", {"batch_id": batch, "workflow_id": batch, "status": "Completed"})


async def flushed() -> None:
    await asyncio.sleep(0.05)  # past the flush delay


async def test_a_stream_gets_every_event_of_its_kinds_in_order_and_nothing_else() -> None:
    bus, broadcaster = wired()
    batches, everything = Socket(), Socket()
    streams = [stream(("batch",), batches), stream(("task", "batch", "rollback", "system"), everything)]
    for s in streams:  # the broadcaster holds them weakly, as their connections do
        broadcaster.add(s)
    publish_batch(bus, "b1", 50)
    bus.publish("UserLogin", {"user_id": "u2"})  # the control center's: no one here asked
    await flushed()
    published = bus.since(0)
    assert [e["id"] for e in everything.events()] == [e.id for e in published if e.kind != "security"]
    got = batches.events()
    assert [e["id"] for e in got] == [e.id for e in published if e.kind == "batch"]
    assert [e["data"]["status"] for e in got] == ["Running", "Completed"]
    assert got[0]["timestamp"].endswith("Z") and got[0]["metadata"]["batch_id"] == "b1"


async def test_events_no_stream_asked_for_are_not_windowed_until_one_does() -> None:
    bus, broadcaster = wired()
    watcher = stream(("batch",), Socket())
    broadcaster.add(watcher)
    publish_batch(bus, "b1", 20)
    assert [e.event_type for e in broadcaster._window] == ["BatchStatusChanged"] * 2
    await flushed()
    late = Socket()
    joined = stream(("task",), late, since=bus.last_id)  # its replay covered what came before
    broadcaster.add(joined)
    publish_batch(bus, "b2", 20)
    await flushed()
    tasks = [e for e in bus.since(0) if e.kind == "task" and e.data["workflow_id"] == "b2"]
    assert [e["id"] for e in late.events()] == [e.id for e in tasks]


async def test_a_revocation_ends_streams_of_any_kind() -> None:
    bus, broadcaster = wired()
    mine, other = stream(("batch",), Socket()), stream(("batch",), Socket(), session="s2")
    broadcaster.add(mine)
    broadcaster.add(other)
    bus.publish("SessionRevoked", {"session_id": "s1", "reason": "logout"})  # a security event
    assert mine.stop.is_set() and mine.close_code == CLOSE_UNAUTHORIZED
    assert not other.stop.is_set()


def test_an_event_is_read_as_it_was_published() -> None:
    bus = EventBus()
    data = {"workflow_id": "w", "task_id": "t", "status": "Running", "attempt": 1}
    event = bus.publish("TaskStatusChanged", data)
    assert event.metadata == {"workflow_id": "w", "task_id": "t", "status": "Running"}
    assert event.timestamp.endswith("Z") and event.timestamp == event.to_json()["timestamp"]
    assert bus.publish("X", {"a": 1}, {"given": True}).metadata == {"given": True}
    assert json.loads(event.json_text) == event.to_json()
