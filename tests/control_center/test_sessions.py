"""Sessions: refresh token rotation, reuse detection, refresh with the access token
(the seed's form), and logout."""

from __future__ import annotations

from datetime import timedelta

import jwt

from control_center.keys import SESSIONS
from shared.security.repositories import RevocationRepository
from shared.security.tokens import Revocations, utcnow
from shared.store.store import Store
from shared.store.writes import Insert, Write
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


async def expired_and_live(store: Store) -> dict[str, tuple[int, int]]:
    """Rows of each expiring table, (expired, live), by a scan."""
    now = utcnow()
    out = {}
    for table in ("session", "refresh_token", "token_revocation"):
        rows = await store.query(f"SELECT VALUE expires_at FROM {table}")
        out[table] = (sum(1 for e in rows if e <= now), sum(1 for e in rows if e > now))
    return out


async def test_expired_sessions_tokens_and_revocations_are_purged_in_chunks(services: Services) -> None:
    """Purged in the background in chunks (never at start): each chunk a walk of the
    expiry index; what is still usable stays."""
    await services.token("admin", ADMIN_PASSWORD)  # a live session and refresh token
    now = utcnow()
    writes: list[Write] = []
    for i in range(10):
        expires = now + timedelta(days=-1 if i < 7 else 1)
        writes += [
            Insert("session", {"id": f"s{i}", "user_id": "u", "expires_at": expires}),
            Insert("refresh_token", {"id": f"r{i}", "session_id": f"s{i}", "expires_at": expires}),
            Insert("token_revocation", {"jti": f"j{i}", "expires_at": expires, "created_at": now}),
        ]
    await services.store.write(*writes)
    before = await expired_and_live(services.store)
    assert {table: expired for table, (expired, _) in before.items()} == {
        "session": 7,
        "refresh_token": 7,
        "token_revocation": 7,
    }
    assert await services.cc.app[SESSIONS].purge_expired(chunk=3) == 21
    after = await expired_and_live(services.store)
    assert after == {table: (0, live) for table, (_, live) in before.items()}
    assert await services.cc.app[SESSIONS].purge_expired(chunk=3) == 0


async def test_a_start_loads_only_the_revocations_in_force(services: Services) -> None:
    now = utcnow()
    await services.store.write(
        *(
            Insert(
                "token_revocation",
                {"jti": f"j{i}", "expires_at": now + timedelta(hours=h), "created_at": now},
            )
            for i, h in enumerate((-2, -1, 1, 2))
        ),
        Insert(
            "token_revocation", {"sid": "gone", "expires_at": now - timedelta(hours=1), "created_at": now}
        ),
        Insert(
            "token_revocation", {"sid": "kept", "expires_at": now + timedelta(hours=1), "created_at": now}
        ),
    )
    revocations = Revocations()
    await revocations.load(RevocationRepository(services.store))
    assert {"j2", "j3"} <= set(revocations.jtis) and not {"j0", "j1"} & set(revocations.jtis)
    assert "kept" in revocations.sids and "gone" not in revocations.sids
    stored = await services.store.query("SELECT VALUE jti FROM token_revocation WHERE jti != NONE")
    assert {"j0", "j1"} <= set(stored)  # loading deletes nothing: the purge does, later
