"""API tokens under attack: guessed and forged tokens, a token's secret at rest, a revoked or
narrowed token on every door (both services, MCP, the seed's invoke), a token that would
exceed its user, and a stream kept open after revocation."""

from __future__ import annotations

import hashlib
import json

from shared.security.api_tokens import digest
from shared.security.repositories import ApiTokenRepository
from tests.helpers.api_tokens import create_token
from tests.helpers.batches import batch, op
from tests.helpers.mcp import MCP_PATH, modern_call
from tests.helpers.services import Services, bearer


async def test_forged_and_guessed_tokens_are_refused(services: Services) -> None:
    token, record = await create_token(services, await services.admin())
    key, secret = record["id"], token.rsplit("_", 1)[1]
    flipped = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    for forged in (
        f"pvt_{key}_{flipped}",  # the right key, a wrong secret
        f"pvt_zzzzzzzz_{secret}",  # the right secret under another key
        f"pvt_{key}",  # the visible prefix alone
        f"pvt_{key}_{secret}x",  # longer
        token.upper(),
    ):
        for client, path in ((services.orch, "/tasks"), (services.cc, "/users/me")):
            resp = await client.get(path, headers=bearer(forged))
            assert resp.status == 401, (forged[:12], path)


async def test_the_secret_is_stored_only_as_its_digest(services: Services) -> None:
    token, record = await create_token(services, await services.admin())
    row = await ApiTokenRepository(services.store).get(record["id"])
    assert row is not None
    assert row["hash"] == digest(token) == hashlib.sha256(token.encode()).hexdigest()
    assert token not in json.dumps(row, default=str)
    assert token.rsplit("_", 1)[1] not in json.dumps(row, default=str)


async def test_a_revoked_token_is_refused_by_mcp_and_invoke(services: Services) -> None:
    admin = await services.admin()
    token, record = await create_token(services, admin)
    body, headers = modern_call("tools/list")
    resp = await services.orch.post(MCP_PATH, json=body, headers={**headers, **bearer(token)})
    assert resp.status == 200
    resp = await services.cc.delete(f"/auth/tokens/{record['id']}", headers=bearer(admin))
    assert resp.status == 200
    resp = await services.orch.post(MCP_PATH, json=body, headers={**headers, **bearer(token)})
    assert resp.status == 401 and 'error="invalid_token"' in resp.headers["WWW-Authenticate"]
    resp = await services.orch.post(
        "/ext/mcp_http/invoke",
        json={"tool": "provisioning.batch.list", "parameters": {}},
        headers=bearer(token),
    )
    assert resp.status == 401


async def test_a_viewers_token_cannot_submit_anywhere(services: Services) -> None:
    _, viewer = await services.user("vera", "viewer")
    token, _ = await create_token(services, viewer)
    resp = await services.orch.post("/batch/execute", json=batch(op("a")), headers=bearer(token))
    assert resp.status == 403
    resp = await services.orch.post(
        "/ext/mcp_http/invoke", json={"tool": "provisioning.batch.submit", "parameters": batch(op("a"))},
        headers=bearer(token),
    )  # fmt: skip
    assert resp.status == 403
    body, headers = modern_call(
        "tools/call", {"name": "provisioning.batch.submit", "arguments": batch(op("a"))}
    )
    resp = await services.orch.post(MCP_PATH, json=body, headers={**headers, **bearer(token)})
    doc = await resp.json()
    assert resp.status == 200 and doc["result"]["isError"] is True
    resp = await services.orch.get("/batch/operations", headers=bearer(token))
    assert resp.headers["X-Total-Count"] == "0"


async def test_a_token_never_exceeds_its_user(services: Services) -> None:
    """A token scoped wider than its user (``*:*``) is refused at creation for a non-admin; an
    operator's token loses what the operator loses when demoted."""
    admin = await services.admin()
    olga_id, olga = await services.user("olga", "operator", admin_token=admin)
    resp = await services.cc.post(
        "/auth/tokens", json={"name": "x", "expires_in_days": 1, "scopes": ["*:*"]}, headers=bearer(olga)
    )
    assert resp.status == 422
    token, _ = await create_token(services, olga)
    body = batch(op("a"), check_mode=True)
    resp = await services.orch.post("/batch/execute", json=body, headers=bearer(token))
    assert resp.status == 200
    resp = await services.cc.put(f"/users/{olga_id}", json={"roles": ["viewer"]}, headers=bearer(admin))
    assert resp.status == 200, await resp.text()
    resp = await services.orch.post("/batch/execute", json=body, headers=bearer(token))
    assert resp.status == 403
    resp = await services.orch.get("/tasks", headers=bearer(token))
    assert resp.status == 200


async def test_a_token_in_the_url_is_refused_outside_the_streams(services: Services) -> None:
    token, _ = await create_token(services, await services.admin())
    resp = await services.orch.get(f"/tasks?token={token}")
    assert resp.status == 401
