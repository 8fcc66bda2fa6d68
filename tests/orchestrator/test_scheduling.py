"""Scheduling through the API: parallel limit, dependencies, retries, on_failure, timeouts,
cancel during retry and rollback, strict body types."""

from __future__ import annotations

from typing import Any

from tests.helpers.batches import batch, command, op, submit, wait_batch
from tests.helpers.orchestrator_api import (
    ops_by_id,
    run,
    tasks_by_name,
    ts,
)

# -- scheduling semantics ------------------------------------------------------------------


async def journal_states(client: Any, wid: str) -> list[dict[str, Any]]:
    """The workflow's state at every journal position from submission to now."""
    snaps = (await (await client.get(f"/state/workflows/{wid}/snapshots")).json())["data"]
    first = snaps[0]["details"]["journal_seq"]
    latest = (await (await client.get(f"/state/workflows/{wid}/state")).json())["data"]
    states = []
    for seq in range(first, latest["journal_seq"] + 1):
        resp = await client.get(f"/state/workflows/{wid}/state", params={"seq": str(seq)})
        assert resp.status == 200
        states.append((await resp.json())["data"])
    return states


def max_overlap(tasks: list[dict[str, Any]]) -> int:
    """Most operations whose [started_at, completed_at) intervals overlap at one instant."""
    spans = [(ts(t["started_at"]), ts(t["completed_at"])) for t in tasks if t["started_at"]]
    return max(sum(1 for s, e in spans if s <= start < e) for start, _ in spans)


async def test_parallel_limit_is_respected(orch):
    ops = [op(f"op{i}", simulate={"latency_s": 0.05, "progress_steps": 1}) for i in range(8)]
    done = await run(orch, *ops, parallel_limit=2)
    assert done["status"] == "Completed"
    states = await journal_states(orch, done["batch_id"])
    peak = max(s["counts"].get("Running", 0) for s in states)
    assert peak == 2, [s["counts"] for s in states]
    tasks = list((await tasks_by_name(orch, done["batch_id"])).values())
    assert max_overlap(tasks) <= 2


async def test_parallel_limit_one_runs_in_submission_order(orch):
    ops = [op(f"op{i}") for i in range(5)]
    done = await run(orch, *ops, parallel_limit=1)
    states = await journal_states(orch, done["batch_id"])
    assert max(s["counts"].get("Running", 0) for s in states) == 1
    tasks = await tasks_by_name(orch, done["batch_id"])
    starts = [ts(tasks[f"op{i}"]["started_at"]) for i in range(5)]
    assert starts == sorted(starts)
    assert max_overlap(list(tasks.values())) == 1


async def test_hard_dependencies_complete_before_dependents_start(orch):
    done = await run(
        orch,
        op("root"),
        op("left", ["root"]),
        op("right", ["root"]),
        op("join", ["left", "right"]),
        parallel_limit=4,
    )
    assert done["status"] == "Completed"
    o = ops_by_id(done)
    for dep, dependent in [("root", "left"), ("root", "right"), ("left", "join"), ("right", "join")]:
        assert ts(o[dependent]["started_at"]) >= ts(o[dep]["completed_at"])


async def test_hard_dependency_failure_cancels_dependents_soft_ones_run(orch):
    done = await run(
        orch,
        op("base", simulate={"fail_always": True}, retry={"max_attempts": 1}, on_failure="continue"),
        op("needs_base", ["base"]),
        op("needs_needs_base", ["needs_base"]),
        op("after_base", [{"id": "base", "kind": "soft"}]),
    )
    assert done["status"] == "Failed"
    o = ops_by_id(done)
    assert o["base"]["status"] == "Failed"
    assert o["needs_base"]["status"] == "Cancelled"
    assert "base" in o["needs_base"]["error"]
    assert o["needs_base"]["started_at"] is None
    assert o["needs_needs_base"]["status"] == "Cancelled"
    assert o["after_base"]["status"] == "Completed"
    # a soft dependency still waits for its dependency to finish
    assert ts(o["after_base"]["started_at"]) >= ts(o["base"]["completed_at"])


async def test_soft_dependency_waits_for_completion_too(orch):
    done = await run(
        orch,
        op("first", simulate={"latency_s": 0.05, "progress_steps": 1}),
        op("second", [{"id": "first", "kind": "soft"}]),
    )
    assert done["status"] == "Completed"
    o = ops_by_id(done)
    assert ts(o["second"]["started_at"]) >= ts(o["first"]["completed_at"])


async def test_retry_until_success_counts_attempts(orch):
    done = await run(
        orch, op("flaky", simulate={"fail_attempts": 2}, retry={"max_attempts": 3, "initial_delay_s": 0.01})
    )
    assert done["status"] == "Completed"
    flaky = ops_by_id(done)["flaky"]
    assert flaky["attempt"] == 3
    assert flaky["results"]["attempt"] == 3
    assert flaky["error"] is None
    t = (await (await orch.get(f"/tasks/{flaky['task_id']}")).json())["data"]
    assert t["attempt"] == 3 and t["max_attempts"] == 3
    # the journal saw two failed attempts go back to Pending
    states = await journal_states(orch, done["batch_id"])
    seen = [s["operations"]["flaky"]["status"] for s in states]
    collapsed = [x for i, x in enumerate(seen) if i == 0 or seen[i - 1] != x]
    assert collapsed == ["Pending", "Running", "Pending", "Running", "Pending", "Running", "Completed"]


async def test_retry_exhausted_fails_with_last_attempt(orch):
    done = await run(
        orch, op("flaky", simulate={"fail_attempts": 5}, retry={"max_attempts": 2, "initial_delay_s": 0.01})
    )
    assert done["status"] == "Failed"
    flaky = ops_by_id(done)["flaky"]
    assert flaky["status"] == "Failed"
    assert flaky["attempt"] == 2
    assert "attempt 2" in flaky["error"]
    assert "flaky" in done["error"]


async def test_on_failure_fail_stops_new_work(orch):
    done = await run(
        orch,
        op("bad", simulate={"fail_always": True}, retry={"max_attempts": 1}),
        op("independent1"),
        op("independent2"),
        parallel_limit=1,
    )
    assert done["status"] == "Failed"
    o = ops_by_id(done)
    assert o["bad"]["status"] == "Failed"
    for name in ("independent1", "independent2"):
        assert o[name]["status"] == "Cancelled"
        assert o[name]["started_at"] is None
        assert "not started" in o[name]["error"]
    assert "bad" in done["error"]


async def test_on_failure_continue_lets_independent_branches_finish(orch):
    done = await run(
        orch,
        op("bad", simulate={"fail_always": True}, retry={"max_attempts": 1}, on_failure="continue"),
        op("needs_bad", ["bad"]),
        op("independent1"),
        op("independent2", ["independent1"]),
        parallel_limit=1,
    )
    assert done["status"] == "Failed"
    o = ops_by_id(done)
    assert o["bad"]["status"] == "Failed"
    assert o["needs_bad"]["status"] == "Cancelled"
    assert o["independent1"]["status"] == "Completed"
    assert o["independent2"]["status"] == "Completed"


async def test_on_failure_fail_lets_running_operations_finish(orch):
    done = await run(
        orch,
        op("bad", simulate={"fail_always": True}, retry={"max_attempts": 1}),
        op("busy", simulate={"latency_s": 0.2, "progress_steps": 1}),
        parallel_limit=2,
    )
    o = ops_by_id(done)
    assert done["status"] == "Failed"
    assert o["bad"]["status"] == "Failed"
    assert o["busy"]["status"] == "Completed"


async def test_per_operation_timeout_fails_a_slow_operation(orch):
    done = await run(orch, op("slow", timeout=0.2, simulate={"latency_s": 30}, retry={"max_attempts": 1}))
    assert done["status"] == "Failed"
    slow = ops_by_id(done)["slow"]
    assert slow["status"] == "Failed"
    assert "timed out after 0.2 s" in slow["error"]


async def test_timeout_is_retried_under_the_policy(orch):
    done = await run(
        orch,
        op("slow", timeout=0.1, simulate={"latency_s": 30}, retry={"max_attempts": 2, "initial_delay_s": 0}),
    )
    slow = ops_by_id(done)["slow"]
    assert slow["status"] == "Failed"
    assert slow["attempt"] == 2
    assert "attempt 2" in slow["error"]


async def test_command_timeout_kills_the_process(orch):
    done = await run(
        orch,
        command("sleeper", ["sleep", "30"], timeout=0.3),
    )
    sleeper = ops_by_id(done)["sleeper"]
    assert sleeper["status"] == "Failed"
    assert "timed out" in sleeper["error"]


async def test_failing_command_reports_exit_status(orch):
    done = await run(
        orch,
        command("boom", ["sh", "-c", "echo partial; echo oops >&2; exit 3"]),
    )
    boom = ops_by_id(done)["boom"]
    assert boom["status"] == "Failed"
    assert "status 3" in boom["error"] and "oops" in boom["error"]
    assert "partial" in (boom["output"] or "")


async def test_cancel_during_automatic_rollback_is_honest(orch):
    """A cancel that arrives while a failed batch rolls itself back either is refused (409),
    or succeeds and the batch ends Cancelled; it never says "Operation cancelled" about a
    batch that then ends Failed."""
    data = await submit(
        orch,
        batch(
            op("slow_undo", simulate={"latency_s": 0.5, "progress_steps": 1}),
            op("bad", ["slow_undo"], simulate={"fail_always": True}, retry={"max_attempts": 1}),
            rollback_enabled=True,
        ),
    )
    bid = data["batch_id"]
    await wait_batch(orch, bid, until=lambda b: any(o["status"] == "RollingBack" for o in b["operations"]))
    resp = await orch.post(f"/batch/operations/{bid}/cancel")
    doc = await resp.json()
    final = await wait_batch(orch, bid)
    assert resp.status in (200, 409), doc
    if resp.status == 200:
        assert final["status"] == "Cancelled", (doc, final["status"])
    else:
        assert final["status"] == "Failed"
        assert final["rollback"]["operations_executed"] == 1


async def test_layered_batch_respects_every_dependency(orch):
    layers, width = 5, 40
    ops = []
    for layer in range(layers):
        for i in range(width):
            deps = [] if layer == 0 else sorted({f"L{layer - 1}_{i}", f"L{layer - 1}_{(i * 7 + 3) % width}"})
            ops.append(op(f"L{layer}_{i}", deps))
    done = await run(orch, *ops, parallel_limit=16)
    assert done["status"] == "Completed"
    assert len(done["operations"]) == layers * width
    o = ops_by_id(done)
    for spec in ops:
        for dep in spec["dependencies"]:
            assert ts(o[spec["id"]]["started_at"]) >= ts(o[dep]["completed_at"])
    tasks = list((await tasks_by_name(orch, done["batch_id"])).values())
    assert len(tasks) == layers * width
    assert max_overlap(tasks) <= 16


async def test_cancel_while_an_operation_waits_to_retry(orch):
    data = await submit(
        orch,
        batch(op("flaky", simulate={"fail_attempts": 5}, retry={"max_attempts": 5, "initial_delay_s": 30})),
    )
    bid = data["batch_id"]
    await wait_batch(
        orch,
        bid,
        until=lambda b: b["operations"][0]["attempt"] == 1 and b["operations"][0]["status"] == "Pending",
    )
    resp = await orch.post(f"/batch/operations/{bid}/cancel")
    assert resp.status == 200
    final = await wait_batch(orch, bid)
    assert final["status"] == "Cancelled"
    flaky = final["operations"][0]
    assert flaky["status"] == "Cancelled"
    assert flaky["attempt"] == 1  # the 30 s backoff was cut short, no second attempt


async def test_body_types_are_strict(orch):
    for bad in ({"parallel_limit": "5"}, {"parallel_limit": True}, {"rollback_enabled": "yes"}):
        body = batch(op("a"), **bad)
        resp = await orch.post("/batch/execute", json=body)
        doc = await resp.json()
        assert resp.status == 422, doc
        assert doc["details"]["fields"][0]["field"] == next(iter(bad))


async def test_a_dependency_named_twice_counts_once(orch):
    done = await run(orch, op("a"), op("b", ["a", "a", {"id": "a", "kind": "soft"}]))
    tasks = await tasks_by_name(orch, done["batch_id"])
    assert tasks["b"]["dependencies"] == [tasks["a"]["id"]]
