"""API6 sensitive business flows: the account lockout could be used to lock anyone out.

Issue 8, finding 8: five bad passwords per 15 minutes from anywhere locked any
account, the only admin too. Now failures lock an account for the address they
came from; all addresses together lock it only at a much higher ceiling; and
the last enabled admin is never locked out from a trusted address (loopback).
Client addresses come from ``X-Forwarded-For`` behind a trusted proxy here.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers.services import ADMIN_PASSWORD, USER_PASSWORD, Services, bearer

ATTACKER = "203.0.113.5"
OWNER = "198.51.100.7"
BEHIND_PROXY = {"trusted_proxies": ("127.0.0.1",), "lockout_threshold": 3, "lockout_account_threshold": 10}


async def login_from(
    services: Services, address: str | None, username: str, password: str, mfa_code: str | None = None
) -> tuple[int, dict[str, Any]]:
    headers = {"X-Forwarded-For": address} if address else {}
    return await services.login(username, password, mfa_code, headers=headers)


@pytest.mark.parametrize("settings_overrides", [BEHIND_PROXY])
async def test_an_attacker_at_one_address_cannot_lock_the_owner_at_another(services: Services) -> None:
    admin = await services.admin()
    await services.user("viewer1", "viewer", admin_token=admin)
    for _ in range(5):
        status, _ = await login_from(services, ATTACKER, "viewer1", "wrong-password-123")
        assert status == 401
    # locked for the attacker's address: the right password is refused there
    status, doc = await login_from(services, ATTACKER, "viewer1", USER_PASSWORD)
    assert status == 401 and doc["error"] == "invalid username, password or MFA code"
    # the owner, elsewhere, is not
    status, doc = await login_from(services, OWNER, "viewer1", USER_PASSWORD)
    assert status == 200 and doc["data"]["token"]
    resp = await services.cc.get("/audit/logs", params={"action": "auth.lockout"}, headers=bearer(admin))
    records = (await resp.json())["data"]
    assert records and {r["details"]["scope"] for r in records} == {"address"}
    assert {r["ip"] for r in records} == {ATTACKER}


@pytest.mark.parametrize("settings_overrides", [BEHIND_PROXY])
async def test_many_addresses_together_lock_the_account_at_the_ceiling(services: Services) -> None:
    admin = await services.admin()
    await services.user("viewer1", "viewer", admin_token=admin)
    for i in range(10):  # ten addresses, one failure each: no address reaches 3
        status, _ = await login_from(services, f"203.0.113.{i + 10}", "viewer1", "wrong-password-123")
        assert status == 401
    status, _ = await login_from(services, OWNER, "viewer1", USER_PASSWORD)
    assert status == 401  # locked everywhere
    resp = await services.cc.get("/audit/logs", params={"action": "auth.lockout"}, headers=bearer(admin))
    [record] = (await resp.json())["data"]
    assert record["details"]["scope"] == "account" and record["details"]["failures"] == 10
    # an admin re-enabling the account lifts every lock
    resp = await services.cc.get("/users", params={"role": "viewer"}, headers=bearer(admin))
    viewer = (await resp.json())["data"][0]
    assert viewer["locked_until"] is not None
    resp = await services.cc.put(f"/users/{viewer['id']}", json={"enabled": True}, headers=bearer(admin))
    assert resp.status == 200
    status, _ = await login_from(services, OWNER, "viewer1", USER_PASSWORD)
    assert status == 200


@pytest.mark.parametrize("settings_overrides", [BEHIND_PROXY])
async def test_the_last_admin_is_never_locked_out_from_a_trusted_address(services: Services) -> None:
    await services.token("admin", ADMIN_PASSWORD)  # enrolled
    # from everywhere, far past both thresholds, loopback included
    for i in range(12):
        status, _ = await login_from(services, f"203.0.113.{i + 10}", "admin", "wrong-password-123")
        assert status == 401
    for _ in range(4):
        status, _ = await login_from(services, None, "admin", "wrong-password-123")
        assert status == 401
    # elsewhere the admin is locked, as anyone would be
    status, _ = await login_from(services, OWNER, "admin", ADMIN_PASSWORD, services.code("admin"))
    assert status == 401
    # from loopback (the host itself) the last admin still gets in
    status, doc = await login_from(services, None, "admin", ADMIN_PASSWORD, services.code("admin"))
    assert status == 200, doc


@pytest.mark.parametrize("settings_overrides", [BEHIND_PROXY])
async def test_a_trusted_address_does_not_shield_other_accounts(services: Services) -> None:
    admin = await services.admin()
    await services.user("viewer1", "viewer", admin_token=admin)
    for _ in range(3):
        status, _ = await login_from(services, None, "viewer1", "wrong-password-123")
        assert status == 401
    status, _ = await login_from(services, None, "viewer1", USER_PASSWORD)
    assert status == 401
