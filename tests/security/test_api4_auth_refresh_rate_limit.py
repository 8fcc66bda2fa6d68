"""API4 unrestricted resource consumption: ``POST /auth/refresh`` had no rate limit.

Issue 8, finding 8. Refresh is public (it carries its own credential), so it is
counted per client address in its own bucket (``rate_limit_refresh``).
"""

from __future__ import annotations

import pytest

from tests.helpers.services import ADMIN_PASSWORD, Services


@pytest.mark.parametrize("settings_overrides", [{"rate_limit_refresh": "3/minute"}])
async def test_refresh_is_rate_limited_per_address(services: Services) -> None:
    statuses = []
    for _ in range(4):
        resp = await services.cc.post("/auth/refresh", json={"refresh_token": "guessed-refresh-token"})
        statuses.append(resp.status)
        if resp.status == 401:
            assert resp.headers["X-RateLimit-Limit"] == "3"
    assert statuses == [401, 401, 401, 429]
    doc = await resp.json()
    assert doc["code"] == "rate_limited" and doc["details"]["bucket"] == "refresh"
    assert int(resp.headers["Retry-After"]) >= 1
    # a genuine refresh from that address waits too; logins have their own bucket
    data = await services.token("admin", ADMIN_PASSWORD)
    resp = await services.cc.post("/auth/refresh", json={"refresh_token": data["refresh_token"]})
    assert resp.status == 429


@pytest.mark.parametrize(
    "settings_overrides", [{"rate_limit_refresh": "2/minute", "trusted_proxies": ("127.0.0.1",)}]
)
async def test_one_address_exhausting_refresh_does_not_block_another(services: Services) -> None:
    for _ in range(2):
        resp = await services.cc.post(
            "/auth/refresh", json={"token": "x"}, headers={"X-Forwarded-For": "203.0.113.5"}
        )
        assert resp.status == 401
    resp = await services.cc.post(
        "/auth/refresh", json={"token": "x"}, headers={"X-Forwarded-For": "203.0.113.5"}
    )
    assert resp.status == 429
    resp = await services.cc.post(
        "/auth/refresh", json={"token": "x"}, headers={"X-Forwarded-For": "198.51.100.7"}
    )
    assert resp.status == 401
