"""WebSocket ``/ws`` and SSE ``/events`` on real servers: formats, filters, replay,
slow consumers and shutdown."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from orchestrator.app import create_app as create_orchestrator
from shared.events.streams import BROADCASTER
from tests.helpers.events import (
    Services,
    ServicesFactory,
    event_settings,
    ops,
    submit,
    wait_final,
)

Doc = dict[str, Any]


async def welcome(ws: aiohttp.ClientWebSocketResponse) -> Doc:
    doc: Doc = await ws.receive_json(timeout=5)
    assert doc["type"] == "welcome", doc
    return doc


async def collect(
    ws: aiohttp.ClientWebSocketResponse,
    until_batch_done: int = 1,
    limit: int | None = None,
    timeout_s: float = 20.0,
) -> list[Doc]:
    """Events (control messages skipped) until ``until_batch_done`` batches finished."""
    out: list[Doc] = []
    finished = 0
    async with asyncio.timeout(timeout_s):
        while True:
            doc = await ws.receive_json()
            if "event_type" not in doc:
                continue
            out.append(doc)
            if limit is not None and len(out) >= limit:
                return out
            if doc["event_type"] == "BatchStatusChanged" and doc["data"]["status"] in (
                "Completed",
                "Failed",
                "Cancelled",
            ):
                finished += 1
                if finished >= until_batch_done:
                    return out


async def test_websocket_streams_every_transition_in_the_seed_format(services: Services) -> None:
    ws = await services.orch.ws_connect("/ws")
    hello = await welcome(ws)
    assert hello["events"] == ["task", "batch", "rollback", "system"]
    batch_id = await submit(services.orch, ops(2, latency_s=0.04, progress_steps=2))
    events = await collect(ws)
    await ws.close()

    for doc in events:
        assert set(doc) == {"id", "event_type", "timestamp", "data", "metadata"}
        assert doc["timestamp"].endswith("Z")
    ids = [d["id"] for d in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    kinds = [d["event_type"] for d in events]
    assert kinds[0] == "CheckpointCreated"
    assert kinds[1] == "BatchStatusChanged" and events[1]["data"]["status"] == "Running"
    tasks = [d["data"] for d in events if d["event_type"] == "TaskStatusChanged"]
    assert sorted(t["status"] for t in tasks) == ["Completed", "Completed", "Running", "Running"]
    for t in tasks:
        assert t["workflow_id"] == batch_id and t["task_id"]
    progress = [d["data"] for d in events if d["event_type"] == "OperationProgress"]
    assert len(progress) == 4
    assert {p["progress"] for p in progress} == {50.0, 100.0}
    assert all("[simulated]" in p["message"] or p["message"] for p in progress)
    assert events[-1]["data"]["status"] == "Completed"
    assert events[-1]["metadata"]["batch_id"] == batch_id


async def test_filters_by_kind_and_workflow(services: Services) -> None:
    only_batch = await services.orch.ws_connect("/ws?events=batch")
    assert (await welcome(only_batch))["events"] == ["batch"]
    first = await submit(services.orch, ops(2))
    by_workflow = await services.orch.ws_connect(f"/ws?workflow_id={first}&events=task,batch")
    await welcome(by_workflow)
    await wait_final(services.orch, first)
    second = await submit(services.orch, ops(3))
    await wait_final(services.orch, second)

    got = await collect(only_batch, until_batch_done=2)
    assert {d["event_type"] for d in got} == {"BatchStatusChanged"}
    resp = await services.orch.ws_connect(f"/ws?workflow_id={second}&since=0")
    await welcome(resp)
    replayed = await collect(resp)
    assert {d["data"]["workflow_id"] for d in replayed} == {second}
    for ws in (only_batch, by_workflow, resp):
        await ws.close()


async def test_unknown_kinds_are_refused_before_the_upgrade(services: Services) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        await services.orch.ws_connect("/ws?events=task,gossip")
    assert err.value.status == 422
    resp = await services.orch.get("/events?events=security")
    assert resp.status == 422
    assert "gossip" not in (await resp.json())["error"]


async def test_reconnect_with_since_misses_nothing(services: Services) -> None:
    reference = await services.orch.ws_connect("/ws")
    await welcome(reference)
    flaky = await services.orch.ws_connect("/ws")
    await welcome(flaky)
    batch_id = await submit(services.orch, ops(40, latency_s=0.01, progress_steps=1))
    first_part = await collect(flaky, limit=15)
    await flaky.close()
    await asyncio.sleep(0.05)  # events go on while it is away
    resumed = await services.orch.ws_connect(f"/ws?since={first_part[-1]['id']}")
    hello = await welcome(resumed)
    assert hello["replaying"] > 0
    rest = await collect(resumed)
    everything = await collect(reference)
    await wait_final(services.orch, batch_id)
    assert [d["id"] for d in first_part + rest] == [d["id"] for d in everything]
    for ws in (reference, resumed):
        await ws.close()


async def test_a_gap_is_reported_when_the_id_left_the_retention_window(
    make_services: ServicesFactory,
) -> None:
    services = await make_services(event_retention_count=5)
    batch_id = await submit(services.orch, ops(5))
    await wait_final(services.orch, batch_id)
    ws = await services.orch.ws_connect("/ws?since=1")
    hello = await welcome(ws)
    assert hello["replaying"] == 5
    gap = await ws.receive_json(timeout=5)
    assert gap["type"] == "gap" and gap["oldest_event_id"] > 1
    await ws.close()


def _stalled_client(port: int) -> socket.socket:
    """A WebSocket client that completes the handshake and then never reads."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


async def test_a_client_that_stops_reading_is_dropped_and_the_batch_goes_on(
    make_services: ServicesFactory,
) -> None:
    services = await make_services(ws_queue_size=300, ws_send_buffer_bytes=16_384)
    broadcaster = services.orch.app[BROADCASTER]
    good = await services.orch.ws_connect("/ws")
    await welcome(good)
    received: list[str] = []

    async def keep_reading() -> None:
        async for msg in good:
            received.append(msg.data)

    reader = asyncio.create_task(keep_reading())
    port = services.orch.server.port
    assert port is not None
    stalled = await asyncio.to_thread(_stalled_client, port)
    try:
        local_port = stalled.getsockname()[1]
        async with asyncio.timeout(10):
            while True:
                if len(broadcaster.streams) >= 2:
                    break
                await asyncio.sleep(0.01)
        stalled_stream = next(
            s
            for s in broadcaster.streams
            if s.socket is not None and s.socket.get_extra_info("peername")[1] == local_port
        )
        batch_id = await submit(services.orch, ops(500), parallel_limit=20)
        batch = await wait_final(services.orch, batch_id, timeout_s=45)
        assert batch["status"] == "Completed"
        # Dropped while the batch ran, with the code and a reason a client can act on.
        assert stalled_stream.stop.is_set()
        assert stalled_stream.close_code == 4408
        assert "reconnect with ?since=" in stalled_stream.close_reason
        async with asyncio.timeout(10):
            while True:
                events = [json.loads(m) for m in received]
                if any(
                    d.get("event_type") == "BatchStatusChanged" and d["data"]["status"] == "Completed"
                    for d in events
                ):
                    break
                await asyncio.sleep(0.02)
        assert stalled_stream.last_sent < events[-1]["id"]
        # The reader that kept up got every transition of all 500 operations.
        tasks = [d for d in events if d.get("event_type") == "TaskStatusChanged"]
        assert len(tasks) == 1000
    finally:
        stalled.close()
        await good.close()
        await reader


async def test_shutdown_closes_every_socket(aiohttp_client: Any) -> None:
    client: TestClient = await aiohttp_client(create_orchestrator(event_settings()))
    ws = await client.ws_connect("/ws")
    await welcome(ws)
    sse = await client.get("/events")
    assert sse.status == 200
    async with asyncio.timeout(10):
        await client.server.close()
        msg = await ws.receive()
    assert msg.type == aiohttp.WSMsgType.CLOSE
    assert msg.data == 1001 and "shutting down" in msg.extra
    sse.close()


async def _sse_events(resp: aiohttp.ClientResponse, count: int) -> list[tuple[str, Doc]]:
    """Read ``count`` data messages (ids and parsed data) from an SSE response."""
    out: list[tuple[str, Doc]] = []
    event_id = ""
    name = "message"
    async with asyncio.timeout(15):
        while len(out) < count:
            line = (await resp.content.readline()).decode().rstrip("\r\n")
            if line.startswith("id: "):
                event_id = line[4:]
            elif line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: ") and name == "message":
                out.append((event_id, json.loads(line[6:])))
            elif line == "":
                name = "message"
    return out


async def test_sse_streams_with_ids_and_resumes_with_last_event_id(services: Services) -> None:
    resp = await services.orch.get("/events?events=task,batch")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    batch_id = await submit(services.orch, ops(3))
    await wait_final(services.orch, batch_id)
    expected = 3 * 2 + 2  # Running and Completed per operation, the batch's two
    got = await _sse_events(resp, expected)
    resp.close()
    assert [int(i) for i, _ in got] == [d["id"] for _, d in got]
    assert got[-1][1]["data"]["status"] == "Completed"

    # A browser reconnecting sends the last id it saw; nothing after it is missed.
    cut = got[2][0]
    again = await services.orch.get("/events?events=task,batch", headers={"Last-Event-ID": cut})
    rest = await _sse_events(again, expected - 3)
    again.close()
    assert [i for i, _ in rest] == [i for i, _ in got[3:]]


async def test_sse_rejects_a_bad_last_event_id(services: Services) -> None:
    resp = await services.orch.get("/events", headers={"Last-Event-ID": "yesterday"})
    assert resp.status == 422


async def test_control_center_streams_security_events_only(services: Services) -> None:
    cc_ws = await services.cc.ws_connect("/ws")
    assert (await welcome(cc_ws))["events"] == ["security"]
    orch_ws = await services.orch.ws_connect("/ws")
    await welcome(orch_ws)
    services.bus.publish("PolicyChanged", {"policy_id": "p1", "action": "updated"})
    services.bus.publish("TaskStatusChanged", {"task_id": "t", "status": "Running"})
    doc = await cc_ws.receive_json(timeout=5)
    assert doc["event_type"] == "PolicyChanged"
    doc = await orch_ws.receive_json(timeout=5)
    assert doc["event_type"] == "TaskStatusChanged"  # the policy change never got here
    with pytest.raises(TimeoutError):
        await cc_ws.receive_json(timeout=0.2)
    for ws in (cc_ws, orch_ws):
        await ws.close()


async def test_client_messages(services: Services) -> None:
    ws = await services.orch.ws_connect("/ws")
    await welcome(ws)
    await ws.send_json({"type": "ping"})
    assert (await ws.receive_json(timeout=5))["type"] == "pong"
    await ws.send_str("hello?")
    doc = await ws.receive_json(timeout=5)
    assert doc["type"] == "error" and doc["code"] == 4400
    await ws.close()
