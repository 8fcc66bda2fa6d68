"""API2 (broken authentication): every refused authentication leaves a trace in the audit
log (who if the token said so, from where, on which route, why), a flood of them leaves
only a few rows, and security records name the user they are about."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from shared.security.audit import AUDIT
from shared.security.backend import SECURITY
from tests.helpers.services import Services, bearer


async def refusals(services: Services) -> list[dict[str, Any]]:
    rows = await services.store.query("SELECT * FROM audit WHERE action = 'auth.refused' ORDER BY seq")
    return [dict(r) for r in rows]


async def test_a_get_with_a_bad_token_is_audited(services: Services) -> None:
    resp = await services.orch.get("/tasks", headers=bearer("not-a-jwt"))
    assert resp.status == 401
    resp = await services.cc.get("/users", headers={"Authorization": "Basic YWRtaW46YWRtaW4="})
    assert resp.status == 401
    resp = await services.orch.get("/batch/operations")
    assert resp.status == 401
    bad, malformed, missing = await refusals(services)
    assert bad["service"] == "orchestrator" and bad["result"] == "denied"
    assert bad["ip"] == "127.0.0.1" and bad["resource"] == "tasks" and bad["request_id"]
    assert bad["details"]["reason"] == "malformed" and bad["details"]["route"] == "/tasks"
    assert bad["details"]["method"] == "GET" and bad["details"]["count"] == 1
    assert "username" not in bad  # nobody is known from a token that is not one
    assert malformed["service"] == "control_center" and malformed["details"]["reason"] == "malformed"
    assert missing["details"]["reason"] == "missing" and missing["details"]["route"] == "/batch/operations"


async def test_expired_and_revoked_tokens_are_audited_with_their_user(services: Services) -> None:
    uid, viewer = await services.user("viewer1", "viewer")
    expired = (
        services.cc.app[SECURITY]
        .tokens.issue(
            user_id=uid, username="viewer1", roles=["viewer"], amr=["pwd"], session_id=None, ttl_s=-60
        )
        .token
    )
    services.secrets.add(expired)
    resp = await services.orch.get("/tasks", headers=bearer(expired))
    assert resp.status == 401
    resp = await services.cc.post("/auth/logout", headers=bearer(viewer))
    assert resp.status == 200
    resp = await services.orch.get("/tasks", headers=bearer(viewer))
    assert resp.status == 401
    resp = await services.cc.post("/auth/refresh", json={"token": viewer})
    assert resp.status == 401
    rows = await refusals(services)
    by_reason = {r["details"]["reason"]: r for r in rows if r["service"] == "orchestrator"}
    for reason in ("expired", "revoked"):
        assert by_reason[reason]["user_id"] == uid and by_reason[reason]["username"] == "viewer1"
        assert by_reason[reason]["details"]["route"] == "/tasks"
    [refresh] = [r for r in rows if r["details"]["route"] == "/auth/refresh"]
    assert refresh["user_id"] == uid and refresh["username"] == "viewer1"


async def test_websocket_auth_failures_are_audited(services: Services) -> None:
    uid, viewer = await services.user("viewer1", "viewer")
    with_query = None
    try:
        with_query = await services.orch.ws_connect("/ws?token=not-a-jwt")
    except aiohttp.WSServerHandshakeError as exc:
        assert exc.status == 401
    assert with_query is None
    # Refusals from one address for one reason share a record per window: end it, to see each.
    await services.orch.app[AUDIT].flush_refusals(everything=True)

    ws = await services.orch.ws_connect("/ws")
    await ws.send_json({"type": "auth", "token": "forged"})
    msg = await ws.receive(timeout=5)
    assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 4401
    await services.orch.app[AUDIT].flush_refusals(everything=True)

    live = await services.orch.ws_connect("/ws", headers=bearer(viewer))
    assert (await live.receive_json(timeout=5))["type"] == "welcome"
    await live.send_json({"type": "auth", "token": "also-forged"})
    assert (await live.receive_json(timeout=5))["type"] == "error"
    await live.close()

    upgrade, first_message, renewal = await refusals(services)
    assert upgrade["details"]["route"] == "/ws" and upgrade["details"]["channel"] == "http"
    assert (
        first_message["details"]["channel"] == "ws_auth" and first_message["details"]["reason"] == "malformed"
    )
    assert first_message["ip"] == "127.0.0.1" and first_message["service"] == "orchestrator"
    assert renewal["details"]["channel"] == "ws_reauth"
    assert renewal["user_id"] == uid and renewal["username"] == "viewer1"


async def test_a_flood_of_bad_tokens_leaves_a_bounded_number_of_rows(services: Services) -> None:
    before = len(await services.store.query("SELECT id FROM audit"))
    for burst in range(10):
        answers = await asyncio.gather(
            *(
                services.orch.get("/tasks", headers=bearer(f"bad-{burst}-{i}"))
                if i % 2
                else services.orch.post("/batch/operations/x/cancel", headers=bearer(f"bad-{burst}-{i}"))
                for i in range(100)
            )
        )
        assert {r.status for r in answers} == {401}
    assert len(await refusals(services)) == 1
    await services.orch.app[AUDIT].flush_refusals(everything=True)  # as the window's end does
    rows = await refusals(services)
    after = len(await services.store.query("SELECT id FROM audit"))
    assert len(rows) == 2 and after - before == 2
    assert sum(r["details"]["count"] for r in rows) == 1000
    assert rows[1]["details"]["first_seq"] == rows[0]["seq"]
    assert set(rows[1]["details"]["routes"]) == {"/tasks", "/batch/operations/{id}/cancel"}


async def test_forbidden_answers_carry_the_username(services: Services) -> None:
    uid, viewer = await services.user("viewer1", "viewer")
    resp = await services.cc.get("/users", headers=bearer(viewer))
    assert resp.status == 403
    resp = await services.orch.post("/batch/operations/x/cancel", headers=bearer(viewer))
    assert resp.status == 403
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await services.cc.ws_connect("/ws", headers=bearer(viewer))  # the security stream is for auditors
    assert refused.value.status == 403
    rows = await services.store.query("SELECT * FROM audit WHERE result = 'denied' ORDER BY seq")
    assert len(rows) == 3
    for row in rows:
        assert row["user_id"] == uid and row["username"] == "viewer1"


async def test_refresh_token_reuse_names_the_user(services: Services) -> None:
    uid, _ = await services.user("viewer1", "viewer")
    login = await services.token("viewer1", "user-password-for-tests")
    first = await services.cc.post("/auth/refresh", json={"refresh_token": login["refresh_token"]})
    assert first.status == 200
    services.secrets.add((await first.json())["data"]["token"], (await first.json())["data"]["refresh_token"])
    again = await services.cc.post("/auth/refresh", json={"refresh_token": login["refresh_token"]})
    assert again.status == 401
    [reused] = await services.store.query("SELECT * FROM audit WHERE action = 'auth.refresh_token_reused'")
    assert reused["user_id"] == uid and reused["username"] == "viewer1"
