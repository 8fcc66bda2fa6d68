"""API3 broken object-property-level authorization: what a response shows, what a body may set.

Responses never carry a password hash, a TOTP secret, backup codes or a webhook
secret after it was shown once; request bodies cannot set a property the route
does not offer (every request model refuses unknown fields with a 422).
"""

from __future__ import annotations

import json
from typing import Any

from tests.helpers.services import Services, bearer

HIDDEN_USER_FIELDS = {
    "password_hash",
    "password",
    "mfa_secret",
    "mfa_pending_secret",
    "backup_codes",
    "username_key",
    "failed_logins",
}


async def test_user_views_never_carry_credentials(services: Services) -> None:
    admin = await services.admin()
    user_id, viewer = await services.user("viewer1", "viewer", admin_token=admin)
    pages: list[Any] = []
    for path, token in (
        ("/users", admin),
        (f"/users/{user_id}", admin),
        ("/users/me", viewer),
        ("/users/me", admin),
    ):
        resp = await services.cc.get(path, headers=bearer(token))
        assert resp.status == 200, await resp.text()
        pages.append((await resp.json())["data"])
    for page in pages:
        for user in page if isinstance(page, list) else [page]:
            assert not HIDDEN_USER_FIELDS & set(user), user
    text = json.dumps(pages)
    assert "$argon2" not in text
    # the admin enrolled MFA: its secret is known to the test and must not be echoed
    assert services.totp_secrets["admin"] not in text


async def test_bodies_cannot_set_properties_the_route_does_not_offer(services: Services) -> None:
    admin = await services.admin()
    user_id, viewer = await services.user("viewer1", "viewer", admin_token=admin)
    attempts = [
        # a user promoting themselves through their own password change
        (
            "POST",
            "/users/me/password",
            viewer,
            {"current_password": "x", "new_password": "y", "roles": ["admin"]},
        ),
        # an admin's update cannot write stored-only fields
        ("PUT", f"/users/{user_id}", admin, {"password_hash": "$argon2id$forged"}),
        ("PUT", f"/users/{user_id}", admin, {"mfa_enabled": False}),
        ("PUT", f"/users/{user_id}", admin, {"backup_codes": ["000000"]}),
        # a created user cannot arrive with MFA switched off or a secret chosen by the caller
        (
            "POST",
            "/users",
            admin,
            {
                "username": "planted",
                "password": "a-long-unusual-passphrase-7",
                "roles": ["viewer"],
                "mfa_secret": "JBSWY3DPEHPK3PXP",
            },
        ),
    ]
    for method, path, token, body in attempts:
        resp = await services.cc.request(method, path, json=body, headers=bearer(token))
        doc = await resp.json()
        assert resp.status == 422, (path, doc)
        named = {f["field"] for f in doc["details"]["fields"]}
        assert named & {"roles", "password_hash", "mfa_enabled", "backup_codes", "mfa_secret"}, doc
    resp = await services.cc.get(f"/users/{user_id}", headers=bearer(admin))
    assert (await resp.json())["data"]["roles"] == ["viewer"]
    assert (await services.cc.get("/users", params={"limit": 100}, headers=bearer(admin))).status == 200


async def test_a_webhook_secret_is_shown_once(services: Services) -> None:
    admin = await services.admin()
    resp = await services.cc.post(
        "/webhooks", json={"url": "https://hooks.example.com/a", "events": ["*"]}, headers=bearer(admin)
    )
    created = (await resp.json())["data"]
    assert resp.status == 201 and created["secret"].startswith("whsec_")
    secret = created["secret"]
    for path in ("/webhooks", f"/webhooks/{created['id']}"):
        resp = await services.cc.get(path, headers=bearer(admin))
        assert resp.status == 200
        assert secret not in await resp.text()
    resp = await services.cc.post(f"/webhooks/{created['id']}/rotate-secret", headers=bearer(admin))
    rotated = (await resp.json())["data"]
    assert resp.status == 200 and rotated["secret"] != secret
    listed = await (await services.cc.get("/webhooks", headers=bearer(admin))).text()
    assert rotated["secret"] not in listed and secret not in listed
