"""Streams behind the control center's real tokens and Casbin policies: who sees what,
the ways to authenticate a WebSocket, and what ends a stream."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from shared.security.backend import SECURITY
from shared.store.writes import Stmt
from tests.helpers.events import Services, ServicesFactory, ops, submit, wait_final

AUTH = {
    "auth_enabled": True,
    "admin_password": "first-boot-secret-for-events",
    "rate_limit_auth": "1000/minute",
    "rate_limit_default": "10000/minute",
    "rate_limit_batch": "1000/minute",
    "auth_sync_s": 0,
    "argon2_time_cost": 1,
    "argon2_memory_kib": 8,
    "argon2_parallelism": 1,
}


ROLES = ("admin", "operator", "developer", "viewer", "auditor")


def name_of(role: str) -> str:
    return "second-admin" if role == "admin" else role  # "admin" is the bootstrap admin's


async def with_users(services: Services) -> Services:
    """The users the tokens below stand for (a token is honoured only for a real user)."""
    users = {f"u-{role}": (name_of(role), role) for role in ROLES}
    users["u1"] = ("op", "operator")
    await services.store.write(
        *(
            Stmt(
                "CREATE type::thing('user', $id) CONTENT $row RETURN NONE",
                {"id": uid, "row": {"username": name, "roles": [role], "enabled": True}},
            )
            for uid, (name, role) in users.items()
        )
    )
    return services


def token(services: Services, role: str, ttl_s: int | None = None) -> str:
    """A token signed by the control center's key, for a user with one role."""
    issued = services.cc.app[SECURITY].tokens.issue(
        user_id=f"u-{role}",
        username=name_of(role),
        roles=[role],
        amr=["pwd", "otp"],
        session_id=None,
        ttl_s=ttl_s,
    )
    return issued.token


@pytest.fixture
async def secured(make_services: ServicesFactory) -> Services:
    result: Services = await with_users(await make_services(**AUTH, ws_auth_timeout_s=0.5))
    return result


async def first(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    doc: dict[str, Any] = await ws.receive_json(timeout=5)
    return doc


async def kinds_until_done(ws: aiohttp.ClientWebSocketResponse) -> list[str]:
    seen: list[str] = []
    async with asyncio.timeout(20):
        while True:
            doc = await ws.receive_json()
            if "event_type" not in doc:
                continue
            seen.append(doc["event_type"])
            if doc["event_type"] == "BatchStatusChanged" and doc["data"]["status"] in ("Completed", "Failed"):
                return seen


async def test_two_roles_see_different_events(secured: Services) -> None:
    operator, viewer = token(secured, "operator"), token(secured, "viewer")
    op_ws = await secured.orch.ws_connect(f"/ws?token={operator}")
    op_hello = await first(op_ws)
    assert op_hello["user"] == "operator" and op_hello["denied"] == []
    viewer_ws = await secured.orch.ws_connect("/ws", headers={"Authorization": f"Bearer {viewer}"})
    viewer_hello = await first(viewer_ws)
    assert viewer_hello["events"] == ["task", "batch", "system"]
    assert viewer_hello["denied"] == ["rollback"]  # viewers may not read rollback

    secured.orch.session.headers["Authorization"] = f"Bearer {operator}"
    bad = {**ops(1, "bad", fail_always=True)[0], "dependencies": ["op0"], "retry": {"max_attempts": 1}}
    batch_id = await submit(secured.orch, [*ops(1), bad], rollback_enabled=True)
    await wait_final(secured.orch, batch_id)

    seen_by_operator = await kinds_until_done(op_ws)
    seen_by_viewer = await kinds_until_done(viewer_ws)
    assert {"CheckpointCreated", "RollbackStarted", "RollbackCompleted"} <= set(seen_by_operator)
    assert set(seen_by_viewer) == {"TaskStatusChanged", "BatchStatusChanged"}
    assert seen_by_viewer == [k for k in seen_by_operator if k in set(seen_by_viewer)]
    for ws in (op_ws, viewer_ws):
        await ws.close()


async def test_first_message_authentication(secured: Services) -> None:
    ws = await secured.orch.ws_connect("/ws")
    await ws.send_json({"type": "auth", "token": token(secured, "operator")})
    hello = await first(ws)
    assert hello["type"] == "welcome" and hello["user"] == "operator"
    await ws.close()


async def test_no_or_bad_authentication_is_refused(secured: Services) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        await secured.orch.ws_connect("/ws?token=not-a-jwt")
    assert err.value.status == 401
    resp = await secured.orch.get("/events")
    assert resp.status == 401

    silent = await secured.orch.ws_connect("/ws")  # never sends the auth message
    msg = await silent.receive(timeout=5)
    assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 4401
    assert "auth" in msg.extra

    wrong = await secured.orch.ws_connect("/ws")
    await wrong.send_json({"type": "auth", "token": "forged"})
    msg = await wrong.receive(timeout=5)
    assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 4401


async def test_a_stream_ends_when_its_token_expires(secured: Services) -> None:
    short = token(secured, "operator", ttl_s=1)
    ws = await secured.orch.ws_connect(f"/ws?token={short}")
    await first(ws)
    msg = await ws.receive(timeout=10)
    assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 4401
    assert "expired" in msg.extra


async def test_a_renewed_token_keeps_the_stream(secured: Services) -> None:
    ws = await secured.orch.ws_connect(f"/ws?token={token(secured, 'operator', ttl_s=1)}")
    await first(ws)
    await ws.send_json({"type": "auth", "token": token(secured, "operator", ttl_s=60)})
    ok = await first(ws)
    assert ok["type"] == "auth_ok"
    with pytest.raises(TimeoutError):
        await ws.receive(timeout=2)  # past the first token's expiry: still open
    await ws.close()


async def test_a_revoked_token_ends_the_stream_at_the_next_heartbeat(
    make_services: ServicesFactory,
) -> None:
    services = await with_users(await make_services(**AUTH, ws_heartbeat_s=0.3))
    issued = services.cc.app[SECURITY].tokens.issue(
        user_id="u1", username="op", roles=["operator"], amr=["pwd", "otp"], session_id=None
    )
    ws = await services.orch.ws_connect(f"/ws?token={issued.token}")
    await first(ws)
    await services.cc.app[SECURITY].revoke(until=datetime.now(UTC) + timedelta(hours=1), jti=issued.jti)
    msg = await ws.receive(timeout=5)
    assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 4401


async def test_control_center_stream_is_for_those_who_read_the_audit_log(
    secured: Services,
) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        await secured.cc.ws_connect(f"/ws?token={token(secured, 'viewer')}")
    assert err.value.status == 403
    ws = await secured.cc.ws_connect(f"/ws?token={token(secured, 'auditor')}")
    assert (await first(ws))["events"] == ["security"]
    resp = await secured.cc.post("/auth/login", json={"username": "admin", "password": "nope"})
    assert resp.status == 401
    doc = await first(ws)
    assert doc["event_type"] == "LoginFailed" and doc["data"]["username"] == "admin"
    await ws.close()


async def test_sse_with_a_token_in_the_query(secured: Services) -> None:
    resp = await secured.orch.get(f"/events?token={token(secured, 'viewer')}&events=batch")
    assert resp.status == 200
    line = await resp.content.readline()
    assert line.startswith(b"event: welcome")
    resp.close()
    resp = await secured.orch.get(f"/events?token={token(secured, 'viewer')}&events=rollback")
    assert resp.status == 403


async def test_a_policy_change_reaches_open_streams_at_the_next_heartbeat(
    make_services: ServicesFactory,
) -> None:
    services = await with_users(await make_services(**AUTH, ws_heartbeat_s=0.2))
    op_ws = await services.orch.ws_connect(f"/ws?token={token(services, 'operator')}")
    assert (await first(op_ws))["events"] == ["task", "batch", "rollback", "system"]
    viewer_ws = await services.orch.ws_connect(f"/ws?token={token(services, 'viewer')}&events=task")
    await first(viewer_ws)
    seen: list[str] = []

    async def read() -> None:  # keep reading: that is also what answers the heartbeat
        async for msg in op_ws:
            seen.append(json.loads(msg.data).get("event_type", ""))

    reader = asyncio.create_task(read())
    resp = await services.cc.post(
        "/policies",
        headers={"Authorization": f"Bearer {token(services, 'admin')}"},
        json={
            "name": "narrower",
            "rules": [
                {"effect": "deny", "resource": "rollback", "action": "read", "roles": ["operator"]},
                {"effect": "deny", "resource": "tasks", "action": "read", "roles": ["viewer"]},
            ],
        },
    )
    assert resp.status == 201, await resp.text()

    msg = await viewer_ws.receive(timeout=5)  # nothing it asked for is allowed any more
    assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 4403
    await asyncio.sleep(0.5)  # a heartbeat or two for the operator's stream too
    services.bus.publish("CheckpointCreated", {"checkpoint_id": "c1"})
    services.bus.publish("TaskStatusChanged", {"task_id": "t1", "status": "Running"})
    async with asyncio.timeout(5):
        while True:
            if "TaskStatusChanged" in seen:
                break
            await asyncio.sleep(0.01)
    assert "CheckpointCreated" not in seen  # rollback events are no longer for it
    await op_ws.close()
    await reader
