"""API8 (security misconfiguration): the audit log copies nothing big and nothing the
store cannot give back from a request, so no request can bloat it or break reading it."""

from __future__ import annotations

import json

from tests.helpers.services import Services, bearer


async def test_a_huge_path_is_clipped_in_the_audit_record(services: Services) -> None:
    admin = await services.admin()
    long_id = "x" * 7000
    resp = await services.orch.post(f"/batch/operations/{long_id}/cancel")  # no token: 401
    assert resp.status == 401
    resp = await services.orch.post(f"/batch/operations/{long_id}/cancel", headers=bearer(admin))
    assert resp.status in (404, 422)
    rows = await services.store.query(
        "SELECT * FROM audit WHERE string::starts_with(resource, 'batch/operations/x')"
    )
    assert len(rows) == 2
    for row in rows:
        assert len(row["resource"]) < 300 and row["resource"].endswith("chars)")
    resp = await services.cc.get("/audit/verify", headers=bearer(admin))
    assert (await resp.json())["data"]["valid"] is True


async def test_a_nul_in_an_unauthenticated_path_does_not_break_the_audit_log(services: Services) -> None:
    """Finding 2: an audited NUL made /audit/logs and /audit/verify answer 503 for good."""
    resp = await services.orch.post("/batch/operations/x%00y/cancel")
    assert resp.status in (400, 401, 422)
    admin = await services.admin()
    resp = await services.cc.get("/audit/logs", params={"limit": 1000}, headers=bearer(admin))
    assert resp.status == 200
    records = (await resp.json())["data"]
    assert all("\x00" not in (r["resource"] or "") for r in records)
    resp = await services.cc.get("/audit/verify", headers=bearer(admin))
    assert resp.status == 200 and (await resp.json())["data"]["valid"] is True
    resp = await services.cc.get("/audit/logs", params={"format": "ndjson"}, headers=bearer(admin))
    assert resp.status == 200
    # every line is a record (no error envelope spliced in; "503" may occur inside a hash)
    lines = [json.loads(line) for line in (await resp.text()).splitlines()]
    assert lines and all("seq" in line and "success" not in line for line in lines)
