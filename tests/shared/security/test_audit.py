"""The audit chain's verification walk and the refusal coalescing, through the real store.

The walk once lost record 501 (an open lower bound on the ``seq`` index skips a row
on the embedded engine), so every size around a page boundary is checked, with the
default page and with tiny ones, and every kind of tampering is placed on a boundary.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from surrealdb import RecordID

from shared.security.audit import DETAIL_CHARS, DETAIL_ITEMS, AuditEntry, AuditLog, chain_hash, timestamp_now
from shared.security.repositories import AuditRepository
from shared.store.store import Store
from shared.store.writes import Insert, Merge, Stmt


@pytest.fixture
async def audit(store: Store) -> AsyncIterator[AuditLog]:
    log = AuditLog()
    await log.start(store)
    yield log
    await log.stop()


async def fill(log: AuditLog, n: int) -> None:
    """``n`` records, chained by the appender in batches (one commit per 500)."""
    await asyncio.gather(
        *(log.record(AuditEntry(action="test.fill", resource=f"r/{i}", result="success")) for i in range(n))
    )


async def fill_bulk(store: Store, n: int, chunk: int = 2000) -> None:
    """``n`` chained records written straight through the store, ``chunk`` per commit
    (moving the head as the appender does): a large chain in a second or two."""
    repo = AuditRepository(store)
    seq, prev = await repo.head()
    while n > 0:
        rows = []
        for _ in range(min(chunk, n)):
            seq += 1
            record: dict[str, Any] = {
                "id": uuid.uuid4().hex,
                "seq": seq,
                "timestamp": timestamp_now(),
                "action": "test.fill",
                "resource": f"r/{seq}",
                "result": "success",
                "details": {},
                "prev_hash": prev,
            }
            record["hash"] = prev = chain_hash(prev, record)
            rows.append(record)
        await store.write(*repo.append(seq - len(rows), seq, prev, rows))
        n -= len(rows)


async def row(store: Store, seq: int) -> dict[str, Any]:
    [found] = await store.query("SELECT * FROM audit WHERE seq = $seq", {"seq": seq})
    return dict(found)


@pytest.mark.parametrize("n", [0, 1, 499, 500, 501, 999, 1000, 1001])
@pytest.mark.parametrize("page", [1000, 500, 7])
async def test_an_untouched_chain_is_valid_at_every_size(audit: AuditLog, n: int, page: int) -> None:
    await fill(audit, n)
    assert await audit.verify(page) == {"valid": True, "records": n}


async def test_page_size_one(audit: AuditLog) -> None:
    await fill(audit, 503)
    assert await audit.verify(1) == {"valid": True, "records": 503}


async def test_ten_thousand_records(audit: AuditLog, store: Store) -> None:
    await fill_bulk(store, 10_000)
    assert await audit.verify() == {"valid": True, "records": 10_000}
    await fill(audit, 1)  # the appender finds the head moved by another writer and chains after it
    assert await audit.verify(1001) == {"valid": True, "records": 10_001}


async def test_a_record_edited_in_the_store(audit: AuditLog, store: Store) -> None:
    await fill_bulk(store, 1200)
    target = await row(store, 501)  # the first record of the second 500-page
    await store.write(Merge("audit", target["id"], {"result": "failure"}))
    for page in (1000, 500, 7):
        result = await audit.verify(page)
        assert result["valid"] is False
        assert (result["broken_seq"], result["broken_at"], result["records"]) == (501, target["id"], 500)
        assert result["reason"] == "record 501's content does not match its hash (edited)"


async def test_an_edit_with_a_recomputed_hash_breaks_the_next_link(audit: AuditLog, store: Store) -> None:
    await fill_bulk(store, 600)
    target = await row(store, 500)
    forged = {**target, "result": "failure"}
    forged["hash"] = chain_hash(target["prev_hash"], forged)
    await store.write(Merge("audit", target["id"], {"result": "failure", "hash": forged["hash"]}))
    result = await audit.verify(500)
    assert result["valid"] is False and result["broken_seq"] == 501
    assert result["reason"] == "record 501 is not chained to record 500: one of them was altered"


async def test_a_deleted_record(audit: AuditLog, store: Store) -> None:
    await fill_bulk(store, 1200)
    victim, after = await row(store, 1000), await row(store, 1001)
    await store.write(Stmt("DELETE type::thing('audit', $id)", {"id": victim["id"]}))
    for page in (1000, 999, 500, 3):
        result = await audit.verify(page)
        assert result["valid"] is False and result["records"] == 999
        assert result["broken_seq"] == 1000 and result["broken_at"] == after["id"]
        assert result["reason"] == "record 1000 is missing (deleted): record 1001 follows record 999"


async def test_a_deleted_run_of_records_spanning_a_page(audit: AuditLog, store: Store) -> None:
    await fill_bulk(store, 1200)
    await store.write(Stmt("DELETE audit WHERE seq >= 400 AND seq <= 1100"))
    result = await audit.verify(500)
    assert result["broken_seq"] == 400
    assert result["reason"] == "records 400 to 1100 are missing (deleted): record 1101 follows record 399"


async def test_the_newest_records_deleted(audit: AuditLog, store: Store) -> None:
    await fill_bulk(store, 1001)
    last_kept = await row(store, 998)
    await store.write(Stmt("DELETE audit WHERE seq > 998"))
    result = await audit.verify()
    assert result["valid"] is False and result["records"] == 998
    assert result["broken_seq"] == 999 and result["broken_at"] == last_kept["id"]
    assert result["reason"] == "the chain's head is record 1001; records after 998 are missing"


async def test_a_forged_record_inserted_between_two(audit: AuditLog, store: Store) -> None:
    await fill_bulk(store, 1200)
    before = await row(store, 500)
    forged = {**before, "id": "forged", "seq": 500.5, "action": "users.delete"}
    forged["prev_hash"] = before["hash"]
    forged["hash"] = chain_hash(before["hash"], forged)
    await store.write(Insert("audit", forged))
    for page in (1000, 500, 2):
        result = await audit.verify(page)
        assert result["valid"] is False and result["records"] == 500
        assert result["broken_at"] == "forged" and result["broken_seq"] == 500.5
        assert result["reason"] == (
            "record 500.5 is not part of the chain: it lies between record 500 and record 501 (inserted)"
        )


async def test_a_forged_record_inserted_by_renumbering(audit: AuditLog, store: Store) -> None:
    """Records from 501 on moved up one, a well-chained forgery put at 501 and the head moved."""
    await fill_bulk(store, 800)
    before = await row(store, 500)
    # By ids read first: an UPDATE whose WHERE scans the seq index it moves rows forward
    # in meets them again at its next scan step and never ends (the engine reads a scan
    # in steps of SURREAL_NORMAL_FETCH_SIZE records: shared/store/scans.py).
    moved = [
        RecordID("audit", rid) for rid in await store.query("SELECT VALUE id FROM audit WHERE seq > 500")
    ]
    await store.write(Stmt("UPDATE $ids SET seq = seq + 1000", {"ids": moved}))  # seq is unique
    await store.write(Stmt("UPDATE $ids SET seq = seq - 999", {"ids": moved}))
    forged = {**before, "id": "forged", "seq": 501, "action": "users.delete", "prev_hash": before["hash"]}
    forged["hash"] = chain_hash(before["hash"], forged)
    await store.write(Insert("audit", forged), Stmt("UPDATE audit_head:main SET seq = 801"))
    result = await audit.verify(500)
    assert result["valid"] is False and result["records"] == 501
    assert result["broken_at"] == "forged" and result["broken_seq"] == 501
    assert result["reason"] == "record 501 was inserted: record 502 is chained to record 500"


async def test_a_row_outside_the_chain(audit: AuditLog, store: Store) -> None:
    await fill(audit, 20)
    await store.write(Insert("audit", {"id": "stray", "action": "users.delete"}))
    result = await audit.verify()
    assert result["valid"] is False and result["broken_at"] == "stray" and result["records"] == 20
    assert (
        result["reason"] == "the table holds 21 records but the chain has 20: "
        "a row without a seq (id stray) is not part of the chain"
    )


async def test_a_forged_head(audit: AuditLog, store: Store) -> None:
    await fill(audit, 10)
    await store.write(Stmt("UPDATE audit_head:main SET hash = 'f00'"))
    result = await audit.verify()
    assert result["valid"] is False and result["broken_seq"] == 10
    assert result["reason"] == "record 10's hash does not match the chain's head"


async def test_records_keep_being_appended_while_the_walk_runs(audit: AuditLog) -> None:
    await fill(audit, 600)
    walk = asyncio.create_task(audit.verify(7))
    await fill(audit, 300)
    result = await walk
    assert result["valid"] is True and result["records"] >= 600
    assert await audit.verify() == {"valid": True, "records": 900}


# -- bounded records -----------------------------------------------------------------------------


async def test_a_record_copies_nothing_big(audit: AuditLog) -> None:
    huge = "x" * 1_000_000
    stored = await audit.record(
        AuditEntry(
            action="test." + huge,
            resource="r/" + huge,
            result="failure",
            username=huge,
            details={
                "field": huge,
                "many": list(range(10_000)),
                "deep": {"a": {"b": {"c": {"d": {"e": 1}}}}},
            },
            request_id="a\x00b",
        )
    )
    assert len(stored["resource"]) < 300 and len(stored["username"]) < 300 and len(stored["action"]) < 300
    details = stored["details"]
    assert len(details["field"]) < DETAIL_CHARS + 30
    assert details["field"].endswith(f"…(+{1_000_000 - DETAIL_CHARS} chars)")
    assert (
        len(details["many"]) == DETAIL_ITEMS + 1 and details["many"][-1] == f"… {10_000 - DETAIL_ITEMS} more"
    )
    assert details["deep"] == {"a": {"b": {"c": "…(nested deeper)"}}}
    assert stored["request_id"] == "a\ufffdb"
    assert await audit.verify() == {"valid": True, "records": 1}


# -- refused authentications -------------------------------------------------------------------------


def refusal(ip: str = "203.0.113.9", user_id: str | None = None) -> AuditEntry:
    details = {"reason": "invalid", "route": "/tasks"}
    return AuditEntry("auth.refused", "tasks", "denied", user_id=user_id, ip=ip, service="s", details=details)


async def refused_rows(store: Store) -> list[dict[str, Any]]:
    return list(await store.query("SELECT * FROM audit WHERE action = 'auth.refused' ORDER BY seq"))


async def test_refusals_from_one_address_are_one_record_and_a_count(audit: AuditLog, store: Store) -> None:
    await asyncio.gather(*(audit.refused(refusal(), "invalid", f"/r{i % 7}") for i in range(1000)))
    assert len(await refused_rows(store)) == 1
    await audit.flush_refusals(everything=True)
    first, summary = await refused_rows(store)
    assert first["details"]["count"] == 1 and first["ip"] == "203.0.113.9"
    assert summary["details"]["count"] == 999 and summary["details"]["reason"] == "invalid"
    assert summary["ip"] == "203.0.113.9" and len(summary["details"]["routes"]) == 5
    assert summary["details"]["first_seq"] == first["seq"]


async def test_each_address_reason_and_user_is_its_own_record(audit: AuditLog, store: Store) -> None:
    await audit.refused(refusal("203.0.113.1"), "invalid", "/tasks")
    await audit.refused(refusal("203.0.113.2"), "invalid", "/tasks")
    await audit.refused(refusal("203.0.113.1"), "expired", "/tasks")
    await audit.refused(refusal("203.0.113.1", user_id="u1"), "expired", "/tasks")
    await audit.refused(refusal("203.0.113.1"), "invalid", "/tasks")
    assert len(await refused_rows(store)) == 4


async def test_a_new_window_starts_a_new_record(store: Store) -> None:
    log = AuditLog(refusal_window_s=0.05)
    await log.start(store)
    try:
        for _ in range(3):
            await log.refused(refusal(), "invalid", "/tasks")
        await asyncio.sleep(0.06)
        await log.refused(refusal(), "invalid", "/tasks")  # ends the old window first
        rows = await refused_rows(store)
        assert [r["details"]["count"] for r in rows] == [1, 2, 1]
    finally:
        await log.stop()


async def test_the_window_is_summarised_without_another_refusal(store: Store) -> None:
    log = AuditLog(refusal_window_s=0.05)
    await log.start(store)
    try:
        for _ in range(5):
            await log.refused(refusal(), "invalid", "/tasks")
        for _ in range(40):  # the flusher runs every window/4
            await asyncio.sleep(0.02)
            if len(await refused_rows(store)) == 2:
                break
        assert [r["details"]["count"] for r in await refused_rows(store)] == [1, 4]
    finally:
        await log.stop()


async def test_many_addresses_fold_into_one_record_past_the_cap(store: Store) -> None:
    log = AuditLog(refusal_keys=10)
    await log.start(store)
    for i in range(500):
        await log.refused(refusal(f"198.51.100.{i % 250}"), "invalid", "/tasks")
    await log.stop()  # stopping writes the counts
    rows = await refused_rows(store)
    assert sum(r["details"]["count"] for r in rows) == 500
    assert len(rows) == 2 * 11
    assert [r["details"].get("overflow") for r in rows].count(True) == 2
