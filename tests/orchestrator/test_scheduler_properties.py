"""Property tests of the scheduler on random DAGs with random failures, on the real engine
and the real embedded store.

Invariants: no operation starts before its hard dependencies completed (soft ones
finished); never more than ``parallel_limit`` running; every operation ends in a
final state; rollback runs in reverse dependency order."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.engine import Engine
from orchestrator.models import BatchRequest, OperationSpec
from orchestrator.providers import OperationContext, OperationFailed, OperationResult
from orchestrator.rollback import RollbackService
from orchestrator.states import FINAL_TASK, TaskStatus
from shared.events.bus import EventBus
from shared.settings import load_settings
from shared.store.store import Store


@dataclass
class Tracker:
    parallel_limit: int
    deps: dict[str, list[tuple[str, str]]]
    failing: set[str]
    running: set[str] = field(default_factory=set)
    status: dict[str, str] = field(default_factory=dict)
    started: list[str] = field(default_factory=list)
    undone: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    peak: int = 0


class ProbeProvider:
    """Checks the scheduler's invariants at the moment each operation starts."""

    name = "probe"

    def __init__(self, tracker: Tracker) -> None:
        self.t = tracker
        self.engine: Engine | None = None

    def describe(self, spec: OperationSpec, provider: str) -> tuple[str, list[str]]:
        return "probe", [spec.id]

    def check(self, spec: OperationSpec, provider: str) -> str:
        return f"probe {spec.id}"

    async def apply(self, ctx: OperationContext) -> OperationResult:
        t = self.t
        # The engine's own view, which it updates only after a change is persisted.
        assert self.engine is not None
        recorded = self.engine.runs[ctx.workflow_id].wf.tasks
        for dep, kind in t.deps[ctx.name]:
            st_ = recorded[dep].status
            if kind == "hard" and st_ != "Completed":
                t.violations.append(f"{ctx.name} started before hard dep {dep} completed ({st_})")
            if kind == "soft" and st_ not in ("Completed", "Failed", "Cancelled"):
                t.violations.append(f"{ctx.name} started before soft dep {dep} finished ({st_})")
        t.running.add(ctx.name)
        t.started.append(ctx.name)
        t.peak = max(t.peak, len(t.running))
        if len(t.running) > t.parallel_limit:
            t.violations.append(f"{len(t.running)} running > limit {t.parallel_limit}")
        try:
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            if ctx.name in t.failing:
                t.status[ctx.name] = "Failed"
                raise OperationFailed("injected")
            t.status[ctx.name] = "Completed"
            return OperationResult(output="ok")
        finally:
            t.running.discard(ctx.name)

    async def rollback(self, ctx: OperationContext) -> OperationResult:
        self.t.undone.append(ctx.name)
        return OperationResult(output="undone")


@st.composite
def dags(draw: Any) -> dict[str, Any]:
    n = draw(st.integers(1, 14))
    names = [f"op{i}" for i in range(n)]
    deps: dict[str, list[tuple[str, str]]] = {name: [] for name in names}
    for j in range(n):
        for i in range(j):
            if draw(st.booleans()) and draw(st.booleans()):
                deps[names[j]].append((names[i], draw(st.sampled_from(["hard", "hard", "soft"]))))
    failing = {name for name in names if draw(st.integers(0, 5)) == 0}
    return {
        "names": names,
        "deps": deps,
        "failing": failing,
        "on_failure": {name: draw(st.sampled_from(["fail", "continue"])) for name in names},
        "parallel_limit": draw(st.integers(1, 4)),
        "rollback_enabled": draw(st.booleans()),
    }


async def _scenario(case: dict[str, Any]) -> tuple[Tracker, dict[str, Any]]:
    tracker = Tracker(case["parallel_limit"], case["deps"], case["failing"])
    store = Store("mem://")
    await store.open()
    settings = load_settings(db_url="mem://", default_max_attempts=1)
    engine = Engine(settings, store, EventBus(), rollbacks=RollbackService)
    probe = ProbeProvider(tracker)
    probe.engine = engine
    engine.registry.providers["probe"] = probe
    await engine.start()
    try:
        ops = [
            OperationSpec.model_validate(
                {
                    "id": name,
                    "type": "server_batch",
                    "provider": "probe",
                    "dependencies": [{"id": d, "kind": k} for d, k in case["deps"][name]],
                    "on_failure": case["on_failure"][name],
                }
            )
            for name in case["names"]
        ]
        wf = await engine.submit(
            BatchRequest(
                name="prop",
                parallel_limit=case["parallel_limit"],
                rollback_enabled=case["rollback_enabled"],
                operations=ops,
            )
        )
        run = engine.runs.get(wf.id)
        if run is not None and run.driver is not None:
            await asyncio.wait_for(asyncio.shield(run.driver), 30)
        rows = {r["name"]: r for r in await engine.repo.tasks_of(wf.id)}
        workflow = await engine.repo.workflow(wf.id)
        return tracker, {"tasks": rows, "workflow": workflow}
    finally:
        await engine.stop()
        await store.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=dags())
def test_scheduler_invariants_hold_on_random_dags(case: dict[str, Any]) -> None:
    tracker, recorded = asyncio.run(_scenario(case))
    assert tracker.violations == []
    assert tracker.peak <= case["parallel_limit"]
    tasks = recorded["tasks"]
    finals = {str(s) for s in FINAL_TASK}
    assert all(t["status"] in finals for t in tasks.values()), {n: t["status"] for n, t in tasks.items()}
    # Nothing ran twice, and nothing ran whose hard dependency did not complete.
    assert len(tracker.started) == len(set(tracker.started))
    wf_status = recorded["workflow"]["status"]
    any_failed = bool(case["failing"] & set(tracker.started))
    assert wf_status == ("Failed" if any_failed else "Completed")
    if not any_failed:
        assert all(t["status"] == "Completed" for t in tasks.values())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=dags())
def test_rollback_runs_in_reverse_dependency_order(case: dict[str, Any]) -> None:
    # Make one failure stop the batch so the automatic rollback runs.
    case = dict(case, rollback_enabled=True, on_failure={n: "fail" for n in case["names"]})
    tracker, recorded = asyncio.run(_scenario(case))
    assert tracker.violations == []
    position = {name: i for i, name in enumerate(tracker.undone)}
    for name, deps in case["deps"].items():
        for dep, _kind in deps:
            if name in position and dep in position:
                assert position[name] < position[dep], (
                    f"{dep} undone before its dependent {name}: {tracker.undone}"
                )
    tasks = recorded["tasks"]
    if case["failing"] & set(tracker.started):
        # Everything that had completed was rolled back.
        completed = [n for n in tracker.started if tracker.status.get(n) == "Completed"]
        assert sorted(completed) == sorted(tracker.undone)
        assert all(tasks[n]["status"] == str(TaskStatus.ROLLED_BACK) for n in completed)
        assert recorded["workflow"]["rollback"]["operations_executed"] == len(completed)
    else:
        assert tracker.undone == []
