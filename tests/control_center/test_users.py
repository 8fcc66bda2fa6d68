"""``/users`` in the seed's shapes, and the rules: password length, unique names, the last
enabled admin, sessions ended by disabling, deleting or re-roling a user, admin MFA reset,
and the first start's admin."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from control_center.app import create_app as create_control_center
from tests.helpers.services import (
    ADMIN_PASSWORD,
    USER_PASSWORD,
    Secrets,
    Services,
    bearer,
    cc_settings,
)


async def json_of(resp: Any, status: int) -> Any:
    doc = await resp.json()
    assert resp.status == status, doc
    return doc


async def test_create_list_update_delete_in_the_seed_shapes(services: Services) -> None:
    admin = await services.admin()
    resp = await services.cc.post(
        "/users",
        headers=bearer(admin),
        json={
            "username": "newuser",
            "email": "newuser@example.com",
            "password": USER_PASSWORD,
            "roles": ["operator"],
            "enabled": True,
        },
    )
    doc = await json_of(resp, 201)
    created = doc["data"]
    assert set(created) == {"id", "username", "email", "roles", "enabled"}
    assert created["roles"] == ["operator"] and created["enabled"] is True
    assert "password" not in repr(doc) and "hash" not in repr(doc)
    uid = created["id"]

    resp = await services.cc.get("/users", headers=bearer(admin))
    doc = await json_of(resp, 200)
    assert resp.headers["X-Total-Count"] == "2"
    row = next(u for u in doc["data"] if u["id"] == uid)
    assert {"id", "username", "email", "roles", "enabled", "created_at", "last_login"} <= set(row)
    assert row["last_login"] is None and row["created_at"].endswith("Z")

    resp = await services.cc.put(
        f"/users/{uid}",
        headers=bearer(admin),
        json={"email": "updated@example.com", "roles": ["admin", "operator"], "enabled": False},
    )
    assert (await json_of(resp, 200))["data"] == "User updated successfully"
    resp = await services.cc.get(f"/users/{uid}", headers=bearer(admin))
    row = (await json_of(resp, 200))["data"]
    assert row["email"] == "updated@example.com"
    assert row["roles"] == ["admin", "operator"] and row["enabled"] is False

    resp = await services.cc.delete(f"/users/{uid}", headers=bearer(admin))
    assert (await json_of(resp, 200))["data"] == "User deleted successfully"
    for method in ("get", "put", "delete"):
        kwargs: dict[str, Any] = {"json": {"enabled": True}} if method == "put" else {}
        resp = await getattr(services.cc, method)(f"/users/{uid}", headers=bearer(admin), **kwargs)
        assert resp.status == 404


async def test_filters_and_pagination(services: Services) -> None:
    admin = await services.admin()
    for i, role in enumerate(["viewer", "viewer", "developer", "auditor"]):
        resp = await services.cc.post(
            "/users",
            headers=bearer(admin),
            json={"username": f"u{i}", "password": USER_PASSWORD, "roles": [role], "enabled": i != 1},
        )
        await json_of(resp, 201)
    resp = await services.cc.get("/users", params={"role": "viewer"}, headers=bearer(admin))
    assert [u["username"] for u in (await json_of(resp, 200))["data"]] == ["u0", "u1"]
    resp = await services.cc.get(
        "/users", params={"role": "viewer", "enabled": "false"}, headers=bearer(admin)
    )
    assert [u["username"] for u in (await json_of(resp, 200))["data"]] == ["u1"]
    resp = await services.cc.get("/users", params={"limit": 2, "offset": 1}, headers=bearer(admin))
    doc = await json_of(resp, 200)
    assert [u["username"] for u in doc["data"]] == ["u0", "u1"]
    assert resp.headers["X-Total-Count"] == "5"
    assert 'rel="next"' in resp.headers["Link"] and 'rel="prev"' in resp.headers["Link"]
    resp = await services.cc.get("/users", params={"role": "wizard"}, headers=bearer(admin))
    assert resp.status == 422


async def test_validation_and_conflicts(services: Services) -> None:
    admin = await services.admin()
    resp = await services.cc.post(
        "/users",
        headers=bearer(admin),
        json={"username": "short", "password": "elevenchars", "roles": ["viewer"]},
    )
    doc = await json_of(resp, 422)
    assert doc["details"]["fields"][0]["field"] == "password"
    resp = await services.cc.post(
        "/users",
        headers=bearer(admin),
        json={"username": "x", "password": USER_PASSWORD, "roles": ["emperor"]},
    )
    doc = await json_of(resp, 422)
    assert doc["details"]["fields"][0]["field"].startswith("roles")
    resp = await services.cc.post(
        "/users",
        headers=bearer(admin),
        json={"username": "admin", "password": USER_PASSWORD, "roles": ["viewer"]},
    )
    await json_of(resp, 409)
    resp = await services.cc.post(
        "/users",
        headers=bearer(admin),
        json={"username": "bad name", "password": USER_PASSWORD, "roles": ["viewer"]},
    )
    await json_of(resp, 422)


async def test_the_last_enabled_admin_stays(services: Services) -> None:
    admin = await services.admin()
    resp = await services.cc.get("/users/me", headers=bearer(admin))
    me = (await json_of(resp, 200))["data"]["id"]
    for method, body in (("put", {"roles": ["viewer"]}), ("put", {"enabled": False}), ("delete", None)):
        kwargs = {"json": body} if body else {}
        resp = await getattr(services.cc, method)(f"/users/{me}", headers=bearer(admin), **kwargs)
        doc = await json_of(resp, 409)
        assert "last enabled admin" in doc["error"]
    # with a second admin the first may step down
    resp = await services.cc.post(
        "/users",
        headers=bearer(admin),
        json={"username": "admin2", "password": USER_PASSWORD, "roles": ["admin"]},
    )
    await json_of(resp, 201)
    resp = await services.cc.put(f"/users/{me}", headers=bearer(admin), json={"roles": ["viewer"]})
    await json_of(resp, 200)


async def test_disabling_or_deleting_a_user_ends_their_sessions(services: Services) -> None:
    admin = await services.admin()
    uid, token = await services.user("viewer1", "viewer", admin_token=admin)
    uid2, token2 = await services.user("viewer2", "viewer", admin_token=admin)
    for t in (token, token2):
        resp = await services.orch.get("/tasks", headers=bearer(t))
        assert resp.status == 200
    resp = await services.cc.put(f"/users/{uid}", headers=bearer(admin), json={"enabled": False})
    await json_of(resp, 200)
    resp = await services.cc.delete(f"/users/{uid2}", headers=bearer(admin))
    await json_of(resp, 200)
    for t in (token, token2):
        resp = await services.orch.get("/tasks", headers=bearer(t))
        assert resp.status == 401
        resp = await services.cc.get("/users/me", headers=bearer(t))
        assert resp.status == 401


async def test_role_change_ends_sessions_and_takes_effect_at_next_login(services: Services) -> None:
    admin = await services.admin()
    uid, token = await services.user("dev", "developer", admin_token=admin)
    resp = await services.cc.put(f"/users/{uid}", headers=bearer(admin), json={"roles": ["auditor"]})
    await json_of(resp, 200)
    resp = await services.cc.get("/audit/logs", headers=bearer(token))
    assert resp.status == 401
    token = (await services.token("dev", USER_PASSWORD))["token"]
    resp = await services.cc.get("/audit/logs", headers=bearer(token))
    assert resp.status == 200


async def test_change_own_password(services: Services) -> None:
    admin = await services.admin()
    _, token = await services.user("viewer1", "viewer", admin_token=admin)
    other = (await services.token("viewer1", USER_PASSWORD))["token"]
    new_password = "a-brand-new-password"
    services.secrets.add(new_password)
    resp = await services.cc.post(
        "/users/me/password",
        headers=bearer(token),
        json={"current_password": "wrong-password-1", "new_password": new_password},
    )
    await json_of(resp, 401)
    resp = await services.cc.post(
        "/users/me/password",
        headers=bearer(token),
        json={"current_password": USER_PASSWORD, "new_password": "short"},
    )
    await json_of(resp, 422)
    resp = await services.cc.post(
        "/users/me/password",
        headers=bearer(token),
        json={"current_password": USER_PASSWORD, "new_password": new_password},
    )
    await json_of(resp, 200)
    # this session goes on, the other one ended
    resp = await services.cc.get("/users/me", headers=bearer(token))
    assert resp.status == 200
    resp = await services.cc.get("/users/me", headers=bearer(other))
    assert resp.status == 401
    status, _ = await services.login("viewer1", USER_PASSWORD)
    assert status == 401
    status, _ = await services.login("viewer1", new_password)
    assert status == 200


async def test_admin_resets_a_users_mfa(services: Services) -> None:
    admin = await services.admin()
    uid, token = await services.user("op", "operator", admin_token=admin)
    resp = await services.cc.post(f"/users/{uid}/mfa/reset", headers=bearer(admin))
    await json_of(resp, 200)
    resp = await services.orch.get("/tasks", headers=bearer(token))
    assert resp.status == 401
    status, doc = await services.login("op", USER_PASSWORD)
    assert status == 200 and doc["data"]["mfa_setup_required"] is True
    resp = await services.cc.get("/audit/logs", params={"action": "users.mfa_reset"}, headers=bearer(admin))
    [event] = (await json_of(resp, 200))["data"]
    assert event["details"]["target_user_id"] == uid
    # not for just anyone
    _, viewer = await services.user("viewer1", "viewer", admin_token=admin)
    resp = await services.cc.post(f"/users/{uid}/mfa/reset", headers=bearer(viewer))
    await json_of(resp, 403)


async def test_first_start_prints_the_generated_admin_password_on_a_terminal(
    aiohttp_client: Any,
    tmp_path: Any,
    capsys: pytest.CaptureFixture[str],
    secrets: Secrets,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # stderr is a terminal (a person started the service): shown there once, no file
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    settings = cc_settings(tmp_path, admin_password="", db_url="mem://")
    client = await aiohttp_client(create_control_center(settings))
    assert not (tmp_path / "initial-admin-password").exists()
    printed = capsys.readouterr().err
    assert "user 'admin' created with password:" in printed
    password = printed.split("password:")[1].split()[0]
    secrets.add(password)
    assert len(password) >= 20
    resp = await client.post("/auth/login", json={"username": "admin", "password": password})
    doc = await resp.json()
    assert resp.status == 200 and doc["data"]["mfa_setup_required"] is True
    secrets.add(doc["data"]["setup_token"])
    assert ADMIN_PASSWORD not in printed
