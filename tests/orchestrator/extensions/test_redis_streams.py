"""Named event streams on Redis Streams, against a real ``redis-server`` started here
(skipped only when the binary is absent; ``.ci/run`` installs it)."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.extensions.streams import EventStreams, RedisStreams, StreamEvent, parse_event_id
from tests.helpers.extensions import orchestrator
from tests.orchestrator.extensions.test_streams import check_events_demo

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    server = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if server.poll() is not None:
                raise RuntimeError("redis-server exited")
            subprocess.run(["sleep", "0.02"], check=True)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait(10)


async def started(url: str) -> EventStreams:
    streams = EventStreams(RedisStreams(url, keep=1000), max_event_bytes=4096)
    await streams.start()
    return streams


async def test_publish_read_and_follow(redis_url: str) -> None:
    streams = await started(redis_url)
    try:
        first = await streams.publish("orders", {"n": 1})
        second = await streams.publish("orders", {"n": 2})
        assert parse_event_id(second.id) > parse_event_id(first.id)
        after = await streams.backend.read("orders", first.id, 10)
        assert [(e.id, e.data) for e in after] == [(second.id, {"n": 2})]
        tail = streams.tail("orders", first.id)
        assert (await anext(tail)).id == second.id
        following = asyncio.ensure_future(anext(tail))
        await asyncio.sleep(0.05)
        third = await streams.publish("orders", {"n": 3})
        assert (await asyncio.wait_for(following, 5)).id == third.id
        await tail.aclose()
    finally:
        await streams.stop()


async def test_consumer_groups_share_an_extensions_work(redis_url: str) -> None:
    """Two processes running one extension: each event is handled once by that extension;
    another extension gets every event too."""
    one, two, publisher = await started(redis_url), await started(redis_url), await started(redis_url)
    got: dict[str, list[str]] = {"one": [], "two": [], "other": []}

    def collect(name: str) -> Any:
        async def handler(event: StreamEvent) -> None:
            got[name].append(event.id)

        return handler

    try:
        await publisher.publish("orders.eu", {"n": 0})  # the stream exists before the groups
        await one.subscribe("hello", "orders.*", collect("one"))
        await two.subscribe("hello", "orders.*", collect("two"))
        await one.subscribe("other", "orders.*", collect("other"))
        await asyncio.sleep(0.3)  # the readers join their groups
        sent = [(await publisher.publish("orders.eu", {"n": n})).id for n in range(1, 21)]
        for _ in range(500):
            if len(got["one"]) + len(got["two"]) >= 20 and len(got["other"]) >= 20:
                break
            await asyncio.sleep(0.01)
        assert sorted(got["one"] + got["two"]) == sorted(sent)
        assert sorted(got["other"]) == sorted(sent)
    finally:
        for streams in (one, two, publisher):
            await streams.stop()


async def test_events_demo_on_redis(aiohttp_client: Any, tmp_path: Path, redis_url: str) -> None:
    client = await orchestrator(aiohttp_client, tmp_path, [], events_redis_url=redis_url)
    await check_events_demo(client)
