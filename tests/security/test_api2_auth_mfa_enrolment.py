"""API2 broken authentication: a stolen access token must not change the second factor.

Issue 8, finding 5: ``POST /auth/mfa/setup`` then ``/auth/mfa/enable`` with only a
viewer's access token enrolled the attacker's authenticator and locked the owner
out. Now every MFA change needs the password in the same request (and a current
code where MFA is on), and an account that must use MFA enrols only with the
setup token of a fresh password login. The QR code is scannable on a dark page.
"""

from __future__ import annotations

import re
from typing import Any

import pyotp
import segno

from control_center.keys import USERS
from shared.security.backend import SECURITY
from tests.helpers.services import ADMIN_PASSWORD, USER_PASSWORD, Services, bearer

ATTACKER_GUESS = "not-the-owners-password"


async def _post(services: Services, path: str, token: str, body: dict[str, Any] | None) -> tuple[int, Any]:
    resp = await services.cc.post(path, json=body, headers=bearer(token))
    return resp.status, await resp.json()


async def test_a_stolen_viewer_token_cannot_enrol_an_authenticator(services: Services) -> None:
    admin = await services.admin()
    _, stolen = await services.user("viewer1", "viewer", admin_token=admin)
    # the old attack: setup then enable with the token alone
    status, doc = await _post(services, "/auth/mfa/setup", stolen, None)
    assert status == 422, doc
    assert any(f["field"] == "password" for f in doc["details"]["fields"])
    status, doc = await _post(services, "/auth/mfa/setup", stolen, {})
    assert status == 422, doc
    status, doc = await _post(services, "/auth/mfa/setup", stolen, {"password": ATTACKER_GUESS})
    assert status == 401, doc
    status, doc = await _post(
        services, "/auth/mfa/enable", stolen, {"password": ATTACKER_GUESS, "code": "123456"}
    )
    assert status == 401, doc
    # nothing changed: the owner still logs in with the password alone, no MFA pending
    user = await services.cc.app[USERS].find("viewer1")
    assert user is not None and not user.mfa_enabled and user.mfa_pending_secret is None
    status, doc = await services.login("viewer1", USER_PASSWORD)
    assert status == 200 and doc["data"]["token"]
    # the attempts were audited as failed re-authentications
    resp = await services.cc.get(
        "/audit/logs", params={"action": "auth.reauthenticate"}, headers=bearer(admin)
    )
    records = (await resp.json())["data"]
    assert len(records) == 2 and {r["result"] for r in records} == {"failure"}


async def test_a_stolen_token_cannot_disable_mfa_or_take_new_backup_codes(services: Services) -> None:
    admin = await services.admin()
    _, owner = await services.user("viewer1", "viewer", admin_token=admin)
    # the owner enrols (a viewer may, from a normal session, with the password)
    await services.enrol_with("viewer1", USER_PASSWORD, owner)
    stolen = (await services.token("viewer1", USER_PASSWORD))["token"]
    # the thief has the token, not the password nor the device
    for path in ("/auth/mfa/disable", "/auth/mfa/backup-codes"):
        status, doc = await _post(services, path, stolen, {"code": "123456"})
        assert status == 422, doc  # the password is required
        status, doc = await _post(services, path, stolen, {"password": ATTACKER_GUESS, "code": "123456"})
        assert status == 401, doc
        # the password alone is not enough either
        status, doc = await _post(services, path, stolen, {"password": USER_PASSWORD, "code": "000000"})
        assert status == 401, doc
    user = await services.cc.app[USERS].find("viewer1")
    assert user is not None and user.mfa_enabled and len(user.backup_codes) == 10
    # with both, the owner can
    status, doc = await _post(
        services,
        "/auth/mfa/backup-codes",
        stolen,
        {"password": USER_PASSWORD, "code": services.code("viewer1")},
    )
    assert status == 200, doc
    services.secrets.add(doc["data"]["backup_codes"])


async def test_a_required_role_enrols_only_with_a_fresh_logins_setup_token(services: Services) -> None:
    admin = await services.admin()
    resp = await services.cc.post(
        "/users",
        headers=bearer(admin),
        json={"username": "op1", "password": USER_PASSWORD, "roles": ["operator"]},
    )
    assert resp.status == 201
    op = await services.cc.app[USERS].find("op1")
    assert op is not None
    # an operator has no access token before enrolling; one signed anyway (stolen from
    # a time before the role required MFA, say) does not enrol, even with the password
    token = (
        services.cc.app[SECURITY]
        .tokens.issue(user_id=op.id, username=op.username, roles=op.roles, amr=["pwd"], session_id=None)
        .token
    )
    services.secrets.add(token)
    status, doc = await _post(services, "/auth/mfa/setup", token, {"password": USER_PASSWORD})
    assert status == 403, doc
    assert doc["details"]["mfa_setup_required"] is True
    status, doc = await _post(services, "/auth/mfa/enable", token, {"password": USER_PASSWORD, "code": "1"})
    assert status == 403, doc
    # the setup token of a fresh password login works (with the password again)
    status, doc = await services.login("op1", USER_PASSWORD)
    setup = doc["data"]["setup_token"]
    status, doc = await _post(services, "/auth/mfa/setup", setup, {"password": ATTACKER_GUESS})
    assert status == 401, doc
    await services.enrol_with("op1", USER_PASSWORD, setup)
    status, doc = await services.login("op1", USER_PASSWORD, services.code("op1"))
    assert status == 200 and doc["data"]["token"]


async def test_the_mfa_qr_code_has_a_white_background_and_a_4_module_quiet_zone(
    services: Services,
) -> None:
    status, doc = await services.login("admin", ADMIN_PASSWORD)
    setup = doc["data"]["setup_token"]
    status, doc = await _post(services, "/auth/mfa/setup", setup, {"password": ADMIN_PASSWORD})
    assert status == 200, doc
    services.secrets.add(doc["data"]["secret"])
    svg = doc["data"]["qr_svg"]
    modules = segno.make(doc["data"]["otpauth_uri"], error="m").symbol_size(scale=1, border=0)[0]
    width = int(re.search(r'width="(\d+)"', svg).group(1))  # type: ignore[union-attr]
    scale = int(re.search(r"scale\((\d+)\)", svg).group(1))  # type: ignore[union-attr]
    side = width // scale
    assert side - modules == 2 * 4  # a quiet zone of 4 modules on each side
    # an opaque white square under the whole symbol, quiet zone included
    assert re.search(rf'<path fill="(#fff|#ffffff|white)" d="M0 0h{side}v{side}h-{side}z"', svg), svg[:300]
    # and the first dark module starts 4 modules in
    assert re.search(r'stroke="#000" d="M4 4\.5', svg), svg[:300]
    assert pyotp.parse_uri(doc["data"]["otpauth_uri"]).secret == doc["data"]["secret"]
