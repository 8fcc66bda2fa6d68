"""API4 (unrestricted resource consumption): slowloris and connection floods.

A real orchestrator served by ``shared.web.serve.listen`` (what ``provisioning up``
uses) on 127.0.0.1, attacked with real sockets: half-sent headers, a trickled
body, idle keep-alive connections, one address holding many connections, more
connections than the cap. Every loop is bounded; a connection the server fails
to close fails the test at its read deadline instead of hanging it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from orchestrator.app import create_app as create_orchestrator
from shared.settings import load_settings
from shared.store.store import Store
from shared.web.keys import BUS
from shared.web.serve import ConnectionGuard, ConnectionLimits, Listener, listen

HOST = "127.0.0.1"
OTHER = "127.0.0.2"  # a second loopback address: another client as far as the server can tell
READ_DEADLINE_S = 15.0  # far above every timeout used here: reaching it means the server did not act

Start = Callable[..., Awaitable[Listener]]
Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@pytest.fixture
async def start(store: Store, tmp_path: Any) -> AsyncIterator[Start]:
    listeners: list[Listener] = []

    async def start(**overrides: Any) -> Listener:
        settings = load_settings(db_url="mem://", data_dir=tmp_path, auth_enabled=False, **overrides)
        guard = ConnectionGuard(ConnectionLimits.from_settings(settings))
        listener = await listen(create_orchestrator(settings, store=store), HOST, 0, guard)
        listeners.append(listener)
        return listener

    yield start
    for listener in listeners:
        await listener.close()


async def connect(listener: Listener, source: str = HOST) -> Conn:
    return await asyncio.open_connection(HOST, listener.port, local_addr=(source, 0))


async def until(check: Callable[[], bool], what: str) -> None:
    """Wait (bounded) for the server to reach a state, e.g. to have accepted connections."""
    for _ in range(500):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


async def read_to_close(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection (or the deadline fails the test)."""
    try:
        return await asyncio.wait_for(reader.read(), READ_DEADLINE_S)
    except ConnectionResetError:
        return b""


async def health(listener: Listener, source: str = HOST) -> int:
    connector = aiohttp.TCPConnector(local_addr=(source, 0), force_close=True)
    async with aiohttp.ClientSession(connector=connector) as http:
        async with http.get(f"http://{HOST}:{listener.port}/health") as resp:
            return resp.status


def close_all(conns: list[Conn]) -> None:
    for _, writer in conns:
        writer.close()


# -- header deadline ----------------------------------------------------------------------------


async def test_partial_headers_are_answered_408_and_closed_after_the_header_timeout(start: Start) -> None:
    listener = await start(http_header_timeout_s=0.5, http_idle_timeout_s=600)
    conns = [await connect(listener) for _ in range(40)]
    for _, writer in conns:
        writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    await until(lambda: listener.guard.open == 40, "40 connections accepted")

    async def trickle(writer: asyncio.StreamWriter) -> None:
        # Slowloris proper: a byte now and then must not extend the deadline.
        with contextlib.suppress(ConnectionError):
            for _ in range(100):
                writer.write(b"a")
                await writer.drain()
                await asyncio.sleep(0.05)

    tricklers = [asyncio.create_task(trickle(w)) for _, w in conns[:10]]
    answers = await asyncio.gather(*(read_to_close(r) for r, _ in conns))
    for t in tricklers:
        t.cancel()
    close_all(conns)
    assert all(a.startswith(b"HTTP/1.1 408 Request Timeout") for a in answers), answers[:3]
    await until(lambda: listener.guard.open == 0, "every slot released")
    assert await health(listener) == 200


async def test_a_connection_that_sends_nothing_is_closed_too(start: Start) -> None:
    listener = await start(http_header_timeout_s=0.3)
    reader, writer = await connect(listener)
    assert (await read_to_close(reader)).startswith(b"HTTP/1.1 408")
    writer.close()


async def test_the_next_request_on_a_kept_alive_connection_has_the_same_deadline(start: Start) -> None:
    listener = await start(http_header_timeout_s=0.5, http_idle_timeout_s=600)
    reader, writer = await connect(listener)
    writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_DEADLINE_S)
    assert head.startswith(b"HTTP/1.1 200")
    fields = dict(line.split(b": ", 1) for line in head.strip().split(b"\r\n")[1:])
    length = int(fields[b"Content-Length"])
    await reader.readexactly(length)
    await asyncio.sleep(0.7)  # idle longer than the header timeout: idle is not late
    writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # then half a request
    assert (await read_to_close(reader)).startswith(b"HTTP/1.1 408")
    writer.close()


# -- body and idle deadlines ---------------------------------------------------------------------


async def test_a_trickled_body_is_answered_408_and_the_connection_closed(start: Start) -> None:
    listener = await start(http_body_timeout_s=0.5)
    reader, writer = await connect(listener)
    writer.write(
        b"POST /batch/execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000\r\n\r\n{"
    )
    answer = await read_to_close(reader)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer
    body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert body["success"] is False and body["code"] == "request_timeout"
    await until(lambda: listener.guard.open == 0, "the slot released")


async def test_an_idle_keep_alive_connection_is_closed_after_the_idle_timeout(start: Start) -> None:
    listener = await start(http_idle_timeout_s=0.5, http_header_timeout_s=600)
    reader, writer = await connect(listener)
    writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_DEADLINE_S)
    assert head.startswith(b"HTTP/1.1 200")
    await read_to_close(reader)  # the rest of the body, then the close
    writer.close()
    await until(lambda: listener.guard.open == 0, "the idle connection closed")


# -- streams are not cut -------------------------------------------------------------------------


async def test_websocket_and_sse_streams_outlive_every_timeout(start: Start) -> None:
    listener = await start(
        http_header_timeout_s=0.3, http_body_timeout_s=0.3, http_idle_timeout_s=0.3, sse_ping_s=60
    )
    base = f"http://{HOST}:{listener.port}"
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"{base}/ws?events=batch")
        welcome = json.loads((await ws.receive(timeout=READ_DEADLINE_S)).data)
        assert welcome["type"] == "welcome"
        sse = await http.get(f"{base}/events?events=batch")
        assert sse.status == 200
        await asyncio.wait_for(sse.content.readuntil(b"welcome"), READ_DEADLINE_S)
        await asyncio.sleep(1.2)  # four times every timeout, with nothing on the wire
        listener.runner.app[BUS].publish(
            "BatchStatusChanged", {"workflow_id": "wf-late", "batch_id": "wf-late", "status": "Running"}
        )
        got = json.loads((await ws.receive(timeout=READ_DEADLINE_S)).data)
        assert got["event_type"] == "BatchStatusChanged" and not ws.closed
        await asyncio.wait_for(sse.content.readuntil(b"wf-late"), READ_DEADLINE_S)
        await ws.close()
        sse.close()


# -- per-address limit and global cap ------------------------------------------------------------


async def test_one_address_cannot_hold_more_than_the_per_ip_limit(start: Start) -> None:
    listener = await start(http_max_connections_per_ip=5, http_header_timeout_s=600)
    held = [await connect(listener, OTHER) for _ in range(5)]
    await until(lambda: listener.guard.per_ip.get(OTHER) == 5, "five connections from one address")
    extra = [await connect(listener, OTHER) for _ in range(3)]
    for reader, _ in extra:
        assert (await read_to_close(reader)).startswith(b"HTTP/1.1 429 Too Many Requests")
    close_all(extra)
    assert listener.guard.per_ip[OTHER] == 5
    assert await health(listener, HOST) == 200  # everyone else is served meanwhile
    held[0][1].close()
    await until(lambda: listener.guard.per_ip.get(OTHER) == 4, "a slot freed")
    assert await health(listener, OTHER) == 200  # and the address gets its slot back
    close_all(held)


async def test_trusted_proxies_have_no_per_address_limit(start: Start) -> None:
    listener = await start(http_max_connections_per_ip=2, http_header_timeout_s=600, trusted_proxies=OTHER)
    held = [await connect(listener, OTHER) for _ in range(4)]
    await until(lambda: listener.guard.per_ip.get(OTHER) == 4, "four connections from the proxy")
    assert await health(listener, OTHER) == 200
    close_all(held)


async def test_the_global_cap_holds_and_frees(start: Start) -> None:
    listener = await start(http_max_connections=8, http_header_timeout_s=600)
    held = [await connect(listener, OTHER if i % 2 else HOST) for i in range(8)]
    await until(lambda: listener.guard.open == 8, "eight connections")
    reader, writer = await connect(listener, "127.0.0.3")
    assert (await read_to_close(reader)).startswith(b"HTTP/1.1 503 Service Unavailable")
    writer.close()
    assert listener.guard.open == 8
    held[0][1].close()
    await until(lambda: listener.guard.open == 7, "a slot freed")
    assert await health(listener, "127.0.0.3") == 200
    close_all(held)
