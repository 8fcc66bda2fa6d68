"""Authorization: each default role against a matrix of routes on both services, policy
documents (Deny over Allow, conditions, wildcards), changes taking effect without a
restart, versions, and the guard against locking admins out."""

from __future__ import annotations

from typing import Any

import pytest

from shared.security.backend import SECURITY, Security
from tests.helpers.services import ADMIN_PASSWORD, USER_PASSWORD, Services, bearer

BATCH = {
    "name": "matrix",
    "operations": [{"id": "a", "type": "server_batch", "provider": "local", "simulate": {"latency_s": 0}}],
}
ROLES = ("admin", "operator", "developer", "viewer", "auditor")
ALL = set(ROLES)
READERS = {"admin", "operator", "developer", "viewer"}

# (service, method, path, body, roles allowed)
MATRIX: list[tuple[str, str, str, dict[str, Any] | None, set[str]]] = [
    ("orch", "GET", "/tasks", None, READERS),
    ("orch", "GET", "/batch/operations", None, READERS),
    ("orch", "GET", "/state/statistics", None, READERS),
    ("orch", "GET", "/rollback/checkpoints", None, {"admin", "operator", "developer"}),
    ("orch", "POST", "/batch/execute", BATCH, {"admin", "operator"}),
    ("orch", "POST", "/batch/execute", {**BATCH, "check_mode": True}, {"admin", "operator", "developer"}),
    (
        "orch",
        "POST",
        "/workflows/servers/create",
        {"infra": "x", "check_mode": True},
        {"admin", "operator", "developer"},
    ),
    ("orch", "POST", "/workflows/servers/create", {"infra": "x", "check_mode": False}, {"admin", "operator"}),
    ("orch", "POST", "/batch/operations/nope/cancel", None, {"admin", "operator"}),
    ("orch", "POST", "/rollback/checkpoints", {"name": "cp"}, {"admin", "operator"}),
    ("orch", "POST", "/rollback/execute", {"checkpoint_id": "nope"}, {"admin", "operator"}),
    ("cc", "GET", "/users", None, {"admin"}),
    ("cc", "POST", "/users", {}, {"admin"}),
    ("cc", "PUT", "/users/nope", {}, {"admin"}),
    ("cc", "GET", "/policies", None, {"admin"}),
    ("cc", "POST", "/policies", {}, {"admin"}),
    ("cc", "GET", "/audit/logs", None, {"admin", "operator", "auditor"}),
    ("cc", "GET", "/audit/verify", None, {"admin", "operator", "auditor"}),
    ("cc", "GET", "/users/me", None, ALL),
]


async def tokens_for_roles(services: Services) -> dict[str, str]:
    admin = await services.admin()
    tokens = {"admin": admin}
    for role in ROLES[1:]:
        _, tokens[role] = await services.user(f"{role}1", role, admin_token=admin)
    return tokens


async def call(
    services: Services, service: str, method: str, path: str, body: dict[str, Any] | None, token: str
) -> tuple[int, dict[str, Any]]:
    client = services.orch if service == "orch" else services.cc
    kwargs: dict[str, Any] = {"headers": bearer(token)}
    if body is not None:
        kwargs["json"] = body
    resp = await client.request(method, path, **kwargs)
    doc: dict[str, Any] = await resp.json()
    return resp.status, doc


async def test_default_roles_against_the_route_matrix(services: Services) -> None:
    tokens = await tokens_for_roles(services)
    failures = []
    for service, method, path, body, allowed in MATRIX:
        for role, token in tokens.items():
            status, doc = await call(services, service, method, path, body, token)
            if role in allowed and status in (401, 403):
                failures.append(f"{role} refused {method} {path}: {status} {doc.get('error')}")
            if role not in allowed:
                if status != 403:
                    failures.append(f"{role} allowed {method} {path}: {status}")
                elif "permission denied" not in doc["error"]:
                    failures.append(f"unexpected refusal text: {doc['error']}")
    assert not failures, "\n".join(failures)


async def test_a_refusal_names_the_missing_permission(services: Services) -> None:
    tokens = await tokens_for_roles(services)
    status, doc = await call(services, "orch", "POST", "/batch/execute", BATCH, tokens["developer"])
    assert status == 403
    assert "batch:execute" in doc["error"]
    assert doc["details"]["resource"] == "batch" and doc["details"]["action"] == "execute"
    assert doc["details"]["allowed_when"] == ["batch.check_mode == True"]
    status, doc = await call(services, "cc", "GET", "/users", None, tokens["viewer"])
    assert status == 403 and "users:read" in doc["error"] and "viewer" in doc["error"]


async def test_the_default_policy_is_a_document(services: Services) -> None:
    admin = await services.admin()
    resp = await services.cc.get("/policies", headers=bearer(admin))
    doc = await resp.json()
    [default] = doc["data"]
    assert default["name"] == "default" and default["enabled"] is True
    assert default["version"] == "1.0.0"
    assert {
        "effect": "Allow",
        "resource": "*",
        "action": ["*"],
        "condition": None,
        "roles": ["admin"],
    } in default["rules"]


async def create_policy(
    services: Services, admin: str, body: dict[str, Any], status: int = 201
) -> dict[str, Any]:
    resp = await services.cc.post("/policies", json=body, headers=bearer(admin))
    doc: dict[str, Any] = await resp.json()
    assert resp.status == status, doc
    return doc


async def test_deny_overrides_allow_and_changes_apply_without_restart(services: Services) -> None:
    admin = await services.admin()
    _, viewer = await services.user("viewer1", "viewer", admin_token=admin)
    resp = await services.orch.get("/tasks", headers=bearer(viewer))
    assert resp.status == 200
    doc = await create_policy(
        services,
        admin,
        {
            "name": "no_tasks_for_viewers",
            "version": "1.0.0",
            "rules": [{"effect": "Deny", "resource": "tasks", "action": ["read"], "roles": ["viewer"]}],
        },
    )
    data = doc["data"]
    assert set(data) == {"id", "name", "version"}
    # the very next request, on the other service too
    resp = await services.orch.get("/tasks", headers=bearer(viewer))
    assert resp.status == 403
    resp = await services.orch.get("/batch/operations", headers=bearer(viewer))
    assert resp.status == 200
    # an explicit Allow does not beat the Deny
    await create_policy(
        services,
        admin,
        {
            "name": "allow_tasks",
            "rules": [{"effect": "Allow", "resource": "tasks", "action": "read", "roles": ["viewer"]}],
        },
    )
    resp = await services.orch.get("/tasks", headers=bearer(viewer))
    assert resp.status == 403
    # disabling the deny policy lifts it; deleting it too
    resp = await services.cc.put(f"/policies/{data['id']}", json={"enabled": False}, headers=bearer(admin))
    assert resp.status == 200 and (await resp.json())["data"] == "Policy updated successfully"
    resp = await services.orch.get("/tasks", headers=bearer(viewer))
    assert resp.status == 200
    resp = await services.cc.put(f"/policies/{data['id']}", json={"enabled": True}, headers=bearer(admin))
    resp = await services.orch.get("/tasks", headers=bearer(viewer))
    assert resp.status == 403
    resp = await services.cc.delete(f"/policies/{data['id']}", headers=bearer(admin))
    assert resp.status == 200
    resp = await services.orch.get("/tasks", headers=bearer(viewer))
    assert resp.status == 200
    resp = await services.cc.get(f"/policies/{data['id']}", headers=bearer(admin))
    assert resp.status == 404


async def test_condition_on_mfa(services: Services) -> None:
    admin = await services.admin()
    await create_policy(
        services,
        admin,
        {
            "name": "audit_with_mfa",
            "rules": [
                {
                    "effect": "Allow",
                    "resource": "audit",
                    "action": ["read"],
                    "condition": "user.mfa == true",
                    "roles": ["viewer"],
                }
            ],
        },
    )
    _, viewer = await services.user("viewer1", "viewer", admin_token=admin)
    resp = await services.cc.get("/audit/logs", headers=bearer(viewer))
    doc = await resp.json()
    assert resp.status == 403
    assert doc["details"]["allowed_when"] == ["user.mfa == True"]
    # the same viewer after enrolling MFA and logging in with a code
    await services.enrol_with("viewer1", USER_PASSWORD, viewer)
    with_mfa = (await services.token("viewer1", USER_PASSWORD))["token"]
    resp = await services.cc.get("/audit/logs", headers=bearer(with_mfa))
    assert resp.status == 200


async def test_conditions_over_request_and_role(services: Services) -> None:
    admin = await services.admin()
    _, auditor = await services.user("aud", "auditor", admin_token=admin)
    await create_policy(
        services,
        admin,
        {
            "name": "local_auditors",
            "rules": [
                {
                    "effect": "Allow",
                    "resource": "tasks",
                    "action": ["read"],
                    "condition": "user.role == 'auditor' && ipMatch(request.ip, '127.0.0.0/8')",
                },
                {
                    "effect": "Deny",
                    "resource": "state",
                    "action": ["read"],
                    "condition": "time.hour >= 0 and request.method == 'GET'",
                    "roles": ["auditor"],
                },
                {"effect": "Allow", "resource": "state", "action": ["read"], "roles": ["auditor"]},
            ],
        },
    )
    resp = await services.orch.get("/tasks", headers=bearer(auditor))
    assert resp.status == 200
    resp = await services.orch.get("/state/statistics", headers=bearer(auditor))
    assert resp.status == 403


async def test_seed_example_and_invalid_rules(services: Services) -> None:
    admin = await services.admin()
    await create_policy(
        services,
        admin,
        {
            "name": "new_policy",
            "version": "1.0.0",
            "rules": [
                {
                    "effect": "Allow",
                    "resource": "servers:*",
                    "action": ["create", "read"],
                    "condition": "user.role == 'admin'",
                }
            ],
        },
    )
    bad_rules = [
        {
            "effect": "Allow",
            "resource": "tasks",
            "action": ["read"],
            "condition": "__import__('os').system('true')",
        },
        {"effect": "Allow", "resource": "tasks", "action": ["read"], "condition": "user.__class__"},
        {"effect": "Allow", "resource": "tasks", "action": ["read"], "condition": "user.role =="},
        {"effect": "Allow", "resource": "tasks", "action": ["read"], "condition": "secret.key"},
        {"effect": "Allow", "resource": "Tasks Everywhere", "action": ["read"]},
        {"effect": "Allow", "resource": "tasks", "action": []},
        {"effect": "Maybe", "resource": "tasks", "action": ["read"]},
    ]
    for i, rule in enumerate(bad_rules):
        doc = await create_policy(services, admin, {"name": f"bad{i}", "rules": [rule]}, status=422)
        assert doc["code"] == "validation_failed"
    await create_policy(services, admin, {"name": "new_policy", "rules": []}, status=409)


async def test_update_keeps_previous_versions(services: Services) -> None:
    admin = await services.admin()
    doc = await create_policy(
        services,
        admin,
        {
            "name": "p",
            "rules": [{"effect": "Allow", "resource": "tasks", "action": ["read"], "roles": ["auditor"]}],
        },
    )
    pid = doc["data"]["id"]
    resp = await services.cc.put(
        f"/policies/{pid}",
        headers=bearer(admin),
        json={
            "name": "updated_policy",
            "rules": [{"effect": "Allow", "resource": "state", "action": ["read"], "roles": ["auditor"]}],
        },
    )
    assert resp.status == 200
    resp = await services.cc.put(
        f"/policies/{pid}", headers=bearer(admin), json={"version": "2.0.0", "description": "explicit"}
    )
    resp = await services.cc.get(f"/policies/{pid}", headers=bearer(admin))
    current = (await resp.json())["data"]
    assert current["name"] == "updated_policy" and current["version"] == "2.0.0"
    assert current["revision"] == 3 and current["rules"][0]["resource"] == "state"
    resp = await services.cc.get(f"/policies/{pid}/versions", headers=bearer(admin))
    versions = (await resp.json())["data"]
    assert [v["version"] for v in versions] == ["1.0.1", "1.0.0"]
    assert versions[1]["name"] == "p" and versions[1]["rules"][0]["resource"] == "tasks"
    assert all(v["id"] == pid for v in versions)


async def test_a_change_that_locks_out_its_author_is_refused(services: Services) -> None:
    admin = await services.admin()
    doc = await create_policy(
        services,
        admin,
        {"name": "oops", "rules": [{"effect": "Deny", "resource": "*", "action": ["*"], "roles": ["admin"]}]},
        status=409,
    )
    assert doc["details"]["rule"] == "keep_policy_control"
    resp = await services.cc.get("/policies", headers=bearer(admin))
    default = (await resp.json())["data"][0]
    resp = await services.cc.put(f"/policies/{default['id']}", json={"enabled": False}, headers=bearer(admin))
    assert resp.status == 409
    resp = await services.cc.delete(f"/policies/{default['id']}", headers=bearer(admin))
    assert resp.status == 409
    # admins are still in control
    resp = await services.cc.get("/policies", headers=bearer(admin))
    assert resp.status == 200


@pytest.mark.parametrize("settings_overrides", [{"auth_sync_s": 0}])
async def test_another_process_picks_up_changes(services: Services) -> None:
    admin = await services.admin()
    own = services.cc.app[SECURITY]
    other = Security(own.settings)  # what a separate orchestrator process would hold
    await other.start(services.store)
    try:
        assert other.policy.decide(("viewer",), "tasks", "read", {})
        await create_policy(
            services,
            admin,
            {
                "name": "deny",
                "rules": [{"effect": "Deny", "resource": "tasks", "action": ["read"], "roles": ["viewer"]}],
            },
        )
        data = await services.token("admin", ADMIN_PASSWORD)
        resp = await services.cc.post("/auth/logout", headers=bearer(data["token"]))
        assert resp.status == 200
        await other.sync()
        assert not other.policy.decide(("viewer",), "tasks", "read", {})
        principal_jti = data["token"]
        assert principal_jti  # the logout reached the other process's denylist
        from shared.errors import Unauthorized

        with pytest.raises(Unauthorized):
            await other.tokens.verify(data["token"])
    finally:
        await other.stop()


async def test_every_route_declares_its_permission_in_openapi(services: Services) -> None:
    public = {
        "/health",
        "/metrics",
        "/openapi.json",
        "/auth/login",
        "/auth/refresh",
        "/.well-known/jwks.json",
    }
    for client in (services.cc, services.orch):
        resp = await client.get("/openapi.json")
        doc = await resp.json()
        for path, ops in doc["paths"].items():
            for method, op in ops.items():
                if path in public or op.get("security") == []:
                    continue
                assert "x-permission" in op, (method, path)
    resp = await services.cc.get("/openapi.json")
    paths = (await resp.json())["paths"]
    assert paths["/users"]["post"]["x-permission"] == {"resource": "users", "action": "create"}
    params = {p["name"] for p in paths["/audit/logs"]["get"]["parameters"]}
    assert {"user_id", "action", "resource", "from", "to", "limit", "offset"} <= params
