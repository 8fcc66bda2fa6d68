"""Creating API tokens over real HTTP for the suites that use them (no fixtures here)."""

from __future__ import annotations

from typing import Any

from tests.helpers.services import Services, bearer


async def create_token(
    services: Services, access: str, *, name: str = "automation", days: int = 30, **extra: Any
) -> tuple[str, dict[str, Any]]:
    """``POST /auth/tokens`` with a session's access token: ``(token, its record)``."""
    resp = await services.cc.post(
        "/auth/tokens", json={"name": name, "expires_in_days": days, **extra}, headers=bearer(access)
    )
    doc = await resp.json()
    assert resp.status == 201, doc
    token: str = doc["data"]["token"]
    services.secrets.add(token)
    return token, doc["data"]["api_token"]
