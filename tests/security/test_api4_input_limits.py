"""API4 (unrestricted resource consumption), issue 8 finding 6 and the number and length
bounds: deeply nested JSON was a 500 with a RecursionError traceback per request (also
unauthenticated on /auth/login); numbers the store or the parser cannot take, and strings
of any length, went through. Now: nesting past 64 is a 400, never a traceback; integers
outside signed 64 bits, non-finite numbers and over-long strings are a 422 naming the field."""

from __future__ import annotations

import json
import logging
from typing import Any

import aiohttp
import pytest

from tests.helpers.services import Services, bearer

OP = {"id": "a", "type": "server_batch", "provider": "local", "simulate": {"latency_s": 0}}
JSON = {"Content-Type": "application/json"}


def nested(depth: int) -> str:
    """A JSON object whose ``password`` makes the document ``depth`` levels deep."""
    inner = "[" * (depth - 1) + "]" * (depth - 1)
    return '{"username": "admin", "password": ' + inner + "}"


def fields_of(doc: dict[str, Any]) -> list[str]:
    return [f["field"] for f in doc.get("details", {}).get("fields", [])]


def no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    for record in caplog.records:
        assert "RecursionError" not in record.getMessage()
        assert record.exc_info is None, record.getMessage()
        assert record.levelno < logging.ERROR, record.getMessage()


async def test_deep_nesting_on_unauthenticated_login(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    resp = await services.cc.post("/auth/login", data=nested(64), headers=JSON)
    doc = await resp.json()
    assert resp.status == 422, doc  # 64 levels are parsed; the password is not a string
    assert fields_of(doc) == ["password"]
    for depth in (65, 1000, 100_000):
        resp = await services.cc.post("/auth/login", data=nested(depth), headers=JSON)
        doc = await resp.json()
        assert resp.status == 400, doc
        assert doc["code"] == "bad_request" and "nested deeper than 64" in doc["error"]
    no_traceback(caplog)


async def test_deep_nesting_on_batch_execute(services: Services, caplog: pytest.LogCaptureFixture) -> None:
    admin = await services.admin()
    headers = {**bearer(admin), **JSON}
    for depth, status in ((64, 422), (65, 400), (100_000, 400)):
        deep = "[" * (depth - 3) + "]" * (depth - 3)
        body = '{"name": "n", "operations": [{"id": "a", "type": "server_batch", "simulate": ' + deep + "}]}"
        resp = await services.orch.post("/batch/execute", data=body, headers=headers)
        assert resp.status == status, (depth, await resp.text())
    resp = await services.orch.get("/batch/operations", headers=bearer(admin))
    assert resp.status == 200
    no_traceback(caplog)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            '{"name": "n", "parallel_limit": 100000000000000000000000000000, "operations": []}',
            "parallel_limit",
        ),
        ('{"name": "n", "parallel_limit": -9223372036854775809, "operations": []}', "parallel_limit"),
        ('{"name": "n", "parallel_limit": ' + "9" * 5000 + ', "operations": []}', "parallel_limit"),
        ('{"name": "n", "parallel_limit": 1e400, "operations": []}', "parallel_limit"),
        ('{"name": "n", "parallel_limit": NaN, "operations": []}', "parallel_limit"),
        (
            '{"name": "n", "operations": [{"id": "a", "simulate": {"latency_s": -Infinity}}]}',
            "operations.0.simulate.latency_s",
        ),
    ],
)
async def test_numbers_outside_what_is_stored_are_422(services: Services, body: str, field: str) -> None:
    admin = await services.admin()
    resp = await services.orch.post("/batch/execute", data=body, headers={**bearer(admin), **JSON})
    doc = await resp.json()
    assert resp.status == 422, doc
    assert fields_of(doc) == [field]


async def test_int64_bounds_themselves_pass_the_input_check(services: Services) -> None:
    admin = await services.admin()
    body = '{"name": "n", "parallel_limit": 9223372036854775807, "operations": []}'
    resp = await services.orch.post("/batch/execute", data=body, headers={**bearer(admin), **JSON})
    doc = await resp.json()
    assert resp.status == 422, doc  # refused by the model's own bounds, not as out of range
    assert "signed 64" not in doc["error"]


async def test_strings_longer_than_the_limit_are_422(services: Services) -> None:
    admin = await services.admin()
    long = "x" * 65_537
    resp = await services.orch.post(
        "/batch/execute", json={"name": "n", "operations": [{**OP, "note": long}]}, headers=bearer(admin)
    )
    doc = await resp.json()
    assert resp.status == 422 and fields_of(doc) == ["operations.0.note"], doc
    assert "longer than 65536" in doc["error"]
    resp = await services.cc.post("/auth/login", json={"username": long, "password": "p"})
    assert resp.status == 422 and fields_of(await resp.json()) == ["username"]


@pytest.mark.parametrize("settings_overrides", [{"max_json_depth": 8, "max_string_chars": 10}])
async def test_the_limits_are_settings(services: Services) -> None:
    resp = await services.cc.post("/auth/login", data=nested(9), headers=JSON)
    assert resp.status == 400
    resp = await services.cc.post("/auth/login", json={"username": "u" * 11, "password": "p"})
    assert resp.status == 422 and "longer than 10" in (await resp.json())["error"]


async def test_websocket_messages_go_through_the_same_checks(services: Services) -> None:
    admin = await services.admin()
    ws = await services.orch.ws_connect("/ws")
    await ws.send_str('{"type": "auth", "token": ' + "[" * 5000 + "]" * 5000 + "}")  # within the frame limit
    msg = await ws.receive(timeout=5)
    assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 4401
    ws = await services.orch.ws_connect("/ws")
    await ws.send_json({"type": "auth", "token": admin})
    hello = json.loads((await ws.receive(timeout=5)).data)
    assert hello["type"] == "welcome"
    await ws.send_str('{"type": "ping", "x": "\\u0000"}')
    answer = json.loads((await ws.receive(timeout=5)).data)
    assert answer["type"] == "error"  # refused as a message, the stream goes on
    await ws.send_str('{"type": "ping"}')
    while (answer := json.loads((await ws.receive(timeout=5)).data))["type"] != "pong":
        pass
    await ws.close()
