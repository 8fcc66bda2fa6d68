"""``/state/*``: progress, snapshots, state rebuilt from the journal, system metrics, health,
statistics and the simulated inventory, through real HTTP."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from orchestrator.app import create_app
from shared.settings import load_settings
from tests.helpers.batches import batch, op, submit, wait_batch
from tests.helpers.orchestrator_api import data_of, expect_error, run, ts


def halfway_command(op_id: str, deps: list[str] | None = None) -> dict[str, Any]:
    """A command that reports 50 % and then sleeps until cancelled."""
    return {
        "id": op_id,
        "type": "command",
        "dependencies": deps or [],
        "run": ["sh", "-c", "echo '::progress 50 halfway there'; exec sleep 30"],
    }


# -- progress ---------------------------------------------------------------------------


async def test_progress_of_a_finished_workflow(orch):
    done = await run(orch, op("a"), op("b", ["a"]), op("c", ["b"]))
    p = await data_of(orch, f"/state/workflows/{done['batch_id']}/progress")
    assert {
        "workflow_id",
        "progress",
        "current_step",
        "total_steps",
        "completed_steps",
        "estimated_time_remaining",
    } <= set(p)
    assert p["workflow_id"] == done["batch_id"]
    assert p["progress"] == 100.0
    assert p["total_steps"] == 3
    assert p["completed_steps"] == 3
    assert p["estimated_time_remaining"] == 0
    assert p["current_step"] == "Completed"


async def test_progress_while_running(orch):
    data = await submit(
        orch, batch(op("first"), halfway_command("second", ["first"]), op("third", ["second"]))
    )
    wid = data["batch_id"]
    deadline = asyncio.get_running_loop().time() + 20
    while True:
        p = await data_of(orch, f"/state/workflows/{wid}/progress")
        if p["current_step"] == "halfway there":
            break
        assert asyncio.get_running_loop().time() < deadline, p
        await asyncio.sleep(0.02)
    assert p["workflow_id"] == wid
    assert p["total_steps"] == 3
    assert p["completed_steps"] == 1
    assert p["progress"] == pytest.approx((100.0 + 50.0 + 0.0) / 3, abs=0.01)
    assert 0 < p["progress"] < 100
    eta = p["estimated_time_remaining"]
    assert isinstance(eta, int | float) and eta >= 0
    resp = await orch.post(f"/batch/operations/{wid}/cancel")
    assert resp.status == 200
    p = await data_of(orch, f"/state/workflows/{wid}/progress")
    assert p["completed_steps"] == 3  # cancelled counts as finished
    assert p["estimated_time_remaining"] == 0


async def test_progress_of_unknown_workflow_is_404(orch):
    doc = await expect_error(await orch.get(f"/state/workflows/{uuid.uuid4()}/progress"), 404)
    assert doc["code"] == "not_found"


# -- snapshots -------------------------------------------------------------------------


async def test_snapshots_submitted_and_finished(orch):
    done = await run(orch, op("a"), op("b", ["a"]))
    snaps = await data_of(orch, f"/state/workflows/{done['batch_id']}/snapshots")
    assert len(snaps) == 2
    for s in snaps:
        assert {"snapshot_id", "timestamp", "state", "details"} <= set(s)
        uuid.UUID(s["snapshot_id"])
        ts(s["timestamp"])
    submitted, finished = snaps
    assert submitted["state"] == "running"
    assert submitted["details"]["reason"] == "submitted"
    # compact: counts say what is Pending/Completed; only the exceptions are named
    assert submitted["details"]["counts"] == {"Pending": 2}
    assert submitted["details"]["operations"] == {}
    assert submitted["details"]["total_operations"] == 2
    assert finished["state"] == "completed"
    assert finished["details"]["reason"] == "finished"
    assert finished["details"]["operations"] == {}
    assert finished["details"]["counts"] == {"Completed": 2}
    assert finished["details"]["progress"] == 100.0
    assert submitted["details"]["journal_seq"] < finished["details"]["journal_seq"]
    assert ts(submitted["timestamp"]) <= ts(finished["timestamp"])


async def test_failure_snapshot_on_a_failing_operation(orch):
    done = await run(
        orch,
        op("ok"),
        op("bad", ["ok"], simulate={"fail_always": True}, retry={"max_attempts": 1}),
    )
    assert done["status"] == "Failed"
    snaps = await data_of(orch, f"/state/workflows/{done['batch_id']}/snapshots")
    reasons = [s["details"]["reason"] for s in snaps]
    assert reasons == ["submitted", "operation bad failed", "finished"]
    failure = snaps[1]
    bad_task = next(o["task_id"] for o in done["operations"] if o["id"] == "bad")
    assert failure["details"]["failed_operation"] == {"id": "bad", "task_id": bad_task}
    assert failure["details"]["operations"]["bad"] == "Failed"
    assert failure["details"]["counts"] == {"Completed": 1, "Failed": 1}
    assert failure["state"] == "running"
    assert snaps[2]["state"] == "failed"


async def test_one_failure_snapshot_per_failed_operation(orch):
    done = await run(
        orch,
        op(
            "bad1",
            simulate={"fail_always": True},
            retry={"max_attempts": 2, "initial_delay_s": 0},
            on_failure="continue",
        ),
        op("bad2", simulate={"fail_always": True}, retry={"max_attempts": 1}, on_failure="continue"),
        op("fine"),
    )
    snaps = await data_of(orch, f"/state/workflows/{done['batch_id']}/snapshots")
    failures = sorted(
        s["details"]["failed_operation"]["id"] for s in snaps if "failed_operation" in s["details"]
    )
    # a retried attempt is not a failure of the operation; only the final one is
    assert failures == ["bad1", "bad2"]


async def test_snapshots_of_a_cancelled_workflow(orch):
    data = await submit(orch, batch(op("slow", simulate={"latency_s": 30})))
    wid = data["batch_id"]
    await wait_batch(orch, wid, until=lambda b: b["operations"][0]["status"] == "Running")
    assert (await orch.post(f"/batch/operations/{wid}/cancel")).status == 200
    snaps = await data_of(orch, f"/state/workflows/{wid}/snapshots")
    assert [s["state"] for s in snaps] == ["running", "cancelled"]
    assert snaps[-1]["details"]["operations"] == {"slow": "Cancelled"}


async def test_snapshots_of_unknown_workflow_is_404(orch):
    await expect_error(await orch.get("/state/workflows/nope/snapshots"), 404)


# -- state at a journal position --------------------------------------------------------


async def test_state_rebuilt_from_the_journal_matches_snapshots(orch):
    done = await run(
        orch,
        op("a"),
        op("b", ["a"]),
        op("c", ["a"], simulate={"fail_always": True}, retry={"max_attempts": 1}),
    )
    wid = done["batch_id"]
    snaps = await data_of(orch, f"/state/workflows/{wid}/snapshots")
    for snap in snaps:
        seq = snap["details"]["journal_seq"]
        state = await data_of(orch, f"/state/workflows/{wid}/state", seq=seq)
        assert state["workflow_id"] == wid
        assert state["journal_seq"] == seq
        statuses = {name: o["status"] for name, o in state["operations"].items()}
        for name, status in snap["details"]["operations"].items():
            assert statuses[name] == status, (snap["details"]["reason"], name)
    latest = await data_of(orch, f"/state/workflows/{wid}/state")
    assert latest["status"] == "Failed"
    assert {n: o["status"] for n, o in latest["operations"].items()} == {
        o["id"]: o["status"] for o in done["operations"]
    }
    assert latest["counts"] == {"Completed": 1, "Failed": 1, "Cancelled": 1} or latest["counts"] == {
        "Completed": 2,
        "Failed": 1,
    }
    tasks = {o["id"]: o["task_id"] for o in done["operations"]}
    assert {n: o["task_id"] for n, o in latest["operations"].items()} == tasks


async def test_state_walks_through_every_transition(orch):
    done = await run(orch, op("a"), op("b", ["a"]), parallel_limit=1)
    wid = done["batch_id"]
    first = (await data_of(orch, f"/state/workflows/{wid}/snapshots"))[0]["details"]["journal_seq"]
    latest = await data_of(orch, f"/state/workflows/{wid}/state")
    history = []
    for seq in range(first, latest["journal_seq"] + 1):
        s = await data_of(orch, f"/state/workflows/{wid}/state", seq=seq)
        history.append((s["status"], s["operations"]["a"]["status"], s["operations"]["b"]["status"]))
    assert history == [
        ("Running", "Pending", "Pending"),
        ("Running", "Running", "Pending"),
        ("Running", "Completed", "Pending"),
        ("Running", "Completed", "Running"),
        ("Running", "Completed", "Completed"),
        ("Completed", "Completed", "Completed"),
    ]


async def test_state_before_submission_is_empty(orch):
    done = await run(orch, op("a"))
    state = await data_of(orch, f"/state/workflows/{done['batch_id']}/state", seq=0)
    assert state["status"] is None
    assert state["operations"] == {}
    assert state["counts"] == {}


async def test_state_after_the_end_is_the_latest(orch):
    done = await run(orch, op("a"))
    wid = done["batch_id"]
    latest = await data_of(orch, f"/state/workflows/{wid}/state")
    later = await data_of(orch, f"/state/workflows/{wid}/state", seq=10_000)
    assert later == latest


async def test_state_carries_attempt_forward(orch):
    done = await run(
        orch, op("flaky", simulate={"fail_attempts": 1}, retry={"max_attempts": 3, "initial_delay_s": 0})
    )
    assert done["operations"][0]["attempt"] == 2
    latest = await data_of(orch, f"/state/workflows/{done['batch_id']}/state")
    assert latest["operations"]["flaky"]["status"] == "Completed"
    # the rebuilt state knows which attempt completed, as the task does
    assert latest["operations"]["flaky"]["attempt"] == 2


@pytest.mark.parametrize("seq", ["-1", "x", "1.5"])
async def test_state_bad_seq_is_422(orch, seq):
    done = await run(orch, op("a"))
    resp = await orch.get(f"/state/workflows/{done['batch_id']}/state", params={"seq": seq})
    doc = await expect_error(resp, 422)
    assert "seq" in {f["field"] for f in doc["details"]["fields"]}


async def test_state_of_unknown_workflow_is_404(orch):
    await expect_error(await orch.get("/state/workflows/nope/state"), 404)


# -- system metrics, health, statistics ------------------------------------------------


async def test_system_metrics_on_a_fresh_store(orch):
    m = await data_of(orch, "/state/system/metrics")
    assert m["total_workflows"] == 0
    assert m["active_workflows"] == 0
    assert m["completed_workflows"] == 0
    assert m["failed_workflows"] == 0
    load = m["system_load"]
    for key in ("cpu_usage", "memory_usage", "disk_usage"):
        assert isinstance(load[key], int | float) and load[key] >= 0
    assert load["memory_usage"] > 0
    assert load["disk_usage"] <= 100


async def test_system_metrics_count_workflows_by_status(orch):
    await run(orch, op("a"))
    await run(orch, op("a"))
    await run(orch, op("a", simulate={"fail_always": True}, retry={"max_attempts": 1}))
    slow = await submit(orch, batch(op("slow", simulate={"latency_s": 30})))
    m = await data_of(orch, "/state/system/metrics")
    assert m["total_workflows"] == 4
    assert m["completed_workflows"] == 2
    assert m["failed_workflows"] == 1
    assert m["active_workflows"] == 1
    assert (await orch.post(f"/batch/operations/{slow['batch_id']}/cancel")).status == 200
    m = await data_of(orch, "/state/system/metrics")
    assert m["active_workflows"] == 0
    assert m["total_workflows"] == 4
    assert m["cancelled_workflows"] == 1


async def test_system_health(orch):
    before = datetime.now(UTC) - timedelta(seconds=5)
    h = await data_of(orch, "/state/system/health")
    assert h["overall_status"] == "Healthy"
    assert h["components"] == {"storage": "Healthy", "batch_coordinator": "Healthy", "monitoring": "Healthy"}
    assert ts(h["last_check"]) >= before
    assert h["last_check"].endswith("Z")


async def test_statistics(orch):
    s = await data_of(orch, "/state/statistics")
    assert s["total_workflows"] == 0
    assert s["active_snapshots"] == 0
    assert s["average_workflow_duration"] == 0
    assert isinstance(s["storage_usage"], str)
    first = await run(orch, op("a"), op("b"))
    second = await run(orch, op("a", simulate={"fail_always": True}, retry={"max_attempts": 1}))
    s = await data_of(orch, "/state/statistics")
    assert s["total_workflows"] == 2
    snaps = 0
    for b in (first, second):
        snaps += len(await data_of(orch, f"/state/workflows/{b['batch_id']}/snapshots"))
    assert s["active_snapshots"] == snaps == 5
    avg = s["average_workflow_duration"]
    assert isinstance(avg, int | float) and avg >= 0


async def test_statistics_storage_usage_on_a_file_store(aiohttp_client, tmp_path):
    settings = load_settings(db_url="", data_dir=tmp_path / "data", auth_enabled=False)
    client = await aiohttp_client(create_app(settings))
    await run(client, op("a"))
    s = await data_of(client, "/state/statistics")
    assert re.fullmatch(r"\d+(\.\d)? (B|KB|MB|GB)", s["storage_usage"]), s["storage_usage"]
    assert s["storage_usage"] != "0 B"
    assert s["total_workflows"] == 1


# -- inventory ---------------------------------------------------------------------------


async def test_inventory_is_empty_at_first(orch):
    assert await data_of(orch, "/state/inventory") == []


async def test_simulated_resources_appear_after_a_batch(orch):
    done = await run(
        orch,
        op(
            "servers",
            provider="upcloud",
            server_configs=[
                {"name": "web-01", "plan": "1xCPU-2 GB", "zone": "de-fra1"},
                {"name": "web-02", "plan": "1xCPU-2 GB", "zone": "us-nyc1"},
            ],
        ),
        op(
            "taskservs",
            ["servers"],
            type="taskserv_batch",
            provider="aws",
            taskservs=["kubernetes", "cilium"],
        ),
        op("cluster", ["taskservs"], type="cluster_batch", cluster_type="buildkit"),
    )
    assert done["status"] == "Completed"
    tasks = {o["id"]: o["task_id"] for o in done["operations"]}
    inv = await data_of(orch, "/state/inventory")
    got = {(i["kind"], i["name"]): i for i in inv}
    assert set(got) == {
        ("server", "web-01"),
        ("server", "web-02"),
        ("taskserv", "kubernetes"),
        ("taskserv", "cilium"),
        ("cluster", "buildkit"),
    }
    for item in inv:
        assert item["simulated"] is True
        assert item["workflow_id"] == done["batch_id"]
    assert got[("server", "web-01")]["provider"] == "upcloud"
    assert got[("server", "web-01")]["attributes"]["zone"] == "de-fra1"
    assert got[("server", "web-02")]["task_id"] == tasks["servers"]
    assert got[("taskserv", "cilium")]["provider"] == "aws"
    assert got[("cluster", "buildkit")]["task_id"] == tasks["cluster"]


async def test_failed_or_check_mode_operations_add_nothing_to_inventory(orch):
    resp = await orch.post("/batch/execute", json=batch(op("planned", servers=["p1"]), check_mode=True))
    assert resp.status in (200, 201)
    await run(orch, op("broken", servers=["b1"], simulate={"fail_always": True}, retry={"max_attempts": 1}))
    assert await data_of(orch, "/state/inventory") == []
