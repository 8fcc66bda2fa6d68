"""API2 broken authentication: a signed token is honoured only for a real subject
(issue 8, finding 1 d).

The attack: with the signing key read out of the store, an operator signed a
token with ``roles: ["admin"]`` for a subject that does not exist; both services
accepted it, it created a new admin, and the audit log named the invented user.
Here every token is signed with the services' real signing key, as the attacker's
was: only the subject check stands between it and the API.
"""

from __future__ import annotations

import json

import aiohttp
import pytest

from shared.errors import Unauthorized
from shared.security.backend import SECURITY, Security
from tests.helpers.services import Services, bearer

GHOST_ID = "0123456789abcdef0123456789abcdef"
GHOST_NAME = "ghost-admin"


def forge(services: Services, user_id: str, username: str, roles: list[str]) -> str:
    """A token signed with the real key, as someone holding it would mint one (no session)."""
    issued = services.cc.app[SECURITY].tokens.issue(
        user_id=user_id, username=username, roles=roles, amr=["pwd", "otp"], session_id=None
    )
    services.secrets.add(issued.token)
    return issued.token


async def statuses(services: Services, token: str) -> tuple[int, int]:
    """What the orchestrator (``GET /tasks``) and the control center (``GET /users/me``) say."""
    orch = await services.orch.get("/tasks", headers=bearer(token))
    cc = await services.cc.get("/users/me", headers=bearer(token))
    return orch.status, cc.status


async def refused_by_both(services: Services, token: str) -> None:
    for client, path in ((services.orch, "/tasks"), (services.cc, "/users/me"), (services.cc, "/users")):
        resp = await client.get(path, headers=bearer(token))
        doc = await resp.json()
        assert resp.status == 401, (path, doc)
        assert doc["code"] == "unauthorized"
        assert "does not exist, is disabled or does not hold the roles" in doc["error"]


async def audit_text(services: Services, admin_token: str) -> str:
    resp = await services.cc.get("/audit/logs?limit=1000", headers=bearer(admin_token))
    assert resp.status == 200
    return json.dumps((await resp.json())["data"])


async def test_a_token_for_a_user_that_does_not_exist_is_refused(services: Services) -> None:
    admin_token = await services.admin()
    ghost = forge(services, GHOST_ID, GHOST_NAME, ["admin"])
    await refused_by_both(services, ghost)
    # The attack's payload: make a new admin.
    resp = await services.cc.post(
        "/users",
        headers=bearer(ghost),
        json={"username": "eve", "password": "eve-password-long-enough", "roles": ["admin"]},
    )
    assert resp.status == 401
    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        await services.orch.ws_connect(f"/ws?token={ghost}")
    assert err.value.status == 401
    users = await services.cc.get("/users", headers=bearer(admin_token))
    assert [u["username"] for u in (await users.json())["data"]] == ["admin"]
    # Nothing is recorded as done by the invented user.
    recorded = await audit_text(services, admin_token)
    assert GHOST_NAME not in recorded and GHOST_ID not in recorded


async def test_a_token_for_a_disabled_user_is_refused(services: Services) -> None:
    admin_token = await services.admin()
    user_id, _ = await services.user("vic", "viewer", admin_token=admin_token)
    token = forge(services, user_id, "vic", ["viewer"])
    assert await statuses(services, token) == (200, 200)  # a real, enabled viewer: honoured
    resp = await services.cc.put(f"/users/{user_id}", headers=bearer(admin_token), json={"enabled": False})
    assert resp.status == 200
    await refused_by_both(services, token)  # at once: the user service dropped the cached user
    await refused_by_both(services, forge(services, user_id, "vic", ["viewer"]))


async def test_a_viewer_claiming_admin_is_refused(services: Services) -> None:
    admin_token = await services.admin()
    user_id, _ = await services.user("vera", "viewer", admin_token=admin_token)
    await refused_by_both(services, forge(services, user_id, "vera", ["admin"]))
    await refused_by_both(services, forge(services, user_id, "vera", ["viewer", "admin"]))
    resp = await services.cc.post(
        "/users",
        headers=bearer(forge(services, user_id, "vera", ["admin"])),
        json={"username": "eve", "password": "eve-password-long-enough", "roles": ["admin"]},
    )
    assert resp.status == 401


async def test_a_real_subject_under_another_name_is_refused(services: Services) -> None:
    """The audit log names the token's username: it must be the subject's own."""
    admin_token = await services.admin()
    user_id, _ = await services.user("walt", "viewer", admin_token=admin_token)
    await refused_by_both(services, forge(services, user_id, "admin", ["viewer"]))


async def test_losing_a_role_or_the_account_takes_effect_at_once(services: Services) -> None:
    admin_token = await services.admin()
    user_id, _ = await services.user("olga", "viewer", "developer", admin_token=admin_token)
    token = forge(services, user_id, "olga", ["developer"])
    assert await statuses(services, token) == (200, 200)
    resp = await services.cc.put(f"/users/{user_id}", headers=bearer(admin_token), json={"roles": ["viewer"]})
    assert resp.status == 200
    await refused_by_both(services, token)
    viewer = forge(services, user_id, "olga", ["viewer"])
    assert await statuses(services, viewer) == (200, 200)
    resp = await services.cc.delete(f"/users/{user_id}", headers=bearer(admin_token))
    assert resp.status == 200
    await refused_by_both(services, viewer)


async def test_a_process_sharing_only_the_database_sees_the_change_at_its_next_sync(
    services: Services,
) -> None:
    admin_token = await services.admin()
    user_id, _ = await services.user("pia", "viewer", admin_token=admin_token)
    token = forge(services, user_id, "pia", ["viewer"])
    other = Security(services.cc.app[SECURITY].settings)  # another process's security
    await other.start(services.store)
    try:
        assert (await other.tokens.verify(token)).username == "pia"
        resp = await services.cc.put(
            f"/users/{user_id}", headers=bearer(admin_token), json={"enabled": False}
        )
        assert resp.status == 200
        await other.sync()  # what its auth_sync_s loop runs
        with pytest.raises(Unauthorized, match="does not exist, is disabled"):
            await other.tokens.verify(token)
    finally:
        await other.stop()


async def test_tokens_of_real_logins_are_unaffected(services: Services) -> None:
    admin_token = await services.admin()
    _, viewer_token = await services.user("uma", "viewer", admin_token=admin_token)
    assert await statuses(services, viewer_token) == (200, 200)
    resp = await services.cc.get("/users", headers=bearer(admin_token))
    assert resp.status == 200
