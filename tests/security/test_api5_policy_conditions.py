"""API5 (function-level authorization): policy conditions mean what they say.

Issue 8, finding 7: pycasbin rewrote ``!``, ``&&`` and ``||`` inside string literals
(``request.path == '/tasks/a!b'`` never matched); conditions that raise (``'a' < 1``)
were accepted and then answered 500; ``" Prod"`` dodged ``batch.environment == 'prod'``.
Stored policies of an older release keep working (``test_api5_policy_upgrade.py``)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.security.backend import SECURITY
from shared.security.conditions import RoleSet
from shared.security.policy import PolicyEngine, Rule, compile_rules, line_row, read_model
from shared.settings import Settings
from tests.helpers.services import Services, bearer

MODEL = read_model(Settings().policies_dir)


async def create_policy(services: Services, admin: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    resp = await services.cc.post("/policies", json=body, headers=bearer(admin))
    doc: dict[str, Any] = await resp.json()
    return resp.status, doc


async def test_literals_with_operators_inside_match_exactly(services: Services) -> None:
    admin = await services.admin()
    _, auditor = await services.user("aud", "auditor", admin_token=admin)
    paths = ["/tasks/a!b", "/tasks/a&&b", "/tasks/a||b", "/tasks/r.x", "/tasks/p.cond"]
    status, doc = await create_policy(
        services,
        admin,
        {
            "name": "odd_paths",
            "rules": [
                {
                    "effect": "Allow",
                    "resource": "tasks",
                    "action": ["read"],
                    "roles": ["auditor"],
                    "condition": " || ".join(f"request.path == '{p}'" for p in paths),
                }
            ],
        },
    )
    assert status == 201, doc
    for path in paths:
        resp = await services.orch.get(path, headers=bearer(auditor))
        assert resp.status == 404, (path, await resp.text())  # allowed; there is no such task
    for path in ("/tasks/a", "/tasks/a not b", "/tasks/ab"):
        resp = await services.orch.get(path, headers=bearer(auditor))
        assert resp.status == 403, path


LITERAL_TEXT = st.text(alphabet=st.sampled_from("!&|'\"\\ =.rpab()/"), max_size=24)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=LITERAL_TEXT, other=LITERAL_TEXT)
def test_any_literal_matches_exactly_that_path(path: str, other: str) -> None:
    for quote in ("'", '"'):
        escaped = path.replace("\\", "\\\\").replace(quote, "\\" + quote)
        condition = f"request.path == {quote}{escaped}{quote}"
        engine = PolicyEngine(MODEL)
        engine.load_lines(compile_rules([Rule("allow", "tasks", ("read",), condition, ("auditor",))]))
        assert engine.decide(("auditor",), "tasks", "read", request_context(path))
        assert engine.decide(("auditor",), "tasks", "read", request_context(other)) is (other == path)


def request_context(path: str) -> dict[str, Any]:
    return {
        "user": {
            "id": "u",
            "username": "a",
            "role": RoleSet(("auditor",)),
            "roles": ["auditor"],
            "mfa": False,
        },
        "request": {"ip": "127.0.0.1", "method": "GET", "path": path, "service": "orchestrator"},
        "time": {"hour": 1, "minute": 0, "weekday": 0, "date": "2026-01-05"},
        "batch": {"environment": None, "check_mode": False, "name": None},
        "operation": {},
    }


BAD_CONDITIONS = [
    ("'a' < 1", "TypeError"),
    ("regexMatch(batch.name, '(')", "not supported by RE2"),
    ("regexMatch(batch.name, '(a)\\\\1')", "not supported by RE2"),
    ("regexMatch(batch.name)", "two positional arguments"),
    ("keyMatch(request.path, '/a', '/b')", "two positional arguments"),
    ("unknown.thing == 1", "attributes are read as"),
    ("batch.environment < 'prod'", "when batch.environment is null"),
    ("batch.name", "rather than true or false"),
]


@pytest.mark.parametrize(("condition", "reason"), BAD_CONDITIONS)
async def test_conditions_that_would_fail_are_refused_when_saved(
    services: Services, condition: str, reason: str
) -> None:
    admin = await services.admin()
    fine = {"effect": "Allow", "resource": "tasks", "action": ["read"], "roles": ["auditor"]}
    rules = [fine, {**fine, "condition": "user.mfa == true"}, {**fine, "condition": condition}]
    status, doc = await create_policy(services, admin, {"name": "bad", "rules": rules})
    assert status == 422, doc
    [field] = doc["details"]["fields"]
    assert field["field"] == "rules.2.condition"
    assert reason in field["message"] and reason in doc["error"]
    # the same through PUT
    status, doc = await create_policy(services, admin, {"name": "good", "rules": rules[:2]})
    assert status == 201, doc
    resp = await services.cc.put(
        f"/policies/{doc['data']['id']}", json={"rules": rules}, headers=bearer(admin)
    )
    assert resp.status == 422
    assert (await resp.json())["details"]["fields"][0]["field"] == "rules.2.condition"


async def test_a_condition_that_raises_at_request_time_is_a_403(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    """Lines an older release stored without these checks: they fail closed, never 500."""
    admin = await services.admin()
    _, viewer = await services.user("view", "viewer", admin_token=admin)
    _, auditor = await services.user("aud", "auditor", admin_token=admin)
    security = services.cc.app[SECURITY]
    repo = security.policies
    await repo.store.write(
        *repo.insert_lines(
            [
                line_row("old", 0, "p", ["viewer", "tasks", "read", "'a' < 1", "deny"]),
                line_row("old", 1, "p", ["auditor", "tasks", "read", "r_ctx.batch.name < 1", "allow"]),
            ]
        ),
        repo.bump_revision(),
    )
    caplog.set_level(logging.WARNING)
    await security.reload_policy()
    for token in (viewer, auditor):
        resp = await services.orch.get("/tasks", headers=bearer(token))
        assert resp.status == 403, await resp.text()
    assert any("fails closed" in r.getMessage() for r in caplog.records)
    # a fact too long for a pattern function: denied, with a warning
    status, doc = await create_policy(
        services,
        admin,
        {
            "name": "task_paths",
            "rules": [
                {
                    "effect": "Allow",
                    "resource": "state",
                    "action": ["read"],
                    "roles": ["auditor"],
                    "condition": "regexMatch(request.path, '^/state/')",
                }
            ],
        },
    )
    assert status == 201, doc
    resp = await services.orch.get("/state/workflows/x/progress", headers=bearer(auditor))
    assert resp.status == 404
    resp = await services.orch.get(f"/state/workflows/{'x' * 5000}/progress", headers=bearer(auditor))
    assert resp.status == 403
    assert any("the request is denied" in r.getMessage() for r in caplog.records)


async def test_the_environment_is_normalised(services: Services) -> None:
    admin = await services.admin()
    _, operator = await services.user("ops", "operator", admin_token=admin)
    status, doc = await create_policy(
        services,
        admin,
        {
            "name": "no_prod_for_operators",
            "rules": [
                {
                    "effect": "Deny",
                    "resource": "batch",
                    "action": ["execute"],
                    "roles": ["operator"],
                    "condition": "batch.environment == 'prod'",
                }
            ],
        },
    )
    assert status == 201, doc
    op = {"id": "a", "type": "server_batch", "provider": "local", "simulate": {"latency_s": 0}}
    for environment in ("prod", " Prod", "PROD\t", "pro\u200bd", "\uff50\uff52\uff4f\uff44"):
        resp = await services.orch.post(
            "/batch/execute",
            json={"name": "b", "environment": environment, "operations": [op]},
            headers=bearer(operator),
        )
        assert resp.status == 403, (environment, await resp.text())
    resp = await services.orch.post(
        "/batch/execute",
        json={"name": "b", "environment": "staging", "operations": [op]},
        headers=bearer(operator),
    )
    assert resp.status == 201, await resp.text()
