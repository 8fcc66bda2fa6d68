"""API4 (unrestricted resource consumption): policy conditions cannot block the services.

Issue 8, finding 7: ``regexMatch(batch.name, '^(a+)+$')`` ran in Python's backtracking
``re``, so a developer's check-mode name of ``a``s blocked both services for ~0.8 s,
doubling per character (a 50-character name: days). Patterns now run in RE2 (linear),
facts longer than a pattern function reads deny the request, and a batch is authorised
once per distinct set of operation facts, yielding to the event loop as it goes."""

from __future__ import annotations

from typing import Any

import pytest

from shared.security import conditions
from tests.helpers.services import Services, bearer

SERVER = {"type": "server_batch", "provider": "local", "simulate": {"latency_s": 0}}


async def deny_names(services: Services, admin: str, pattern: str) -> None:
    resp = await services.cc.post(
        "/policies",
        headers=bearer(admin),
        json={
            "name": "names",
            "rules": [
                {
                    "effect": "Deny",
                    "resource": "batch",
                    "action": ["execute"],
                    "roles": ["developer"],
                    "condition": f"regexMatch(batch.name, '{pattern}')",
                }
            ],
        },
    )
    assert resp.status == 201, await resp.text()


async def check(services: Services, token: str, name: str) -> tuple[int, dict[str, Any]]:
    resp = await services.orch.post(
        "/batch/execute",
        json={"name": name, "check_mode": True, "operations": [{"id": "a", **SERVER}]},
        headers=bearer(token),
    )
    doc: dict[str, Any] = await resp.json()
    return resp.status, doc


async def test_a_catastrophic_pattern_on_a_long_name_returns(services: Services) -> None:
    assert conditions.FUNCTIONS["regexMatch"] is conditions.regex_match  # RE2, not Casbin's re
    admin = await services.admin()
    _, developer = await services.user("dev", "developer", admin_token=admin)
    await deny_names(services, admin, "^(a+)+$")
    # with backtracking, this name alone takes ~2^50 steps
    status, doc = await check(services, developer, "a" * 50 + "!")
    assert status in (200, 201), doc
    status, doc = await check(services, developer, "a" * 50)
    assert status == 403, doc
    # the other service answers meanwhile, and afterwards
    resp = await services.cc.get("/health")
    assert resp.status == 200


async def test_a_fact_longer_than_patterns_read_is_denied_not_matched(services: Services) -> None:
    admin = await services.admin()
    _, developer = await services.user("dev", "developer", admin_token=admin)
    await deny_names(services, admin, "^x")
    status, doc = await check(services, developer, "a" * (conditions.MAX_MATCH_INPUT + 1))
    assert status == 403, doc
    status, doc = await check(services, developer, "a" * 100)
    assert status in (200, 201), doc


@pytest.mark.parametrize("settings_overrides", [{"commands_allow": ("echo",)}])
async def test_a_thousand_operation_batch_is_authorised_per_operation(services: Services) -> None:
    admin = await services.admin()
    _, operator = await services.user("ops", "operator", admin_token=admin)
    operations: list[dict[str, Any]] = [{"id": f"op{i}", **SERVER} for i in range(1000)]
    operations[10] = {"id": "op10", "type": "command", "run": ["echo", "10"]}
    for bad in (637, 999):
        body = [*operations]
        body[bad] = {"id": f"op{bad}", "type": "command", "run": ["sh", "-c", "id"]}
        resp = await services.orch.post(
            "/batch/execute", json={"name": "big", "operations": body}, headers=bearer(operator)
        )
        doc = await resp.json()
        assert resp.status == 403, doc
        assert f"operation 'op{bad}' (operations[{bad}])" in doc["error"]
    resp = await services.orch.post(
        "/batch/execute",
        json={"name": "big", "check_mode": True, "operations": operations},
        headers=bearer(operator),
    )
    assert resp.status in (200, 201), await resp.text()
    resp = await services.orch.post(
        "/batch/execute",
        json={"name": "big", "parallel_limit": 100, "operations": operations},
        headers=bearer(operator),
    )
    doc = await resp.json()
    assert resp.status == 201, doc
    assert len(doc["data"]["operations"]) == 1000
    await services.orch.post(f"/batch/operations/{doc['data']['batch_id']}/cancel", headers=bearer(operator))


@pytest.mark.parametrize("settings_overrides", [{"max_body_bytes": 4096}])
async def test_a_body_too_large_for_the_facts_is_refused_before_any_decision(services: Services) -> None:
    """The policy reads the body first; past the limit, reading it again would return
    only its tail, a valid batch of its own. Refused whole (413), nothing runs."""
    admin = await services.admin()
    _, operator = await services.user("ops", "operator", admin_token=admin)
    tail = b'{"name": "b", "operations": [{"id": "x", "type": "command", "run": ["sh", "-c", "id"]}]}'
    resp = await services.orch.post(
        "/batch/execute",
        data=b" " * 8192 + tail,
        headers={**bearer(operator), "Content-Type": "application/json"},
    )
    assert resp.status == 413, await resp.text()
    assert (await resp.json())["code"] == "payload_too_large"
    resp = await services.orch.get("/batch/operations", headers=bearer(operator))
    assert (await resp.json())["data"] == []
