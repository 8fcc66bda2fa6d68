"""Named event streams: in the store (ids, resume, retention, subscribers) and over HTTP
through the events_demo extension (publish, then Server-Sent Events with Last-Event-ID)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from orchestrator.extensions.repository import StreamRepository
from orchestrator.extensions.streams import EventStreams, StoreStreams, StreamEvent, parse_event_id
from shared.errors import ValidationFailed
from shared.store.store import Store
from tests.helpers.extensions import orchestrator


def streams_on(store: Store, keep: int = 10_000) -> EventStreams:
    return EventStreams(
        StoreStreams(StreamRepository(store), keep=keep, max_age_s=3600), max_event_bytes=1024
    )


async def test_ids_are_ordered_and_reads_resume(store: Store) -> None:
    streams = streams_on(store)
    events = [await streams.publish("orders", {"n": n}) for n in range(20)]
    ids = [parse_event_id(e.id) for e in events]
    assert ids == sorted(ids) and len(set(ids)) == 20
    assert all(e.id.count("-") == 1 for e in events)
    assert (await streams.publish("other", {"n": 0})).stream == "other"
    after = await streams.backend.read("orders", events[14].id, 100)
    assert [e.data["n"] for e in after] == [15, 16, 17, 18, 19]
    # A new process continues the ids of what is stored.
    again = streams_on(store)
    later = await again.publish("orders", {"n": 20})
    assert parse_event_id(later.id) > ids[-1]


async def test_tail_replays_then_follows(store: Store) -> None:
    streams = streams_on(store)
    first = await streams.publish("jobs", {"n": 1})
    await streams.publish("jobs", {"n": 2})
    tail = streams.tail("jobs", first.id)
    assert (await anext(tail)).data == {"n": 2}
    following = asyncio.ensure_future(anext(tail))
    await asyncio.sleep(0.05)
    await streams.publish("jobs", {"n": 3})
    assert (await asyncio.wait_for(following, 5)).data == {"n": 3}
    await tail.aclose()


async def test_retention_keeps_the_newest(store: Store) -> None:
    streams = streams_on(store, keep=5)
    for n in range(100):  # a retention pass runs every 100 publishes per stream
        await streams.publish("busy", {"n": n})
    kept = await streams.backend.read("busy", "0-0", 1000)
    assert [e.data["n"] for e in kept] == [95, 96, 97, 98, 99]


async def test_subscribers_get_matching_streams_and_survive_their_errors(store: Store) -> None:
    streams = streams_on(store)
    seen: list[StreamEvent] = []

    async def handler(event: StreamEvent) -> None:
        if event.data.get("boom"):
            raise RuntimeError("handler failure")
        seen.append(event)

    await streams.subscribe("ext_a", "orders.*", handler)
    await streams.publish("orders.eu", {"boom": True})
    await streams.publish("orders.us", {"n": 1})
    await streams.publish("billing", {"n": 2})
    for _ in range(200):
        if seen:
            break
        await asyncio.sleep(0.01)
    assert [(e.stream, e.data) for e in seen] == [("orders.us", {"n": 1})]
    assert await streams.unsubscribe("ext_a", "orders.*") == 1
    await streams.publish("orders.us", {"n": 3})
    await asyncio.sleep(0.05)
    assert len(seen) == 1
    await streams.stop()


@pytest.mark.parametrize(
    ("stream", "data", "field"),
    [("", {}, "stream"), ("a b", {}, "stream"), ("x" * 200, {}, "stream"), ("ok", {"x": "y" * 2000}, "data")],
)
async def test_hostile_events_are_refused(
    store: Store, stream: str, data: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationFailed) as refused:
        await streams_on(store).publish(stream, data)
    assert refused.value.details["fields"][0]["field"] == field


async def sse_events(resp: ClientResponse, count: int) -> list[dict[str, Any]]:
    """The next ``count`` events of an SSE response, with their ``id:`` lines."""
    out: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    while len(out) < count:
        line = (await asyncio.wait_for(resp.content.readline(), 10)).decode().rstrip("\r\n")
        if line.startswith("id: "):
            current["id"] = line[4:]
        elif line.startswith("data: "):
            current["data"] = json.loads(line[6:])
        elif not line and "data" in current:
            out.append(current)
            current = {}
    return out


async def publish(client: TestClient, stream: str, body: Any) -> dict[str, Any]:
    resp = await client.post(f"/ext/events_demo/publish/{stream}", json=body)
    doc: dict[str, Any] = await resp.json()
    assert resp.status == 200, doc
    return doc


async def check_events_demo(client: TestClient) -> None:
    """Publish, subscribe from an id (resume), and follow live events: the seed's shapes."""
    first = await publish(client, "test", {"message": "Hello Events"})
    assert set(first) == {"success", "stream", "event_id", "message"}
    assert first["success"] is True and first["stream"] == "test"
    second = await publish(client, "test", {"message": "another"})
    assert parse_event_id(second["event_id"]) > parse_event_id(first["event_id"])
    resp = await client.get("/ext/events_demo/subscribe/test", headers={"Last-Event-ID": first["event_id"]})
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
    [resumed] = await sse_events(resp, 1)
    assert resumed["id"] == second["event_id"]
    assert resumed["data"]["stream"] == "test" and resumed["data"]["data"] == {"message": "another"}
    third = await publish(client, "test", {"message": "live"})
    [live] = await sse_events(resp, 1)
    assert live["id"] == third["event_id"] and live["data"]["data"] == {"message": "live"}
    resp.close()
    # Without Last-Event-ID: only what comes next.
    resp = await client.get("/ext/events_demo/subscribe/test")
    assert resp.status == 200
    await asyncio.sleep(0.05)
    fourth = await publish(client, "test", {"message": "next"})
    [only] = await sse_events(resp, 1)
    assert only["id"] == fourth["event_id"]
    resp.close()


async def test_events_demo_publish_and_subscribe_with_resume(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await orchestrator(aiohttp_client, tmp_path, [])
    await check_events_demo(client)


async def test_events_demo_refuses_hostile_input(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await orchestrator(aiohttp_client, tmp_path, [])
    bad_id = await client.get("/ext/events_demo/subscribe/test", headers={"Last-Event-ID": "yesterday"})
    assert bad_id.status == 422 and "Last-Event-ID" in (await bad_id.json())["error"]
    bad_stream = await client.post("/ext/events_demo/publish/a%20b", json={})
    assert bad_stream.status == 422
    not_object = await client.post("/ext/events_demo/publish/test", json=[1, 2])
    assert not_object.status == 400
    too_big = await client.post("/ext/events_demo/publish/test", json={"x": "y" * 70_000})
    assert too_big.status == 422
