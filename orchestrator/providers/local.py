"""The ``local`` provider: a simulated cloud.

Servers, task services and clusters are kept as a real inventory in the store,
so what a batch creates can be listed and what a rollback undoes disappears.
Latency and failures are injected per operation (``"simulate": {...}``).
Everything it reports is labelled simulated. What stands in the inventory is
known from memory (:mod:`orchestrator.providers.local_inventory`): an operation
makes no store round trip, and its writes ride in its outcome's commit.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from orchestrator.inventory_repository import InventoryRepository
from orchestrator.models import OperationSpec, OperationType, Simulate
from orchestrator.providers.base import (
    OperationContext,
    OperationFailed,
    OperationResult,
    ProviderEnv,
)
from orchestrator.providers.local_inventory import InventoryView

DEFAULT_SIMULATION = Simulate()


def _names(spec: OperationSpec) -> tuple[str, list[str]]:
    """The kind of inventory an operation touches and the name of each item (without
    building the items of :func:`_items`: a submission describes every operation)."""
    if spec.type is OperationType.SERVER_BATCH:
        if spec.server_configs:
            return "server", [c.name for c in spec.server_configs]
        return "server", spec.servers or [f"{spec.infra or spec.id}-server-01"]
    if spec.type is OperationType.TASKSERV_BATCH:
        return "taskserv", list(spec.taskservs or [])
    if spec.type is OperationType.CLUSTER_BATCH:
        return "cluster", spec.clusters or [spec.cluster_type or spec.id]
    return "resource", [spec.id]


def _items(spec: OperationSpec) -> tuple[str, list[dict[str, Any]]]:
    """The kind of inventory an operation touches and one entry per item."""
    kind, names = _names(spec)
    if kind == "server" and spec.server_configs:
        return kind, [c.model_dump(exclude_none=True) for c in spec.server_configs]
    if kind == "taskserv":
        return kind, [{"name": n, "servers": spec.servers or [], "infra": spec.infra} for n in names]
    if kind == "cluster":
        return kind, [{"name": n, "cluster_type": spec.cluster_type or n} for n in names]
    return kind, [{"name": n} for n in names]


class LocalProvider:
    """A simulated cloud with an inventory in the store."""

    name = "local"

    def __init__(self, env: ProviderEnv) -> None:
        InventoryRepository.register(env.store)
        self.inventory = InventoryView(InventoryRepository(env.store), env.settings.local_inventory_cache)

    def describe(self, spec: OperationSpec, provider: str) -> tuple[str, list[str]]:
        kind, names = _names(spec)
        return f"provisioning {kind}s {spec.operation}", [f"--provider={provider}", *names, "--simulated"]

    def check(self, spec: OperationSpec, provider: str) -> str:
        kind, names = _names(spec)
        listed = ", ".join(names) or "nothing"
        return f"{spec.operation} {len(names)} {kind}(s) on {provider} [simulated]: {listed}"

    async def apply(self, ctx: OperationContext) -> OperationResult:
        sim = ctx.spec.simulate or DEFAULT_SIMULATION
        kind, items = _items(ctx.spec)
        if sim.latency_s > 0:  # no coroutine nor message for an operation without latency
            await self._wait(ctx, sim, f"{ctx.spec.operation} {kind}s on {ctx.provider}")
        if sim.fail_always or ctx.attempt <= sim.fail_attempts:
            raise OperationFailed(
                f"simulated failure on {ctx.provider} (attempt {ctx.attempt}, injected by "
                f"simulate.{'fail_always' if sim.fail_always else 'fail_attempts'})"
            )
        now = datetime.now(UTC)
        names = [i["name"] for i in items]
        keys = [f"{kind}/{n}" for n in names]
        # What stood there before, so a rollback can put it back (update, delete) or
        # remove only what this operation created.
        previous = self.inventory.known(keys)
        if previous is None:  # not loaded yet, or some rows are not held: read them
            previous = await self.inventory.standing(keys)
        # Recorded with the operation's Completed transition, in its group commit; the
        # view records them now, as the engine queues them in this same turn.
        changes: dict[str, dict[str, Any] | None] = {}
        if ctx.spec.operation == "delete":
            changes = dict.fromkeys(keys)
        else:
            for key, item in zip(keys, items, strict=True):
                changes[key] = {
                    "kind": kind,
                    "name": item["name"],
                    "provider": ctx.provider,
                    "attributes": item,
                    "task_id": ctx.task_id,
                    "workflow_id": ctx.workflow_id,
                    "state": "running",
                    "simulated": True,
                    "updated_at": now,
                }
        writes = tuple(self.inventory.writes(changes))
        verb = {"create": "created", "delete": "deleted", "update": "updated"}[ctx.spec.operation]
        summary = f"{verb} {len(names)} {kind}(s) on {ctx.provider} (simulated): {', '.join(names)}"
        return OperationResult(
            output=summary,
            results={
                "simulated": True,
                "provider": ctx.provider,
                "kind": kind,
                verb: names,
                "attempt": ctx.attempt,
                "previous": previous,
            },
            writes=writes,
        )

    async def rollback(self, ctx: OperationContext) -> OperationResult:
        sim = ctx.spec.simulate or DEFAULT_SIMULATION
        kind, items = _items(ctx.spec)
        if sim.latency_s > 0:
            await self._wait(ctx, sim, f"rolling back {kind}s on {ctx.provider}")
        if sim.fail_rollback:
            raise OperationFailed("simulated rollback failure (simulate.fail_rollback)")
        recorded = ctx.previous_results.get("previous")
        changes: dict[str, dict[str, Any] | None] = {}
        if isinstance(recorded, dict):
            await self.inventory.load()
            changes.update(recorded)
        else:
            # Applied before this provider recorded prior state: remove what it made.
            changes.update(dict.fromkeys(await self.inventory.made_by(ctx.task_id)))
        removed = [key.split("/", 1)[1] for key, row in changes.items() if row is None]
        restored = [key.split("/", 1)[1] for key, row in changes.items() if row is not None]
        # Made now, as the engine queues them with the operation's RolledBack transition.
        writes = self.inventory.writes(changes)
        return OperationResult(
            output=(
                f"undid {ctx.spec.operation} of {len(items)} {kind}(s) on {ctx.provider} "
                f"(simulated): removed {len(removed)}, restored {len(restored)}"
            ),
            results={"simulated": True, "removed": removed, "restored": restored},
            writes=tuple(writes),
        )

    async def _wait(self, ctx: OperationContext, sim: Simulate, message: str) -> None:
        if sim.latency_s <= 0:
            return
        step = sim.latency_s / sim.progress_steps
        for i in range(sim.progress_steps):
            await asyncio.sleep(step)
            await ctx.report(100.0 * (i + 1) / sim.progress_steps, message)
