"""The general per-user limit and the per-user limit on accepted batch submissions."""

from __future__ import annotations

import pytest

from shared.security.ratelimit import parse_limit
from tests.helpers.services import Services, bearer

BATCH = {
    "name": "limited",
    "operations": [{"id": "a", "type": "server_batch", "provider": "local", "simulate": {"latency_s": 0}}],
}


def test_limit_notation() -> None:
    assert parse_limit("0") is None and parse_limit("") is None
    item = parse_limit("5/minute")
    assert item is not None and item.amount == 5 and item.get_expiry() == 60
    item = parse_limit("100 per hour")
    assert item is not None and item.amount == 100


@pytest.mark.parametrize("settings_overrides", [{"rate_limit_default": "12/minute"}])
async def test_general_limit_is_per_user(services: Services) -> None:
    admin = await services.admin()
    _, viewer = await services.user("viewer1", "viewer", admin_token=admin)
    _, other = await services.user("viewer2", "viewer", admin_token=admin)
    seen = []
    for _ in range(13):
        resp = await services.orch.get("/tasks", headers=bearer(viewer))
        seen.append(resp.status)
        assert resp.headers["X-RateLimit-Limit"] == "12"
    assert seen == [200] * 12 + [429]
    doc = await resp.json()
    assert doc["code"] == "rate_limited" and doc["details"]["bucket"] == "default"
    assert resp.headers["X-RateLimit-Remaining"] == "0" and "Retry-After" in resp.headers
    resp = await services.orch.get("/tasks", headers=bearer(other))
    assert resp.status == 200
    assert resp.headers["X-RateLimit-Remaining"] == "11"
    # the limit is per user, not per service: the control center counts the same user
    resp = await services.cc.get("/users/me", headers=bearer(viewer))
    assert resp.status == 429


@pytest.mark.parametrize("settings_overrides", [{"rate_limit_batch": "2/minute"}])
async def test_accepted_submissions_are_limited(services: Services) -> None:
    admin = await services.admin()
    _, op = await services.user("op", "operator", admin_token=admin)
    # a plan (check mode) and a refused body are not submissions
    resp = await services.orch.post("/batch/execute", json={**BATCH, "check_mode": True}, headers=bearer(op))
    assert resp.status == 200
    resp = await services.orch.post("/batch/execute", json={"name": "x"}, headers=bearer(op))
    assert resp.status == 422
    statuses = []
    for path, body in (
        ("/batch/execute", BATCH),
        ("/workflows/servers/create", {"infra": "a"}),
        ("/batch/execute", BATCH),
    ):
        resp = await services.orch.post(path, json=body, headers=bearer(op))
        statuses.append(resp.status)
    assert statuses[:2] == [201, 201] and statuses[2] == 429
    assert resp.headers["X-RateLimit-Limit"] == "2"
    assert (await resp.json())["details"]["bucket"] == "batch"
    # other users are not affected
    resp = await services.orch.post("/batch/execute", json=BATCH, headers=bearer(admin))
    assert resp.status == 201


@pytest.mark.parametrize("settings_overrides", [{"rate_limit_default": "0"}])
async def test_zero_disables_a_limit(services: Services) -> None:
    admin = await services.admin()
    resp = await services.orch.get("/tasks", headers=bearer(admin))
    assert resp.status == 200 and "X-RateLimit-Limit" not in resp.headers


async def test_every_response_carries_rate_limit_headers(services: Services) -> None:
    public = await services.orch.get("/health")
    refused = await services.orch.get("/tasks")  # no credentials: 401
    missing = await services.cc.get("/no/such/route")
    for resp in (public, refused, missing):
        assert {"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"} <= set(resp.headers), (
            resp.status,
            dict(resp.headers),
        )
    assert refused.status == 401
    # Unauthenticated requests are described, not counted: a health check is never throttled.
    again = await services.orch.get("/health")
    assert again.headers["X-RateLimit-Remaining"] == public.headers["X-RateLimit-Remaining"]
