"""``/auth/tokens``: API tokens created, used on both services and the streams, listed,
revoked (refused at once), expired, narrowed by scopes, and only from an MFA session
where the role requires one."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp import WSMsgType

from shared.security.api_tokens import USE_ACTION
from shared.security.backend import SECURITY
from tests.helpers.api_tokens import create_token
from tests.helpers.batches import batch, op
from tests.helpers.services import Services, bearer


async def status_of(client: Any, method: str, path: str, token: str, **kw: Any) -> int:
    resp = await client.request(method, path, headers=bearer(token), **kw)
    await resp.read()
    return int(resp.status)


async def test_create_use_on_both_services_and_list(services: Services) -> None:
    admin = await services.admin()
    token, record = await create_token(services, admin, name="ci pipeline", days=7)
    assert token.startswith(record["prefix"] + "_") and record["prefix"] == f"pvt_{record['id']}"
    assert record["active"] is True and record["scopes"] is None and record["username"] == "admin"

    resp = await services.cc.get("/users/me", headers=bearer(token))
    assert resp.status == 200 and (await resp.json())["data"]["username"] == "admin"
    assert await status_of(services.orch, "GET", "/tasks", token) == 200

    resp = await services.cc.get("/auth/tokens", headers=bearer(admin))
    doc = await resp.json()
    assert resp.status == 200 and resp.headers["X-Total-Count"] == "1"
    listed = doc["data"][0]
    assert listed["id"] == record["id"] and "token" not in listed and "hash" not in listed
    assert token not in json.dumps(doc)


async def test_every_use_is_audited_and_counted(services: Services) -> None:
    admin = await services.admin()
    token, record = await create_token(services, admin)
    for _ in range(3):
        assert await status_of(services.orch, "GET", "/tasks", token) == 200
    security = services.cc.app[SECURITY]
    await security.token_uses.flush(everything=True)
    rows = (await security.audit.search({"action": USE_ACTION}, 50, 0)).items
    assert sum(r["details"]["count"] for r in rows) == 3
    assert {r["username"] for r in rows} == {"admin"}
    assert all(r["details"]["key_prefix"] == record["prefix"] for r in rows)
    resp = await services.cc.get("/auth/tokens", headers=bearer(admin))
    assert (await resp.json())["data"][0]["uses"] == 3


async def test_revocation_is_refused_at_once_by_both(services: Services) -> None:
    admin = await services.admin()
    token, record = await create_token(services, admin)
    assert await status_of(services.orch, "GET", "/tasks", token) == 200  # cached now
    resp = await services.cc.delete(f"/auth/tokens/{record['id']}", headers=bearer(admin))
    doc = await resp.json()
    assert resp.status == 200 and doc["data"]["active"] is False and doc["data"]["revoked_at"]
    for client, path in ((services.orch, "/tasks"), (services.cc, "/users/me")):
        resp = await client.get(path, headers=bearer(token))
        assert resp.status == 401
        assert "revoked" in (await resp.json())["error"]
    resp = await services.cc.delete(f"/auth/tokens/{record['id']}", headers=bearer(admin))
    assert resp.status == 409


async def test_expired_token_is_refused(services: Services) -> None:
    admin = await services.admin()
    token, _ = await create_token(services, admin, days=1)
    assert await status_of(services.orch, "GET", "/tasks", token) == 200
    api_tokens = services.cc.app[SECURITY].api_tokens
    real = api_tokens.clock
    api_tokens.clock = lambda: real() + 2 * 86_400
    try:
        resp = await services.orch.get("/tasks", headers=bearer(token))
        assert resp.status == 401 and "expired" in (await resp.json())["error"]
    finally:
        api_tokens.clock = real


async def test_scopes_narrow_a_token(services: Services) -> None:
    _, operator = await services.user("olga", "operator")
    token, record = await create_token(services, operator, scopes=["batch:read"])
    assert record["scopes"] == ["batch:read"]
    assert await status_of(services.orch, "GET", "/batch/operations", token) == 200
    assert await status_of(services.orch, "GET", "/tasks", token) == 403
    body = batch(op("a"))
    assert await status_of(services.orch, "POST", "/batch/execute", token, json=body) == 403
    # the same user's session may do both
    assert await status_of(services.orch, "GET", "/tasks", operator) == 200


async def test_a_scope_beyond_the_users_rights_is_refused(services: Services) -> None:
    _, viewer = await services.user("vera", "viewer")
    resp = await services.cc.post(
        "/auth/tokens",
        json={"name": "x", "expires_in_days": 1, "scopes": ["batch:read", "batch:execute"]},
        headers=bearer(viewer),
    )
    doc = await resp.json()
    assert resp.status == 422, doc
    assert [f["field"] for f in doc["details"]["fields"]] == ["scopes.1"]


@pytest.mark.parametrize(
    "body, field",
    [
        ({"name": "", "expires_in_days": 1}, "name"),
        ({"name": "x", "expires_in_days": 0}, "expires_in_days"),
        ({"name": "x", "expires_in_days": 366}, "expires_in_days"),
        ({"name": "x", "expires_in_days": 1, "scopes": ["batch"]}, "scopes.0"),
        ({"name": "x\u0000y", "expires_in_days": 1}, "name"),
        ({"name": "x", "expires_in_days": 1, "extra": 1}, "extra"),
    ],
)
async def test_bad_requests_name_the_field(services: Services, body: dict[str, Any], field: str) -> None:
    admin = await services.admin()
    resp = await services.cc.post("/auth/tokens", json=body, headers=bearer(admin))
    doc = await resp.json()
    assert resp.status in (400, 422), doc
    assert field in json.dumps(doc), doc


async def test_creating_needs_an_mfa_session_when_the_role_requires_it(services: Services) -> None:
    security = services.cc.app[SECURITY]
    me = await (await services.cc.get("/users/me", headers=bearer(await services.admin()))).json()
    # a session opened with the password alone (as before enrolment) may not mint a token
    issued = security.tokens.issue(
        user_id=me["data"]["id"], username="admin", roles=["admin"], amr=["pwd"], session_id="s-no-mfa"
    )
    services.secrets.add(issued.token)
    resp = await services.cc.post(
        "/auth/tokens", json={"name": "x", "expires_in_days": 1}, headers=bearer(issued.token)
    )
    doc = await resp.json()
    assert resp.status == 403 and doc["details"]["reason"] == "mfa_required", doc
    # a viewer's role needs no MFA: a password session is enough
    _, viewer = await services.user("vera", "viewer")
    await create_token(services, viewer)


async def test_a_token_cannot_create_tokens(services: Services) -> None:
    token, _ = await create_token(services, await services.admin())
    resp = await services.cc.post(
        "/auth/tokens", json={"name": "x", "expires_in_days": 1}, headers=bearer(token)
    )
    assert resp.status == 403 and (await resp.json())["details"]["reason"] == "session_required"


async def test_a_disabled_users_tokens_stop_working(services: Services) -> None:
    admin = await services.admin()
    viewer_id, viewer = await services.user("vera", "viewer", admin_token=admin)
    token, _ = await create_token(services, viewer)
    assert await status_of(services.orch, "GET", "/tasks", token) == 200
    resp = await services.cc.put(f"/users/{viewer_id}", json={"enabled": False}, headers=bearer(admin))
    assert resp.status == 200, await resp.text()
    assert await status_of(services.orch, "GET", "/tasks", token) == 401


async def test_owners_and_admins(services: Services) -> None:
    admin = await services.admin()
    _, vera = await services.user("vera", "viewer", admin_token=admin)
    _, olga = await services.user("olga", "operator", admin_token=admin)
    _, vera_token = await create_token(services, vera, name="vera's")
    await create_token(services, olga, name="olga's")
    # another user's token is not found for a non-admin, and not listed
    assert await status_of(services.cc, "DELETE", f"/auth/tokens/{vera_token['id']}", olga) == 404
    assert await status_of(services.cc, "GET", "/auth/tokens?all=true", olga) == 403
    resp = await services.cc.get("/auth/tokens", headers=bearer(olga))
    assert [t["name"] for t in (await resp.json())["data"]] == ["olga's"]
    # an admin lists everyone's, filters by user, and revokes any
    resp = await services.cc.get("/auth/tokens?all=true", headers=bearer(admin))
    assert {t["name"] for t in (await resp.json())["data"]} == {"vera's", "olga's"}
    resp = await services.cc.get(f"/auth/tokens?user_id={vera_token['user_id']}", headers=bearer(admin))
    assert [t["name"] for t in (await resp.json())["data"]] == ["vera's"]
    assert await status_of(services.cc, "DELETE", f"/auth/tokens/{vera_token['id']}", admin) == 200
    resp = await services.cc.get("/auth/tokens?all=true&active=true", headers=bearer(admin))
    assert [t["name"] for t in (await resp.json())["data"]] == ["olga's"]


async def test_tokens_open_the_streams(services: Services) -> None:
    token, record = await create_token(services, await services.admin())
    # SSE with the Authorization header
    resp = await services.orch.get("/events?events=batch", headers=bearer(token))
    assert resp.status == 200
    line = await asyncio.wait_for(resp.content.readline(), 5)
    while not line.startswith(b"data:"):
        line = await asyncio.wait_for(resp.content.readline(), 5)
    assert json.loads(line[5:])["user"] == "admin"
    resp.close()
    # WebSocket: the first message carries the token
    ws = await services.orch.ws_connect("/ws?events=batch")
    await ws.send_json({"type": "auth", "token": token})
    msg = await asyncio.wait_for(ws.receive(), 5)
    assert msg.type == WSMsgType.TEXT and json.loads(msg.data)["type"] == "welcome"
    # revoked: a new stream is refused
    await services.cc.delete(f"/auth/tokens/{record['id']}", headers=bearer(await services.admin()))
    msg = await asyncio.wait_for(ws.receive(), 10)
    assert msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED)
    await ws.close()
    resp = await services.orch.get("/events?events=batch", headers=bearer(token))
    assert resp.status == 401
