"""The control center's services without HTTP: the app is started (store, security,
services) but never served; tests call the services with an ``Actor`` as a handler
would, and read what they audited."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from control_center.app import create_app
from control_center.keys import LOGIN, MFA, POLICIES, PROFILE, USERS, WEBHOOKS
from control_center.policies import PolicyChanges
from control_center.views import delivery_view, login_view, user_view, webhook_view
from shared.errors import Conflict, Unauthorized
from shared.security.actor import Actor
from shared.security.audit import AUDIT
from shared.security.auth import Principal
from shared.security.policy import Rule
from tests.helpers.services import ADMIN_PASSWORD, USER_PASSWORD, cc_settings

FROM = {"ip": "198.51.100.4", "request_id": "req-42", "service": "control_center", "user_agent": "pytest"}


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[web.Application]:
    """The control center, started (admin bootstrapped, no MFA required) but listening nowhere."""
    application = create_app(cc_settings(tmp_path, mfa_required_roles=()))
    runner = web.AppRunner(application)
    await runner.setup()
    yield application
    await runner.cleanup()


def anonymous() -> Actor:
    return Actor(principal=None, **FROM)


async def as_user(app: web.Application, username: str) -> Actor:
    user = await app[USERS].find(username)
    assert user is not None
    principal = Principal(user_id=user.id, username=user.username, roles=user.roles, claims={"sid": None})
    return Actor(principal=principal, method="PUT", path="/policies/x", **FROM)


async def records(app: web.Application, action: str) -> list[dict[str, Any]]:
    return (await app[AUDIT].search({"action": action}, 50, 0)).items


async def test_login_audits_through_the_actor_and_marks_it(app: web.Application) -> None:
    actor = anonymous()
    result = await app[LOGIN].login(actor, username="admin", password=ADMIN_PASSWORD, mfa_code=None)
    assert actor.mark.recorded  # the audit middleware will not repeat the request
    assert login_view(result)["user"]["username"] == "admin" and result.token
    [record] = await records(app, "auth.login")
    assert record["result"] == "success" and record["username"] == "admin"
    assert (record["ip"], record["request_id"], record["service"]) == (
        "198.51.100.4",
        "req-42",
        "control_center",
    )


async def test_a_refused_login_is_audited_with_the_actor_s_address(app: web.Application) -> None:
    with pytest.raises(Unauthorized):
        await app[LOGIN].login(anonymous(), username="admin", password="wrong-password-123", mfa_code=None)
    [record] = await records(app, "auth.login")
    assert record["result"] == "failure" and record["details"]["reason"] == "wrong_password"
    assert record["ip"] == "198.51.100.4"


async def test_refresh_by_refresh_token_rotates_and_audits(app: web.Application) -> None:
    result = await app[LOGIN].login(anonymous(), username="admin", password=ADMIN_PASSWORD, mfa_code=None)
    refreshed = await app[LOGIN].refresh(anonymous(), refresh_token=result.refresh_token)
    assert refreshed.token and refreshed.refresh_token and refreshed.refresh_token != result.refresh_token
    [record] = await records(app, "auth.refresh")
    assert record["details"] == {"with": "refresh_token"} and record["username"] == "admin"
    with pytest.raises(Unauthorized):  # the spent one is refused, and its reuse audited
        await app[LOGIN].refresh(anonymous(), refresh_token=result.refresh_token)
    [reuse] = await records(app, "auth.refresh_token_reused")
    assert reuse["result"] == "denied" and reuse["username"] == "admin"


async def test_the_profile_changes_a_password_and_audits_it(app: web.Application) -> None:
    await app[USERS].create(
        username="dev1", email=None, password=USER_PASSWORD, roles=["developer"], enabled=True
    )
    actor = await as_user(app, "dev1")
    assert user_view(await app[PROFILE].current(actor))["username"] == "dev1"
    with pytest.raises(Unauthorized):
        await app[PROFILE].change_password(actor, "not-the-password-1", "a-new-password-42")
    await app[PROFILE].change_password(actor, USER_PASSWORD, "a-new-password-42")
    [record] = await records(app, "users.password_changed")
    assert record["username"] == "dev1" and record["ip"] == "198.51.100.4"
    await app[LOGIN].login(anonymous(), username="dev1", password="a-new-password-42", mfa_code=None)


async def test_an_admin_mfa_reset_is_audited_with_its_target(app: web.Application) -> None:
    await app[USERS].create(
        username="op1", email=None, password=USER_PASSWORD, roles=["operator"], enabled=True
    )
    target = await app[USERS].find("op1")
    assert target is not None
    await app[MFA].reset(await as_user(app, "admin"), target)
    [record] = await records(app, "users.mfa_reset")
    assert record["username"] == "admin"
    assert record["details"] == {"target_user_id": target.id, "target_username": "op1"}


async def test_whether_a_policy_change_locks_its_author_out_is_decided_on_the_actor(
    app: web.Application,
) -> None:
    await app[USERS].create(
        username="pol", email=None, password=USER_PASSWORD, roles=["developer"], enabled=True
    )
    author = await as_user(app, "pol")  # asks from 198.51.100.4

    def grant(network: str) -> Rule:
        return Rule.from_doc(
            {
                "effect": "Allow",
                "resource": "policies",
                "action": ["*"],
                "roles": ["developer"],
                "condition": f"ipMatch(request.ip, '{network}')",
            }
        )

    row = await app[POLICIES].create(
        await as_user(app, "admin"),
        name="devs-manage-policies",
        version="1.0.0",
        description=None,
        rules=[grant("198.51.100.0/24")],
        enabled=True,
    )
    assert row["created_by"] == "admin"
    # Only this policy lets the author manage policies, and only from their address.
    with pytest.raises(Conflict, match="your own right to manage policies"):
        await app[POLICIES].update(author, row["id"], PolicyChanges(rules=[grant("203.0.113.0/24")]))
    with pytest.raises(Conflict, match="your own right to manage policies"):
        await app[POLICIES].delete(author, row["id"])
    updated = await app[POLICIES].update(author, row["id"], PolicyChanges(rules=[grant("198.51.100.4/32")]))
    assert updated["updated_by"] == "pol" and updated["revision"] == 2


async def test_webhooks_are_managed_by_one_service_built_with_the_app(app: web.Application) -> None:
    service = app[WEBHOOKS]
    assert service is app[WEBHOOKS]
    actor = await as_user(app, "admin")
    webhook, secret = await service.create(actor, "https://hooks.example.com/x", ["*"], "d", True)
    view = webhook_view(webhook, secret=secret)
    assert view["created_by"] == "admin" and view["secret"].startswith("whsec_")
    assert "secret" not in webhook_view(webhook)
    delivery = await service.send_test(actor, webhook.id)
    shown = delivery_view(delivery)
    assert shown["event"] == "webhook.test" and shown["payload"]["data"]["requested_by"] == "admin"
