"""API2 broken authentication: sessions that end when they should.

Issue 8, finding 8: the ``{token}`` form of ``/auth/refresh`` renewed a session
indefinitely from an access token alone (an expired one too, within the clock
skew); ``?token=`` was honoured on every GET; streams kept sending for up to
30 s after logout. Now renewal needs a still valid token and never outlives
the session, ``?token=`` is for the streams only, and a revocation closes the
streams of that session or user as it happens.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import aiohttp
import jwt
import pytest

from shared.security.backend import SECURITY
from shared.security.tokens import utcnow
from tests.helpers.services import ADMIN_PASSWORD, USER_PASSWORD, Services, bearer

CLOSE_WAIT_S = 2.0  # a functional bound for "closes within 1 s", with room for a busy machine


async def test_refresh_with_an_expired_access_token_is_refused(services: Services) -> None:
    data = await services.token("admin", ADMIN_PASSWORD)
    claims = jwt.decode(data["token"], options={"verify_signature": False})
    # the session is alive; this token of it expired two seconds ago (inside the
    # verifier's clock-skew leeway, which renewal used to accept)
    expired = services.cc.app[SECURITY].tokens.issue(
        user_id=claims["sub"],
        username="admin",
        roles=["admin"],
        amr=["pwd", "otp"],
        session_id=claims["sid"],
        ttl_s=60,
        now=utcnow() - timedelta(seconds=62),
    )
    services.secrets.add(expired.token)
    status, doc = await services.refresh(token=expired.token)
    assert status == 401, doc
    assert "expired" in doc["error"]
    # the valid one still renews
    status, doc = await services.refresh(token=data["token"])
    assert status == 200, doc


async def test_refresh_with_an_access_token_never_outlives_the_session(services: Services) -> None:
    data = await services.token("admin", ADMIN_PASSWORD)
    sid = jwt.decode(data["token"], options={"verify_signature": False})["sid"]
    # the session (its refresh token) ends in a minute; the access TTL is 15 min
    ends = utcnow() + timedelta(seconds=60)
    await services.store.query(
        "UPDATE type::thing('session', $id) SET expires_at = $ends", {"id": sid, "ends": ends}
    )
    status, doc = await services.refresh(token=data["token"])
    assert status == 200, doc
    renewed = jwt.decode(doc["data"]["token"], options={"verify_signature": False})
    assert renewed["exp"] <= ends.timestamp() + 1
    # and renewing again does not push the session's end
    status, doc = await services.refresh(token=doc["data"]["token"])
    assert status == 200
    again = jwt.decode(doc["data"]["token"], options={"verify_signature": False})
    assert again["exp"] <= ends.timestamp() + 1
    # once the session is over, nothing renews
    await services.store.query(
        "UPDATE type::thing('session', $id) SET expires_at = $ends",
        {"id": sid, "ends": utcnow() - timedelta(seconds=1)},
    )
    status, _ = await services.refresh(token=doc["data"]["token"])
    assert status == 401


async def test_a_token_in_the_query_is_refused_outside_the_streams(services: Services) -> None:
    token = await services.admin()
    for client, path in (
        (services.orch, "/tasks"),
        (services.orch, "/batch/operations"),
        (services.cc, "/users"),
        (services.cc, "/audit/logs"),
        (services.cc, "/users/me"),
    ):
        resp = await client.get(path, params={"token": token})
        assert resp.status == 401, path
        assert "?token=" in (await resp.json())["error"]
    # the streams still take it (browsers cannot send headers there)
    ws = await services.orch.ws_connect("/ws", params={"token": token})
    assert (await ws.receive_json(timeout=5))["type"] == "welcome"
    await ws.close()
    resp = await services.cc.get("/events", params={"token": token})
    assert resp.status == 200
    resp.close()


async def _closed(ws: aiohttp.ClientWebSocketResponse) -> aiohttp.WSMessage:
    """The close frame, skipping events; fails if none comes within ``CLOSE_WAIT_S``."""
    async with asyncio.timeout(CLOSE_WAIT_S):
        while True:
            msg = await ws.receive()
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                return msg


@pytest.mark.parametrize("settings_overrides", [{"ws_heartbeat_s": 30.0}])
async def test_logout_closes_the_sessions_websockets_at_once(services: Services) -> None:
    data = await services.token("admin", ADMIN_PASSWORD)
    other = await services.token("admin", ADMIN_PASSWORD)  # another session: stays open
    orch_ws = await services.orch.ws_connect("/ws", headers=bearer(data["token"]))
    cc_ws = await services.cc.ws_connect("/ws", headers=bearer(data["token"]))
    kept = await services.orch.ws_connect("/ws", headers=bearer(other["token"]))
    for ws in (orch_ws, cc_ws, kept):
        assert (await ws.receive_json(timeout=5))["type"] == "welcome"
    resp = await services.cc.post("/auth/logout", headers=bearer(data["token"]))
    assert resp.status == 200
    for ws in (orch_ws, cc_ws):
        msg = await _closed(ws)
        assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 4401, msg
        assert "logout" in msg.extra
    await kept.send_json({"type": "ping"})
    assert (await kept.receive_json(timeout=5))["type"] == "pong"
    await kept.close()


@pytest.mark.parametrize("settings_overrides", [{"ws_heartbeat_s": 30.0}])
async def test_disabling_a_user_closes_their_streams_at_once(services: Services) -> None:
    admin = await services.admin()
    uid, viewer = await services.user("viewer1", "viewer", admin_token=admin)
    ws = await services.orch.ws_connect("/ws", headers=bearer(viewer))
    assert (await ws.receive_json(timeout=5))["type"] == "welcome"
    sse = await services.orch.get("/events", headers=bearer(viewer))
    assert sse.status == 200
    resp = await services.cc.put(f"/users/{uid}", json={"enabled": False}, headers=bearer(admin))
    assert resp.status == 200
    msg = await _closed(ws)
    assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 4401, msg
    # the SSE stream says why and ends
    async with asyncio.timeout(CLOSE_WAIT_S):
        body = await sse.content.read()
    assert b"event: close" in body and b"4401" in body


@pytest.mark.parametrize("settings_overrides", [{"ws_heartbeat_s": 30.0}])
async def test_refresh_token_reuse_closes_the_sessions_streams(services: Services) -> None:
    data = await services.token("admin", ADMIN_PASSWORD)
    ws = await services.orch.ws_connect("/ws", headers=bearer(data["token"]))
    assert (await ws.receive_json(timeout=5))["type"] == "welcome"
    status, _ = await services.refresh(refresh_token=data["refresh_token"])
    assert status == 200
    status, doc = await services.refresh(refresh_token=data["refresh_token"])  # replayed
    assert status == 401 and doc["code"] == "refresh_token_reused"
    msg = await _closed(ws)
    assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 4401, msg


async def test_changing_ones_own_password_keeps_this_sessions_stream(services: Services) -> None:
    admin = await services.admin()
    _, viewer = await services.user("viewer1", "viewer", admin_token=admin)
    ws = await services.orch.ws_connect("/ws", headers=bearer(viewer))
    assert (await ws.receive_json(timeout=5))["type"] == "welcome"
    new_password = "a-brand-new-secret-phrase"
    services.secrets.add(new_password)
    resp = await services.cc.post(
        "/users/me/password",
        json={"current_password": USER_PASSWORD, "new_password": new_password},
        headers=bearer(viewer),
    )
    assert resp.status == 200, await resp.text()
    await ws.send_json({"type": "ping"})
    assert (await ws.receive_json(timeout=5))["type"] == "pong"
    await ws.close()
