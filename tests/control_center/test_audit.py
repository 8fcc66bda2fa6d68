"""The audit log: what gets recorded on both services, the seed's filters, exports,
and the hash chain catching records edited or deleted directly in the store."""

from __future__ import annotations

import asyncio
import csv
import io
import itertools
import json
from typing import Any

from shared.security.audit import AUDIT, AuditEntry, canonical
from tests.helpers.services import ADMIN_PASSWORD, USER_PASSWORD, Services, bearer, logged

BATCH = {
    "name": "audited",
    "operations": [{"id": "a", "type": "server_batch", "provider": "local", "simulate": {"latency_s": 0}}],
}


async def logs(services: Services, token: str, **params: Any) -> tuple[list[dict[str, Any]], Any]:
    resp = await services.cc.get("/audit/logs", params=params, headers=bearer(token))
    doc = await resp.json()
    assert resp.status == 200, doc
    return doc["data"], resp.headers


async def test_changes_and_security_events_on_both_services_are_recorded(services: Services) -> None:
    admin = await services.admin()
    resp = await services.orch.post("/batch/execute", json=BATCH, headers=bearer(admin))
    assert resp.status == 201
    batch_id = (await resp.json())["data"]["batch_id"]
    resp = await services.cc.post(
        "/users",
        headers=bearer(admin),
        json={"username": "viewer1", "password": USER_PASSWORD, "roles": ["viewer"]},
    )
    assert resp.status == 201
    status, _ = await services.login("viewer1", "wrong-password-123")
    assert status == 401
    viewer = (await services.token("viewer1", USER_PASSWORD))["token"]
    resp = await services.cc.get("/users", headers=bearer(viewer))
    assert resp.status == 403

    records, headers = await logs(services, admin, limit=1000)
    by_action: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_action.setdefault(r["action"], []).append(r)
    [submit] = by_action["batch.execute"]
    assert submit["service"] == "orchestrator" and submit["result"] == "success"
    assert submit["resource"] == "batch/execute" and submit["details"]["status"] == 201
    assert submit["user_id"] and submit["ip"] == "127.0.0.1" and submit["request_id"]
    [created] = by_action["users.create"]
    assert created["details"]["username"] == "viewer1"
    logins = by_action["auth.login"]
    assert {r["result"] for r in logins} >= {"success", "failure", "mfa_setup_required"}
    failed = next(r for r in logins if r["result"] == "failure")
    assert failed["details"]["reason"] == "wrong_password"
    [denied] = by_action["users.read"]
    assert denied["result"] == "denied" and denied["username"] == "viewer1"
    assert "auth.mfa_enabled" in by_action and "auth.mfa_setup" in by_action
    # reads that were allowed are not audited
    assert "tasks.read" not in by_action
    assert headers["X-Total-Count"] == str(len(records))
    assert batch_id


async def test_records_are_in_the_seed_shape_and_chained(services: Services) -> None:
    admin = await services.admin()
    records, _ = await logs(services, admin)
    record = records[0]
    assert {"id", "timestamp", "user_id", "action", "resource", "result", "details"} <= set(record)
    assert record["timestamp"].endswith("Z")
    ordered = sorted(records, key=lambda r: r["seq"])
    assert ordered[0]["prev_hash"] == ""
    for before, after in itertools.pairwise(ordered):
        assert after["prev_hash"] == before["hash"]
    assert [r["seq"] for r in records] == sorted((r["seq"] for r in records), reverse=True)


async def test_filters(services: Services) -> None:
    admin = await services.admin()
    uid, viewer = await services.user("viewer1", "viewer", admin_token=admin)
    await services.cc.get("/users", headers=bearer(viewer))
    mine, _ = await logs(services, admin, user_id=uid)
    assert mine and all(r["user_id"] == uid for r in mine)
    auth, _ = await logs(services, admin, action="auth.*")
    assert auth and all(r["action"].startswith("auth.") for r in auth)
    exact, _ = await logs(services, admin, action="auth.login")
    assert exact and all(r["action"] == "auth.login" for r in exact)
    users, _ = await logs(services, admin, resource="users*")
    assert users and all(r["resource"].startswith("users") for r in users)
    denied, _ = await logs(services, admin, result="denied")
    assert [r["action"] for r in denied] == ["users.read"]
    everything, _ = await logs(services, admin, limit=1000)
    middle = sorted(everything, key=lambda r: r["seq"])[len(everything) // 2]["timestamp"]
    later, _ = await logs(services, admin, **{"from": middle, "limit": 1000})
    earlier, _ = await logs(services, admin, to=middle, limit=1000)
    assert all(r["timestamp"] >= middle for r in later)
    assert all(r["timestamp"] <= middle for r in earlier)
    assert len(later) + len(earlier) == len(everything) + 1
    page, headers = await logs(services, admin, limit=2, offset=1)
    assert len(page) == 2 and headers["X-Offset"] == "1" and 'rel="next"' in headers["Link"]
    resp = await services.cc.get("/audit/logs", params={"from": "yesterday"}, headers=bearer(admin))
    assert resp.status == 422


async def test_exports(services: Services) -> None:
    admin = await services.admin()
    records, _ = await logs(services, admin, limit=1000)
    resp = await services.cc.get("/audit/logs", params={"format": "ndjson"}, headers=bearer(admin))
    assert resp.status == 200 and resp.content_type == "application/x-ndjson"
    assert resp.headers["X-Request-ID"]
    lines = [json.loads(line) for line in (await resp.text()).splitlines()]
    assert [r["id"] for r in lines] == [r["id"] for r in records]
    resp = await services.cc.get(
        "/audit/logs", params={"format": "csv", "action": "auth.*"}, headers=bearer(admin)
    )
    assert resp.status == 200 and resp.content_type == "text/csv"
    rows = list(csv.DictReader(io.StringIO(await resp.text())))
    assert rows and all(r["action"].startswith("auth.") for r in rows)
    assert isinstance(json.loads(rows[0]["details"]), dict)
    resp = await services.cc.get(
        "/audit/logs", params={"format": "ndjson", "limit": 2}, headers=bearer(admin)
    )
    assert len((await resp.text()).splitlines()) == 2


async def verify(services: Services, token: str) -> dict[str, Any]:
    resp = await services.cc.get("/audit/verify", headers=bearer(token))
    doc = await resp.json()
    assert resp.status == 200, doc
    data: dict[str, Any] = doc["data"]
    return data


async def test_verification_catches_a_record_edited_in_the_store(services: Services) -> None:
    admin = await services.admin()
    status, _ = await services.login("admin", "wrong-password-123")
    assert status == 401
    result = await verify(services, admin)
    assert result["valid"] is True and result["records"] >= 5
    records, _ = await logs(services, admin, result="failure", action="auth.login")
    target = records[0]
    # someone with database access turns the failed login into a success
    await services.store.write(*[_edit(target["id"], {"result": "success"})])
    result = await verify(services, admin)
    assert result["valid"] is False
    assert result["broken_at"] == target["id"]
    assert result["records"] == target["seq"] - 1


async def test_verification_catches_deleted_and_rechained_records(services: Services) -> None:
    admin = await services.admin()
    records, _ = await logs(services, admin, limit=1000)
    ordered = sorted(records, key=lambda r: r["seq"])
    victim = ordered[2]
    from shared.store.writes import Stmt

    await services.store.write(Stmt("DELETE type::thing('audit', $id)", {"id": victim["id"]}))
    result = await verify(services, admin)
    assert result["valid"] is False and result["broken_at"] == ordered[3]["id"]
    # deleting the newest records is caught by the chain's head
    await services.store.write(Stmt("DELETE audit WHERE seq > 1"))
    result = await verify(services, admin)
    assert result["valid"] is False
    assert "missing" in result["reason"]


def _edit(record_id: str, patch: dict[str, Any]) -> Any:
    from shared.store.writes import Merge

    return Merge("audit", record_id, patch)


async def test_chain_keeps_order_under_concurrent_appends(services: Services) -> None:
    import asyncio

    log = services.cc.app[AUDIT]
    await asyncio.gather(
        *(
            log.record(AuditEntry(action="test.burst", resource=f"r/{i}", result="success", details={"i": i}))
            for i in range(200)
        )
    )
    admin = await services.admin()
    result = await verify(services, admin)
    assert result["valid"] is True and result["records"] >= 200


async def test_no_secret_reaches_the_audit_log(services: Services) -> None:
    admin_data = await services.token("admin", ADMIN_PASSWORD)
    admin = admin_data["token"]
    await services.user("viewer1", "viewer", admin_token=admin)
    await services.cc.post(
        "/users/me/password",
        headers=bearer(admin),
        json={"current_password": ADMIN_PASSWORD, "new_password": ADMIN_PASSWORD},
    )
    await services.cc.post("/auth/refresh", json={"refresh_token": admin_data["refresh_token"]})
    rows = await services.store.query("SELECT * FROM audit")
    text = "\n".join(canonical(r).decode() for r in rows)
    for secret in services.secrets.values:
        assert not logged(secret, text)


async def test_verify_over_http_past_page_boundaries(services: Services) -> None:
    """An untouched log past 500 records was reported as tampered (issue 8, finding 3)."""
    admin = await services.admin()
    log = services.cc.app[AUDIT]
    for size in (501, 499, 1):  # 501, 1000, 1001 in all, with the login's own records
        await asyncio.gather(
            *(
                log.record(AuditEntry(action="test.fill", resource=f"r/{i}", result="success"))
                for i in range(size)
            )
        )
        result = await verify(services, admin)
        assert result["valid"] is True, result
    total = result["records"]
    assert total > 1001
    log.verify_page = 7  # tiny pages: many boundaries
    assert await verify(services, admin) == {"valid": True, "records": total}


async def test_verify_over_http_names_the_record_edited_on_a_page_boundary(services: Services) -> None:
    admin = await services.admin()
    log = services.cc.app[AUDIT]
    await asyncio.gather(
        *(
            log.record(AuditEntry(action="test.fill", resource=f"r/{i}", result="success"))
            for i in range(1100)
        )
    )
    [target] = await services.store.query("SELECT * FROM audit WHERE seq = 1001")
    await services.store.write(_edit(target["id"], {"resource": "r/forged"}))
    result = await verify(services, admin)
    assert result == {
        "valid": False,
        "records": 1000,
        "broken_at": target["id"],
        "broken_seq": 1001,
        "reason": "record 1001's content does not match its hash (edited)",
    }
