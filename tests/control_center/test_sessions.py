"""Sessions: refresh token rotation, reuse detection, refresh with the access token
(the seed's form), and logout."""

from __future__ import annotations

import jwt

from tests.helpers.services import ADMIN_PASSWORD, USER_PASSWORD, Services, bearer


async def test_refresh_rotates_the_refresh_token(services: Services) -> None:
    data = await services.token("admin", ADMIN_PASSWORD)
    status, doc = await services.refresh(refresh_token=data["refresh_token"])
    assert status == 200, doc
    new = doc["data"]
    assert new["token"] != data["token"]
    assert new["refresh_token"] != data["refresh_token"]
    assert new["expires_at"].endswith("Z")
    old_claims = jwt.decode(data["token"], options={"verify_signature": False})
    new_claims = jwt.decode(new["token"], options={"verify_signature": False})
    assert new_claims["sid"] == old_claims["sid"]
    assert new_claims["amr"] == ["pwd", "otp"]
    resp = await services.orch.get("/tasks", headers=bearer(new["token"]))
    assert resp.status == 200
    # and again with the one just issued
    status, doc = await services.refresh(refresh_token=new["refresh_token"])
    assert status == 200
    # refresh tokens are stored only as hashes
    rows = await services.store.query("SELECT * FROM refresh_token")
    stored = repr(rows)
    assert data["refresh_token"] not in stored and doc["data"]["refresh_token"] not in stored


async def test_reusing_a_spent_refresh_token_revokes_the_session(services: Services) -> None:
    data = await services.token("admin", ADMIN_PASSWORD)
    status, doc = await services.refresh(refresh_token=data["refresh_token"])
    assert status == 200
    current = doc["data"]
    # someone replays the spent one
    status, doc = await services.refresh(refresh_token=data["refresh_token"])
    assert status == 401
    assert doc["code"] == "refresh_token_reused"
    # the whole session is gone: the latest refresh token and every access token
    status, _ = await services.refresh(refresh_token=current["refresh_token"])
    assert status == 401
    for token in (data["token"], current["token"]):
        resp = await services.orch.get("/tasks", headers=bearer(token))
        assert resp.status == 401
        resp = await services.cc.get("/users/me", headers=bearer(token))
        assert resp.status == 401
    # a new login still works, and the reuse was audited
    fresh = (await services.token("admin", ADMIN_PASSWORD))["token"]
    resp = await services.cc.get(
        "/audit/logs", params={"action": "auth.refresh_token_reused"}, headers=bearer(fresh)
    )
    [event] = (await resp.json())["data"]
    assert event["result"] == "denied"


async def test_refresh_with_the_current_access_token(services: Services) -> None:
    data = await services.token("admin", ADMIN_PASSWORD)
    status, doc = await services.refresh(token=data["token"])
    assert status == 200, doc
    assert set(doc["data"]) == {"token", "expires_at"}
    new = doc["data"]["token"]
    resp = await services.orch.get("/tasks", headers=bearer(new))
    assert resp.status == 200
    # the presented token was replaced
    resp = await services.orch.get("/tasks", headers=bearer(data["token"]))
    assert resp.status == 401
    status, _ = await services.refresh(token=data["token"])
    assert status == 401


async def test_refresh_refuses_what_it_should(services: Services) -> None:
    status, doc = await services.login("admin", ADMIN_PASSWORD)
    setup = doc["data"]["setup_token"]
    status, _ = await services.refresh(token=setup)
    assert status == 401
    status, _ = await services.refresh(refresh_token="made-up-refresh-token")
    assert status == 401
    resp = await services.cc.post("/auth/refresh", json={})
    assert resp.status == 422
    resp = await services.cc.post("/auth/refresh", json={"token": "a", "refresh_token": "b"})
    assert resp.status == 422


async def test_logout_ends_the_session(services: Services) -> None:
    admin = await services.admin()
    await services.user("viewer1", "viewer", admin_token=admin)
    first = await services.token("viewer1", USER_PASSWORD)
    second = await services.token("viewer1", USER_PASSWORD)
    resp = await services.cc.post("/auth/logout", headers=bearer(first["token"]))
    assert resp.status == 200
    status, _ = await services.refresh(refresh_token=first["refresh_token"])
    assert status == 401
    resp = await services.orch.get("/tasks", headers=bearer(first["token"]))
    assert resp.status == 401
    # another session of the same user is not affected
    resp = await services.orch.get("/tasks", headers=bearer(second["token"]))
    assert resp.status == 200
    resp = await services.cc.post("/auth/logout")
    assert resp.status == 401
