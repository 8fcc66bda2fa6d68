"""A submission and its request's audit record are one commit (one sync before the
answer, not two), the record exactly what the audit middleware would have written,
and the chain still whole when another appender moved its head meanwhile."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from shared.errors import StoreError
from shared.security.actor import Actor
from shared.security.audit import AUDIT, AuditEntry, AuditLog
from shared.security.auth import ANONYMOUS
from shared.store.store import Store
from shared.store.writes import Insert, Write
from shared.web.keys import STORE
from tests.helpers.batches import batch, op, wait_batch


class Enqueued:
    """Every write queued on a store, one tuple per ``enqueue`` or ``notify`` (each
    commits atomically: a group commit joins several, never splits one). Observes; the
    writes go through."""

    def __init__(self, store: Store) -> None:
        self.calls: list[tuple[Write, ...]] = []
        enqueue, notify = store.enqueue, store.notify

        def spy_enqueue(*writes: Write) -> Any:
            self.calls.append(writes)
            return enqueue(*writes)

        def spy_notify(done: Any, *writes: Write) -> None:
            self.calls.append(writes)
            notify(done, *writes)

        store.enqueue = spy_enqueue  # type: ignore[method-assign]
        store.notify = spy_notify  # type: ignore[method-assign]

    def holding(self, table: str) -> list[tuple[Write, ...]]:
        return [c for c in self.calls if any(isinstance(w, Insert) and w.table == table for w in c)]


def audit_rows(writes: Sequence[Write]) -> list[dict[str, Any]]:
    return [w.row for w in writes if isinstance(w, Insert) and w.table == "audit"]


async def records_of(orch: TestClient, request_id: str) -> list[dict[str, Any]]:
    rows = await orch.app[STORE].query("SELECT * FROM audit WHERE request_id = $r", {"r": request_id})
    return [dict(r) for r in rows]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/batch/execute", batch(op("a"), op("b", ["a"]))),
        ("/workflows/taskserv/create", {"infra": "demo", "taskserv": "kubernetes", "provider": "local"}),
    ],
)
async def test_the_record_is_in_the_submissions_commit(orch: TestClient, path: str, body: Any) -> None:
    spy = Enqueued(orch.app[STORE])
    resp = await orch.post(path, json=body, headers={"X-Request-ID": "one-commit"})
    assert resp.status == 201, await resp.text()
    # Durable before the answer: readable as soon as it arrives.
    [record] = await records_of(orch, "one-commit")
    [commit] = spy.holding("workflow")
    assert [r["id"] for r in audit_rows(commit)] == [record["id"]]
    assert [c for c in spy.holding("audit") if c is not commit] == []  # no second record
    # What the middleware writes for a 201 on this route, field for field.
    expected = "batch.execute" if path == "/batch/execute" else "workflows.create"
    assert (record["action"], record["resource"], record["result"]) == (expected, path[1:], "success")
    assert record["details"] == {"method": "POST", "status": 201}
    assert (await orch.app[AUDIT].verify())["valid"] is True
    if path == "/batch/execute":
        assert (await wait_batch(orch, (await resp.json())["data"]["batch_id"]))["status"] == "Completed"


async def test_a_refused_submission_is_recorded_by_the_middleware(orch: TestClient) -> None:
    resp = await orch.post("/batch/execute", json=batch(op("a", ["nope"])), headers={"X-Request-ID": "bad"})
    assert resp.status == 422
    [record] = await records_of(orch, "bad")
    assert (record["result"], record["details"]) == ("failure", {"method": "POST", "status": 422})


async def test_another_appender_moving_the_head_is_chained_after(orch: TestClient) -> None:
    """Another process's appender (a second log on the same store) moves the head: the
    submission's commit fails as a whole, is built again on the new head, and lands."""
    other = AuditLog()
    await other.start(orch.app[STORE])
    try:
        await other.record(AuditEntry(action="other.process", resource="x", result="success"))
        spy = Enqueued(orch.app[STORE])
        resp = await orch.post("/batch/execute", json=batch(op("a")), headers={"X-Request-ID": "moved"})
        assert resp.status == 201, await resp.text()
        assert len(spy.holding("workflow")) == 2  # refused with the stale head, then committed
        [record] = await records_of(orch, "moved")
        assert record["seq"] == 2
        batch_id = (await resp.json())["data"]["batch_id"]
        assert (await wait_batch(orch, batch_id))["status"] == "Completed"
        listed = await orch.get("/batch/operations", params={"limit": "10"})
        assert [b["batch_id"] for b in (await listed.json())["data"]] == [batch_id]
    finally:
        await other.stop()
    assert await orch.app[AUDIT].verify() == {"valid": True, "records": 2}


async def test_a_failed_commit_leaves_the_head_and_marks_nothing(store: Store) -> None:
    log = AuditLog()
    await log.start(store)
    try:
        actor = Actor(ANONYMOUS)

        async def fails(writes: Sequence[Write]) -> None:
            raise StoreError("database refused the write: something else")

        entry = AuditEntry(action="a.b", resource="r", result="success")
        with pytest.raises(StoreError, match="something else"):
            await log.record_with(actor, entry, fails)
        assert not actor.mark.recorded

        async def lands(writes: Sequence[Write]) -> str:
            await store.write(*writes)
            return "done"

        assert await log.record_with(actor, entry, lands) == "done"
        assert actor.mark.recorded
        await log.record(entry)  # the appender chains after it
        assert await log.verify() == {"valid": True, "records": 2}
    finally:
        await log.stop()
