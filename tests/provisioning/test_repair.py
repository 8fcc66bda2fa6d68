"""provisioning.repair on a real surrealkv:// data directory damaged the way the old code could:
a NUL bound into rows (a batch's name, a nested key, an audit record whose hash covers
the NUL), after which every listing of those tables failed for good."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from surrealdb import AsyncSurreal

from provisioning.repair import repair_store, scan_store
from shared.errors import StoreError
from shared.security.audit import AuditEntry, AuditLog, chain_hash, timestamp_now
from shared.security.repositories import AUDIT_HEAD_ID, audit_key
from shared.settings import load_settings
from shared.store.secrets import SecretBox
from shared.store.store import CLOSE_SETTLE_S, Store
from tests.helpers.batches import batch, op, wait_batch
from tests.helpers.services import running_apps

NS, DB = "provisioning", "main"
# One key-encryption key for every reopening of a test store (a bare Store gets its own).
KEYS = SecretBox.ephemeral()


def url_of(tmp_path: Path) -> str:
    return f"surrealkv://{tmp_path / 'db'}"


@asynccontextmanager
async def opened(tmp_path: Path) -> AsyncIterator[Store]:
    store = Store(url_of(tmp_path), namespace=NS, database=DB, secrets=KEYS)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@asynccontextmanager
async def apps(tmp_path: Path, store: Store) -> AsyncIterator[tuple[TestClient, TestClient]]:
    """Both services, authentication off (the audit log still records every change)."""
    settings = load_settings(db_url=url_of(tmp_path), data_dir=tmp_path, auth_enabled=False)
    async with running_apps(settings, store) as (cc, orch):
        yield orch, cc


async def audit(store: Store, *actions: str) -> None:
    log = AuditLog()
    await log.start(store)
    try:
        for action in actions:
            await log.record(AuditEntry(action=action, resource="test", result="success", service="test"))
    finally:
        await log.stop()


async def raw(tmp_path: Path, *statements: tuple[str, dict[str, Any]]) -> None:
    """Statements through the bare SDK, as the old code could send them (nothing refused)."""
    db = AsyncSurreal(url_of(tmp_path))
    await db.connect()
    await db.use(NS, DB)
    try:
        for sql, params in statements:
            await db.query(sql, params)
    finally:
        await db.close()
        await asyncio.sleep(CLOSE_SETTLE_S)


async def damaged_audit_record(store: Store, resource: str) -> tuple[str, dict[str, Any]]:
    """The next audit record, hashed over text holding NUL, as the old appender wrote it."""
    head = await store.query("SELECT seq, hash FROM type::thing('audit_head', $id)", {"id": AUDIT_HEAD_ID})
    seq, prev = int(head[0]["seq"]), str(head[0]["hash"])
    row: dict[str, Any] = {
        "id": f"nul{seq + 1}",
        "seq": seq + 1,
        "timestamp": timestamp_now(),
        "action": "batch.cancel",
        "resource": resource,
        "result": "failure",
        "details": {"method": "POST", "status": 404},
        "service": "orchestrator",
        "prev_hash": prev,
    }
    row["hash"] = chain_hash(prev, row)
    row["lk"] = audit_key(seq + 1)  # the list key migration 0011 gives every record (not hashed)
    sql = (
        "CREATE type::thing('audit', $row.id) CONTENT $row RETURN NONE;"
        "UPDATE type::thing('audit_head', $head) SET seq = $row.seq, hash = $row.hash RETURN NONE"
    )
    return sql, {"row": row, "head": AUDIT_HEAD_ID}


async def reads(orch: TestClient, cc: TestClient) -> dict[str, int]:
    out = {}
    for name, client, path in (
        ("batches", orch, "/batch/operations"),
        ("tasks", orch, "/tasks"),
        ("audit_logs", cc, "/audit/logs"),
        ("audit_verify", cc, "/audit/verify"),
    ):
        out[name] = (await client.get(path)).status
    return out


async def test_repair_makes_every_read_work_again_and_keeps_the_chain_verifiable(tmp_path: Path) -> None:
    # A normal history: two batches, a few audit records.
    async with opened(tmp_path) as store, apps(tmp_path, store) as (orch, cc):
        ids = []
        for name in ("victim", "bystander"):
            resp = await orch.post("/batch/execute", json=batch(op("a"), op("b", ["a"]), name=name))
            assert resp.status == 201, await resp.text()
            ids.append((await resp.json())["data"]["batch_id"])
        for batch_id in ids:
            await wait_batch(orch, batch_id)
        await audit(store, "before.1", "before.2")
        audit_sql = await damaged_audit_record(store, "batch/operations/x\x00y/cancel")
    # What the old code let through: NUL in a value, in a nested key, in an audit record.
    await raw(
        tmp_path,
        ("UPDATE workflow SET name = $n WHERE name = 'victim' RETURN NONE", {"n": "evil\x00"}),
        ("UPDATE task_page SET extra = $o RETURN NONE", {"o": {"k\x00": ["v\x00", 1, {"deep": "\x00"}]}}),
        audit_sql,
    )
    async with opened(tmp_path) as store:
        await audit(store, "after.1", "after.2")  # the chain goes on past the damaged record
        found = await scan_store(store)
        assert found == {"audit": 1, "task_page": 2, "workflow": 1}
        with pytest.raises(StoreError):
            await store.query("SELECT * FROM workflow")
        async with apps(tmp_path, store) as (orch, cc):
            assert await reads(orch, cc) == {
                "batches": 503,
                "tasks": 200,  # task pages are read by the fields they need, not the damaged one
                "audit_logs": 503,
                "audit_verify": 503,
            }

        report = await repair_store(store)

        assert {t.table: t.rows for t in report.tables} == {"audit": 1, "task_page": 2, "workflow": 1}
        assert report.audit_chain == "rehashed"
        assert report.audit_records == (report.audit_rehashed_from,)
        assert report.previous_audit_head
        assert await scan_store(store) == {}
        info = await store.query("INFO FOR DB")
        assert info[0]["functions"] == {}  # the repair's helper is gone
        async with apps(tmp_path, store) as (orch, cc):
            assert await reads(orch, cc) == {
                "batches": 200,
                "tasks": 200,
                "audit_logs": 200,
                "audit_verify": 200,
            }
            names = {b["name"] for b in (await (await orch.get("/batch/operations")).json())["data"]}
            assert names == {"evil\ufffd", "bystander"}
            verify = (await (await cc.get("/audit/verify")).json())["data"]
            assert verify["valid"] is True, verify
            resp = await cc.get("/audit/logs", params={"format": "ndjson"})
            assert resp.status == 200
            records = [json.loads(line) for line in (await resp.text()).splitlines()]
            assert all("success" not in r for r in records)  # no error envelope spliced in
            actions = [r["action"] for r in sorted(records, key=lambda r: r["seq"])]
            assert actions[-1] == "store.repair"
            assert {"before.1", "batch.cancel", "after.2"} <= set(actions)
            repaired = next(r for r in records if r["action"] == "batch.cancel")
            assert repaired["resource"] == "batch/operations/x\ufffdy/cancel"
            last = next(r for r in records if r["action"] == "store.repair")
            assert last["details"]["previous_audit_head"] == report.previous_audit_head

    # A start on the repaired directory resumes nothing broken; a second repair finds nothing.
    async with opened(tmp_path) as store:
        again = await repair_store(store)
        assert again.tables == () and again.audit_chain == "untouched"


async def test_a_chain_broken_before_the_repair_is_not_rehashed(tmp_path: Path) -> None:
    async with opened(tmp_path) as store:
        await audit(store, "one", "two", "three")
        audit_sql = await damaged_audit_record(store, "x\x00")
    await raw(
        tmp_path,
        audit_sql,
        ("UPDATE audit SET action = 'edited' WHERE seq = 2 RETURN NONE", {}),  # real tampering
    )
    async with opened(tmp_path) as store:
        report = await repair_store(store)
        assert report.audit_chain == "broken"
        assert report.audit_rehashed_from is None
        log = AuditLog()
        await log.start(store)
        try:
            verify = await log.verify()
        finally:
            await log.stop()
        assert verify["valid"] is False  # still names the tampering instead of hiding it
        assert await scan_store(store) == {}


async def test_a_clean_store_is_left_untouched(store: Store) -> None:
    await audit(store, "one")
    report = await repair_store(store)
    assert report.tables == () and report.rows_repaired == 0
    assert report.as_dict()["rows_repaired"] == 0
    rows = await store.query("SELECT action FROM audit")
    assert [r["action"] for r in rows] == ["one"]  # not even the repair is audited


async def test_provisioning_doctor_repair_fixes_a_damaged_data_directory(tmp_path: Path) -> None:
    """The operator's path: `provisioning doctor` finds the damage, `--repair` fixes it."""
    async with opened(tmp_path) as store:
        await audit(store, "one", "two")
        statement = await damaged_audit_record(store, "x\x00y")
    await raw(tmp_path, statement, ("CREATE workflow:evil SET name = $n RETURN NONE", {"n": "evil\x00"}))
    env = {**os.environ, "PROVISIONING_DATA_DIR": str(tmp_path), "PYTHONPATH": os.getcwd()}

    def doctor(*flags: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "provisioning", "doctor", *flags],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    found = await asyncio.to_thread(doctor)
    line = next(x for x in found.stdout.splitlines() if "store text" in x)
    assert line.startswith("FAIL") and "audit (1)" in line and "workflow (1)" in line, found.stdout
    fixed = await asyncio.to_thread(doctor, "--repair")
    line = next(x for x in fixed.stdout.splitlines() if "store text" in x)
    assert line.startswith("fixed") and "rehashed" in line, fixed.stdout + fixed.stderr
    again = await asyncio.to_thread(doctor)
    line = next(x for x in again.stdout.splitlines() if "store text" in x)
    assert line.startswith("ok"), again.stdout
    async with opened(tmp_path) as store:
        rows = await store.query("SELECT name FROM workflow:evil")
        assert rows[0]["name"] == "evil\ufffd"
        log = AuditLog()
        await log.start(store)
        try:
            verified = await log.verify()
        finally:
            await log.stop()
        assert verified["valid"] is True and verified["records"] >= 3, verified
