"""Counters of tasks, workflows, snapshots and checkpoints (orchestrator/repository.py)
stay exact through every write path, compared with a full count() scan: submissions,
completions, failures, cancels, rollbacks, restores, and an upgrade from the schema
before counters (migration 0011, recount after catch-up)."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient, TestServer

from orchestrator.app import create_app
from orchestrator.journal import catch_up
from orchestrator.keys import ENGINE
from orchestrator.repository import Repository
from shared.settings import Settings
from shared.store.secrets import SecretBox
from shared.store.store import Store
from shared.store.writes import Stmt
from shared.web.keys import STORE
from tests.helpers.batches import batch, op, submit, wait_batch
from tests.helpers.counters import counter_mismatches
from tests.helpers.legacy import back_to_task_rows
from tests.helpers.orchestrator_api import data_of, run
from tests.helpers.processes import free_port, get_data, poll_until, start_orchestrator, wait_up


async def post(client: Any, path: str, body: Any = None) -> Any:
    resp = await client.post(path, json=body)
    doc = await resp.json()
    assert resp.status in (200, 201), doc
    return doc["data"]


async def exercise(orch: Any) -> str:
    """Every kind of change: returns the id of a completed batch."""
    done = await run(orch, op("a"), op("b", ["a"]), op("c", ["a"], servers=["c-srv"]))
    await run(orch, op("x", simulate={"fail_attempts": 5}, retry={"max_attempts": 1}), op("y", ["x"]))
    slow = await submit(orch, batch(op("slow", simulate={"latency_s": 30}), op("later", ["slow"])))
    await wait_batch(orch, slow["batch_id"], until=lambda b: b["operations"][0]["status"] == "Running")
    await post(orch, f"/batch/operations/{slow['batch_id']}/cancel")
    await wait_batch(orch, slow["batch_id"])
    after = await post(orch, "/rollback/checkpoints", {"name": "after"})
    await post(orch, "/rollback/execute", {"checkpoint_id": done["checkpoint_id"]})
    await post(orch, f"/rollback/restore/{after}")
    return str(done["batch_id"])


async def test_counters_match_a_full_scan_after_every_kind_of_change(orch: Any) -> None:
    wid = await exercise(orch)
    store = orch.app[STORE]
    assert await counter_mismatches(store) == []
    stats = await data_of(orch, "/state/statistics")
    assert stats["total_workflows"] == 3 and stats["workflows_by_status"]["Cancelled"] == 1
    assert stats["total_tasks"] == 7 and stats["tasks_by_status"]["Completed"] >= 3
    assert stats["total_checkpoints"] == 4  # three automatic, one named
    metrics = await data_of(orch, "/state/system/metrics")
    assert (metrics["total_workflows"], metrics["cancelled_workflows"]) == (3, 1)
    resp = await orch.get("/tasks", params={"workflow_id": wid, "status": "Completed"})
    assert resp.headers["X-Total-Count"] == "3"


async def test_an_upgrade_from_the_schema_before_counters_recounts_exactly(
    settings: Settings, tmp_path: Any
) -> None:
    """Rows as the previous version wrote them (no list keys, no counters, some task rows
    never applied), then migration 0011 and the start that catches up and recounts."""
    url = f"surrealkv://{tmp_path}/db"
    box = SecretBox.ephemeral()
    first = Store(url, secrets=box)
    await first.open()
    async with TestClient(TestServer(create_app(settings, store=first))) as client:
        await run(client, op("a"), op("b", ["a"]))
        await run(client, op("x", simulate={"fail_attempts": 5}, retry={"max_attempts": 1}))
    await first.close()
    # back to the previous schema version: what 0011 added is gone
    old = Store(url, secrets=box)
    await old.open()
    assert await back_to_task_rows(old) == 3  # and before 0012: rows one to a record
    await old.write(
        Stmt("DELETE counter"),
        Stmt("UPDATE workflow, task, checkpoint, audit, webhook_delivery, user UNSET lk"),
        Stmt("DELETE schema_migration WHERE version = '0011'"),
        Stmt("DELETE meta:recount"),
        # a killed process: the rows of the last changes were never applied
        Stmt("UPDATE task SET status = 'Running' WHERE name = 'b'"),
        Stmt("UPSERT meta:lazy_mark SET seq = 3"),
    )
    await old.close()

    upgraded = Store(url, secrets=box)
    await upgraded.open()  # migration 0011 runs
    try:
        assert await upgraded.query("SELECT VALUE id FROM meta:recount")
        async with TestClient(
            TestServer(create_app(settings, store=upgraded))
        ) as client:  # the engine starts: catch-up, recount
            assert await counter_mismatches(upgraded) == []
            assert not await upgraded.query("SELECT VALUE id FROM meta:recount")
            assert not await upgraded.query("SELECT * FROM task")  # moved into pages
            statuses = {t["name"]: t["status"] for t in await data_of(client, "/tasks")}
            assert statuses == {"a": "Completed", "b": "Completed", "x": "Failed"}
            for task in await data_of(client, "/tasks"):  # ids from before pages: a task_ref each
                assert (await data_of(client, f"/tasks/{task['id']}"))["name"] == task["name"]
            resp = await client.get("/tasks", params={"limit": "1"})
            assert resp.headers["X-Total-Count"] == "3"
            everything = await data_of(client, "/tasks")
            assert len(everything) == 3  # every old row got its list key
            assert len(await data_of(client, "/batch/operations")) == 2
    finally:
        await upgraded.close()


async def test_catch_up_never_counts_twice(orch: Any) -> None:
    await run(orch, op("a"), op("b", ["a"]))
    store = orch.app[STORE]
    # re-applying the whole journal (as after a crash before the rows landed) leaves
    # the counters alone: they were committed with the entries
    await store.write(Stmt("UPSERT meta:lazy_mark SET seq = 0"))
    await catch_up(store, Repository(store), orch.app[ENGINE].task_rows_of)
    assert await counter_mismatches(store) == []


async def test_counters_are_exact_after_a_sigkill_and_a_restart(tmp_path: Path, work_root: Path) -> None:
    """A real orchestrator killed with SIGKILL while batches run (lazy rows not applied,
    commits in flight), restarted on the same directory: it catches up and finishes, and
    every counter equals a full scan of the rows."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    data = tmp_path / "data"
    body = {
        "name": "counted",
        "parallel_limit": 5,
        "operations": [
            {"id": f"op{i}", "type": "server_batch", "provider": "local", "simulate": {"latency_s": 0.05}}
            for i in range(40)
        ],
    }
    proc = start_orchestrator(data, work_root, port, log)
    async with aiohttp.ClientSession() as session:
        try:
            await wait_up(session, base)
            ids = []
            for _ in range(3):
                async with session.post(base + "/batch/execute", json=body) as resp:
                    assert resp.status == 201, await resp.text()
                    ids.append((await resp.json())["data"]["batch_id"])
            await poll_until(session, f"{base}/tasks?status=Completed&limit=1", bool, delay_s=0.02)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        proc = start_orchestrator(data, work_root, port, log)
        try:
            await wait_up(session, base)
            url = f"{base}/batch/operations?view=summary"
            await poll_until(session, url, lambda listed: all(b["status"] != "Running" for b in listed))
            stats = await get_data(session, f"{base}/state/statistics")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(20)
    assert stats["total_tasks"] == 120 and stats["total_workflows"] == 3, log.read_text()[-2000:]
    assert stats["tasks_by_status"] == {"Completed": 120}, stats
    store = Store(f"surrealkv://{data.resolve() / 'db'}")
    await store.open()
    try:
        assert await counter_mismatches(store) == []
    finally:
        await store.close()
