"""The login journey of issue 3 through real HTTP on the real store: MFA enrolment,
TOTP and backup codes, refusals that do not tell, lockout and the auth rate limit."""

from __future__ import annotations

import pyotp
import pytest

from tests.helpers.services import ADMIN_PASSWORD, USER_PASSWORD, Services, bearer


async def test_full_login_journey_for_admin(services: Services) -> None:
    # 2. an admin must use MFA and has none yet: a setup token, good only for enrolment
    status, doc = await services.login("admin", ADMIN_PASSWORD)
    assert status == 200, doc
    assert doc["success"] is True
    data = doc["data"]
    assert data["mfa_setup_required"] is True
    assert "token" not in data
    setup = data["setup_token"]
    resp = await services.orch.get("/tasks", headers=bearer(setup))
    assert resp.status == 403
    assert "MFA enrolment" in (await resp.json())["error"]
    resp = await services.cc.get("/users", headers=bearer(setup))
    assert resp.status == 403

    # 3. enrol: secret, otpauth URI and a QR code; a first code enables it
    resp = await services.cc.post("/auth/mfa/setup", json={"password": ADMIN_PASSWORD}, headers=bearer(setup))
    assert resp.status == 200
    enrolment = (await resp.json())["data"]
    services.secrets.add(enrolment["secret"])
    assert enrolment["otpauth_uri"].startswith("otpauth://totp/")
    assert f"secret={enrolment['secret']}" in enrolment["otpauth_uri"]
    assert enrolment["qr_svg"].startswith("<svg")
    services.totp_secrets["admin"] = enrolment["secret"]
    resp = await services.cc.post(
        "/auth/mfa/enable", json={"password": ADMIN_PASSWORD, "code": "000000"}, headers=bearer(setup)
    )
    assert resp.status == 422
    resp = await services.cc.post(
        "/auth/mfa/enable",
        json={"password": ADMIN_PASSWORD, "code": services.code("admin")},
        headers=bearer(setup),
    )
    assert resp.status == 200, await resp.text()
    codes = (await resp.json())["data"]["backup_codes"]
    services.secrets.add(codes)
    assert len(codes) == 10 and len(set(codes)) == 10
    # the setup token was spent by the enrolment
    resp = await services.cc.post("/auth/mfa/setup", json={"password": ADMIN_PASSWORD}, headers=bearer(setup))
    assert resp.status == 401

    # 4. password alone is not enough any more; with a code: the seed's shape + refresh
    status, doc = await services.login("admin", ADMIN_PASSWORD)
    assert status == 401 and doc["code"] == "mfa_required"
    status, doc = await services.login("admin", ADMIN_PASSWORD, services.code("admin"))
    assert status == 200, doc
    data = doc["data"]
    assert set(data) >= {"token", "expires_at", "refresh_token", "user"}
    assert data["expires_at"].endswith("Z")
    assert data["user"]["username"] == "admin"
    assert data["user"]["roles"] == ["admin"]
    assert set(data["user"]) == {"id", "username", "email", "roles"}

    # 5. the token works on both services; without one, 401
    token = data["token"]
    resp = await services.orch.get("/tasks", headers=bearer(token))
    assert resp.status == 200
    resp = await services.cc.get("/users", headers=bearer(token))
    assert resp.status == 200
    resp = await services.orch.get("/tasks")
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    resp = await services.cc.get("/users")
    assert resp.status == 401
    resp = await services.cc.get("/users/me", headers=bearer(token))
    me = (await resp.json())["data"]
    assert me["mfa_enabled"] is True and me["backup_codes_left"] == 10


async def test_totp_code_is_refused_the_second_time(services: Services) -> None:
    await services.token("admin", ADMIN_PASSWORD)
    code = services.code("admin")
    status, _ = await services.login("admin", ADMIN_PASSWORD, code)
    assert status == 200
    status, doc = await services.login("admin", ADMIN_PASSWORD, code)
    assert status == 401
    assert doc["error"] == "invalid username, password or MFA code"
    # an older code of the window is refused too once a later one was used
    older = pyotp.TOTP(services.totp_secrets["admin"]).at(services.clock.now - 30)
    status, _ = await services.login("admin", ADMIN_PASSWORD, older)
    assert status == 401
    status, _ = await services.login("admin", ADMIN_PASSWORD, services.code("admin"))
    assert status == 200


async def test_codes_outside_the_window_are_refused(services: Services) -> None:
    await services.token("admin", ADMIN_PASSWORD)
    totp = pyotp.TOTP(services.totp_secrets["admin"])
    services.clock.step(5)
    for offset in (-90, 90):
        code = totp.at(services.clock.now + offset)
        services.secrets.add(code)
        status, _ = await services.login("admin", ADMIN_PASSWORD, code)
        assert status == 401
    drift = totp.at(services.clock.now + 30)  # one step ahead is accepted
    services.secrets.add(drift)
    status, _ = await services.login("admin", ADMIN_PASSWORD, drift)
    assert status == 200


async def test_backup_code_works_once(services: Services) -> None:
    codes = await services.enrol("admin", ADMIN_PASSWORD)
    status, doc = await services.login("admin", ADMIN_PASSWORD, codes[3])
    assert status == 200, doc
    assert doc["data"]["token"]
    status, _ = await services.login("admin", ADMIN_PASSWORD, codes[3])
    assert status == 401
    # formatting does not matter, reuse does
    status, _ = await services.login("admin", ADMIN_PASSWORD, codes[4].upper().replace("-", ""))
    assert status == 200
    token = (await services.token("admin", ADMIN_PASSWORD))["token"]
    resp = await services.cc.get("/users/me", headers=bearer(token))
    assert (await resp.json())["data"]["backup_codes_left"] == 8


async def test_regenerated_backup_codes_replace_the_old_ones(services: Services) -> None:
    old = await services.enrol("admin", ADMIN_PASSWORD)
    token = (await services.token("admin", ADMIN_PASSWORD))["token"]
    resp = await services.cc.post(
        "/auth/mfa/backup-codes",
        json={"password": ADMIN_PASSWORD, "code": services.code("admin")},
        headers=bearer(token),
    )
    assert resp.status == 200, await resp.text()
    new = (await resp.json())["data"]["backup_codes"]
    services.secrets.add(new)
    assert len(new) == 10 and not set(new) & set(old)
    status, _ = await services.login("admin", ADMIN_PASSWORD, old[0])
    assert status == 401
    status, _ = await services.login("admin", ADMIN_PASSWORD, new[0])
    assert status == 200


async def test_disable_mfa_needs_password_and_code(services: Services) -> None:
    admin = await services.admin()
    _, token = await services.user("dev", "developer", admin_token=admin)
    # a developer need not use MFA, but may enrol from a normal session
    resp = await services.cc.post("/auth/mfa/setup", json={"password": USER_PASSWORD}, headers=bearer(token))
    enrolment = (await resp.json())["data"]
    services.totp_secrets["dev"] = enrolment["secret"]
    services.secrets.add(enrolment["secret"])
    resp = await services.cc.post(
        "/auth/mfa/enable",
        json={"password": USER_PASSWORD, "code": services.code("dev")},
        headers=bearer(token),
    )
    assert resp.status == 200
    services.secrets.add((await resp.json())["data"]["backup_codes"])
    status, doc = await services.login("dev", USER_PASSWORD)
    assert status == 401 and doc["code"] == "mfa_required"
    resp = await services.cc.post(
        "/auth/mfa/disable",
        headers=bearer(token),
        json={"password": "not-the-password", "code": services.code("dev")},
    )
    assert resp.status == 401
    resp = await services.cc.post(
        "/auth/mfa/disable",
        headers=bearer(token),
        json={"password": USER_PASSWORD, "code": services.code("dev")},
    )
    assert resp.status == 200, await resp.text()
    status, doc = await services.login("dev", USER_PASSWORD)
    assert status == 200 and doc["data"]["token"]


async def test_refusals_do_not_tell_whether_the_user_exists(services: Services) -> None:
    admin = await services.admin()
    _, _ = await services.user("viewer1", "viewer", admin_token=admin)
    unknown = await services.login("nobody", USER_PASSWORD)
    wrong = await services.login("viewer1", "wrong-password-123")
    assert unknown[0] == wrong[0] == 401
    assert unknown[1] == wrong[1]
    resp = await services.cc.put(
        f"/users/{(await _user_id(services, admin, 'viewer1'))}",
        json={"enabled": False},
        headers=bearer(admin),
    )
    assert resp.status == 200
    disabled = await services.login("viewer1", USER_PASSWORD)
    assert disabled == unknown


async def _user_id(services: Services, admin: str, username: str) -> str:
    resp = await services.cc.get("/users", headers=bearer(admin))
    users = (await resp.json())["data"]
    return str(next(u["id"] for u in users if u["username"] == username))


@pytest.mark.parametrize("settings_overrides", [{"lockout_threshold": 3, "lockout_s": 0.5}])
async def test_lockout_after_consecutive_failures(services: Services) -> None:
    import asyncio

    admin = await services.admin()
    await services.user("ops", "viewer", admin_token=admin)
    for _ in range(3):
        status, _ = await services.login("ops", "wrong-password-123")
        assert status == 401
    # locked (for this address): even the right password is refused, with the same answer
    status, doc = await services.login("ops", USER_PASSWORD)
    assert status == 401
    assert doc["error"] == "invalid username, password or MFA code"
    resp = await services.cc.get("/users", params={"role": "viewer"}, headers=bearer(admin))
    ops = (await resp.json())["data"][0]
    resp = await services.cc.get("/audit/logs", params={"action": "auth.lockout"}, headers=bearer(admin))
    [event] = (await resp.json())["data"]
    assert event["user_id"] == ops["id"] and event["details"]["failures"] == 3
    assert event["details"]["scope"] == "address"
    await asyncio.sleep(0.6)
    status, _ = await services.login("ops", USER_PASSWORD)
    assert status == 200


@pytest.mark.parametrize("settings_overrides", [{"rate_limit_auth": "4/minute"}])
async def test_auth_rate_limit_per_address(services: Services) -> None:
    statuses = []
    for _ in range(5):
        resp = await services.cc.post("/auth/login", json={"username": "x", "password": "y"})
        statuses.append(resp.status)
        if resp.status == 401:
            assert resp.headers["X-RateLimit-Limit"] == "4"
    assert statuses == [401, 401, 401, 401, 429]
    doc = await resp.json()
    assert doc["success"] is False and doc["code"] == "rate_limited"
    assert resp.headers["X-RateLimit-Remaining"] == "0"
    assert int(resp.headers["Retry-After"]) >= 1
    assert int(resp.headers["X-RateLimit-Reset"]) > 1_000_000_000
    # other routes are not counted against it
    resp = await services.cc.get("/health")
    assert resp.status == 200


async def test_the_log_guard_sees_the_services_logs(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    # the autouse guard checks every captured line for secrets; make sure there are lines
    await services.token("admin", ADMIN_PASSWORD)
    await services.login("admin", "wrong-password-123")
    names = {r.name for r in caplog.get_records("setup") + caplog.get_records("call")}
    assert {
        "shared.store.schema",
        "shared.security.tokens",
        "shared.security.policy",
        "aiohttp.access",
    } <= names
