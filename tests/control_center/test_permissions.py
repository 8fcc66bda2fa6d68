"""``GET /auth/me/permissions``: the resource/action pairs of both services that the
caller's policies allow, so the console offers only those; per role, with the
conditional ones marked, following policy changes."""

from __future__ import annotations

from typing import Any

from control_center.app import build_api as control_center_api
from orchestrator.app import build_api as orchestrator_api
from provisioning.server import product_permissions
from tests.helpers.services import Services, bearer


async def permissions(services: Services, token: str) -> tuple[dict[str, Any], dict[tuple[str, str], bool]]:
    resp = await services.cc.get("/auth/me/permissions", headers=bearer(token))
    doc = await resp.json()
    assert resp.status == 200, doc
    data: dict[str, Any] = doc["data"]
    pairs = {(p["resource"], p["action"]): p["conditional"] for p in data["permissions"]}
    assert len(pairs) == len(data["permissions"])  # each pair once
    return data["user"], pairs


def test_the_vocabulary_is_both_services_routes() -> None:
    vocabulary = set(product_permissions())
    assert set(orchestrator_api().permissions()) <= vocabulary
    assert set(control_center_api().permissions()) <= vocabulary
    assert {
        ("batch", "execute"),
        ("workflows", "create"),
        ("users", "create"),
        ("audit", "read"),
    } <= vocabulary
    assert not any(resource == "auth" for resource, _ in vocabulary)  # public routes check nothing


async def test_an_admin_may_do_everything_unconditionally(services: Services) -> None:
    user, pairs = await permissions(services, await services.admin())
    assert user["username"] == "admin" and user["roles"] == ["admin"] and user["id"]
    assert set(pairs) == set(product_permissions())
    assert not any(pairs.values())


async def test_an_operator_runs_batches_under_the_command_condition(services: Services) -> None:
    admin = await services.admin()
    _, token = await services.user("olga", "operator", admin_token=admin)
    user, pairs = await permissions(services, token)
    assert user == {"id": user["id"], "username": "olga", "roles": ["operator"]}
    assert pairs[("batch", "execute")] is True  # only if no operation runs a program it may not run
    assert pairs[("workflows", "create")] is False
    assert pairs[("batch", "cancel")] is False and pairs[("rollback", "create")] is False
    assert pairs[("audit", "read")] is False and pairs[("profile", "read")] is False
    for denied in (("users", "create"), ("users", "read"), ("policies", "update"), ("webhooks", "create")):
        assert denied not in pairs


async def test_a_viewer_only_reads(services: Services) -> None:
    admin = await services.admin()
    _, token = await services.user("vic", "viewer", admin_token=admin)
    _, pairs = await permissions(services, token)
    assert {("tasks", "read"), ("batch", "read"), ("workflows", "read"), ("state", "read")} <= set(pairs)
    assert not any(resource in ("users", "policies", "webhooks", "audit") for resource, _ in pairs)
    assert not any(action not in ("read", "logout", "mfa", "mfa_enrol", "update") for _, action in pairs)
    assert ("batch", "execute") not in pairs and ("rollback", "rollback") not in pairs
    assert {r for r, a in pairs if a != "read"} <= {"profile"}


# Viewers read the audit log only with MFA, and no longer the state.
VIEWER = ["viewer"]
VIEWER_RULES = [
    {"effect": "Allow", "resource": "audit", "action": ["read"], "roles": VIEWER, "condition": "user.mfa"},
    {"effect": "Deny", "resource": "state", "action": ["read"], "roles": VIEWER},
]


async def test_answers_follow_a_policy_change(services: Services) -> None:
    admin = await services.admin()
    _, token = await services.user("val", "viewer", admin_token=admin)
    body = {"name": "viewers-audit", "rules": VIEWER_RULES}
    resp = await services.cc.post("/policies", headers=bearer(admin), json=body)
    assert resp.status == 201, await resp.text()
    _, pairs = await permissions(services, token)
    assert pairs[("audit", "read")] is True
    assert ("state", "read") not in pairs


async def test_anonymous_and_setup_tokens_are_refused(services: Services) -> None:
    resp = await services.cc.get("/auth/me/permissions")
    assert resp.status == 401
    status, doc = await services.login("admin", "first-boot-secret-for-tests")
    assert status == 200 and doc["data"]["mfa_setup_required"]
    resp = await services.cc.get("/auth/me/permissions", headers=bearer(doc["data"]["setup_token"]))
    assert resp.status == 403
