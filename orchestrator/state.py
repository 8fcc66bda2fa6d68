"""What the orchestrator has recorded, read for the API: workflow progress, snapshots,
state replayed from the journal, the system's metrics and health, statistics of
workflows, checkpoints and rollbacks, and the simulated inventory.

:class:`StateService` is built once per app (``orchestrator.keys.STATE``). It reads
through the repository only and changes nothing; the handlers of ``/state/*`` and the
read routes of ``/rollback/*`` call it and shape its answers with
:mod:`orchestrator.views`. It never sees an HTTP request, so it is tested without one.
"""

from __future__ import annotations

import logging
import os
import resource
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from orchestrator.inventory_repository import InventoryFilter
from orchestrator.records import Checkpoint, Task, Workflow
from orchestrator.repository import InventoryRepository, Repository
from orchestrator.states import TaskStatus, WorkflowStatus
from orchestrator.views import human_size
from shared.errors import NotFound
from shared.settings import Settings
from shared.store.keyset import Listing

log = logging.getLogger(__name__)


class Health(StrEnum):
    HEALTHY = "Healthy"
    DEGRADED = "Degraded"
    UNHEALTHY = "Unhealthy"


@dataclass(frozen=True, slots=True)
class SystemMetrics:
    total_workflows: int
    active_workflows: int
    completed_workflows: int
    failed_workflows: int
    cancelled_workflows: int
    cpu_percent: float  # 1-minute load average over the cores
    memory_mb: float  # this process's peak resident set
    disk_percent: float  # of the data directory's file system


@dataclass(frozen=True, slots=True)
class SystemHealth:
    storage: Health
    batch_coordinator: Health
    monitoring: Health
    checked_at: datetime

    @property
    def overall(self) -> Health:
        parts = (self.storage, self.batch_coordinator, self.monitoring)
        if all(p is Health.HEALTHY for p in parts):
            return Health.HEALTHY
        return Health.UNHEALTHY if self.storage is not Health.HEALTHY else Health.DEGRADED


@dataclass(frozen=True, slots=True)
class StateStatistics:
    total_workflows: int
    snapshots: int
    storage_usage: str
    mean_duration_s: float
    workflows_by_status: dict[str, int]
    workflows_by_kind: dict[str, int]
    tasks_by_status: dict[str, int]
    checkpoints: int
    pruned: dict[str, int]  # what retention removed, by table (orchestrator/retention.py)
    retention_days: int


@dataclass(frozen=True, slots=True)
class RollbackStatistics:
    total_checkpoints: int
    total_rollbacks: int  # finished ones
    success_rate: float  # percent of finished rollbacks that succeeded; 100 when none
    mean_duration_s: float


class StateService:
    """Reads of recorded state for the API."""

    def __init__(
        self,
        settings: Settings,
        repo: Repository,
        inventory: InventoryRepository,
        coordinator_healthy: Callable[[], bool],
    ) -> None:
        self.settings = settings
        self.repo = repo
        self.inventory_repo = inventory
        self.coordinator_healthy = coordinator_healthy  # the engine's own view of itself

    # -- one workflow -----------------------------------------------------------------------

    async def workflow(self, workflow_id: str) -> Workflow:
        wf = await self.repo.get_workflow(workflow_id)
        if wf is None:
            raise NotFound(f"no workflow with id {workflow_id}")
        return wf

    async def progress(self, workflow_id: str) -> tuple[Workflow, list[Task]]:
        """A workflow and its tasks, for its progress."""
        wf = await self.workflow(workflow_id)
        return wf, await self.repo.workflow_tasks(wf.id)

    async def snapshots(self, workflow_id: str) -> list[dict[str, Any]]:
        wf = await self.workflow(workflow_id)
        return await self.repo.snapshots(wf.id)

    async def journal(self, workflow_id: str) -> list[dict[str, Any]]:
        """Every recorded transition of a workflow and its operations, in order."""
        wf = await self.workflow(workflow_id)
        return await self.repo.journal_of(wf.id)

    async def state_at(self, workflow_id: str, seq: int | None) -> dict[str, Any]:
        """The workflow's recorded state at a journal position (the latest if ``None``),
        rebuilt by replaying its journal: status, counts and each operation's status."""
        wf = await self.workflow(workflow_id)
        entries = await self.repo.journal_of(wf.id, seq)
        tasks: dict[str, dict[str, Any]] = {}
        workflow_status: str | None = None
        last = 0
        for e in entries:
            last = int(e["seq"])
            if e["entity_kind"] == "workflow":
                workflow_status = e["to"]
                continue
            previous = tasks.get(e["name"], {})
            attempt = e.get("attempt")
            tasks[e["name"]] = {
                "task_id": e["entity"],
                "status": e["to"],
                "attempt": attempt if attempt is not None else previous.get("attempt", 0),
            }
        if workflow_status is not None:
            for task in await self.repo.workflow_tasks(wf.id):
                tasks.setdefault(
                    task.name, {"task_id": task.id, "status": TaskStatus.PENDING.value, "attempt": 0}
                )
        counts: dict[str, int] = {}
        for t in tasks.values():
            counts[t["status"]] = counts.get(t["status"], 0) + 1
        return {
            "workflow_id": wf.id,
            "journal_seq": last,
            "status": workflow_status,
            "counts": counts,
            "operations": tasks,
        }

    # -- the system --------------------------------------------------------------------------

    async def system_metrics(self) -> SystemMetrics:
        """Workflow counts and the machine's load."""
        by = (await self.repo.workflow_stats())["by_status"]
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return SystemMetrics(
            total_workflows=sum(by.values()),
            active_workflows=by.get(WorkflowStatus.RUNNING, 0) + by.get(WorkflowStatus.PENDING, 0),
            completed_workflows=by.get(WorkflowStatus.COMPLETED, 0),
            failed_workflows=by.get(WorkflowStatus.FAILED, 0),
            cancelled_workflows=by.get(WorkflowStatus.CANCELLED, 0),
            cpu_percent=round(os.getloadavg()[0] / (os.cpu_count() or 1) * 100, 1),
            memory_mb=round(rss_mb, 1),
            disk_percent=_disk_percent(self.settings.data_dir),
        )

    async def system_health(self) -> SystemHealth:
        """Storage (a round trip to the store), the batch coordinator (the engine) and monitoring."""
        try:
            await self.repo.ping()
            storage = Health.HEALTHY
        except Exception as exc:  # any failure to answer is what "Unhealthy" reports
            log.warning("the store did not answer the health check", extra={"error": str(exc)})
            storage = Health.UNHEALTHY
        coordinator = Health.HEALTHY if self.coordinator_healthy() else Health.DEGRADED
        return SystemHealth(storage, coordinator, Health.HEALTHY, datetime.now(UTC))

    async def statistics(self) -> StateStatistics:
        """Counts from the counter rows (one lookup each, whatever the history)."""
        stats = await self.repo.workflow_stats()
        return StateStatistics(
            total_workflows=sum(stats["by_status"].values()),
            snapshots=stats["snapshots"],
            storage_usage=_storage_usage(self.settings),
            mean_duration_s=round(stats["mean_duration_s"], 3),
            workflows_by_status=stats["by_status"],
            workflows_by_kind=stats["by_kind"],
            tasks_by_status=stats["tasks_by_status"],
            checkpoints=stats["checkpoints"],
            pruned=stats["pruned"],
            retention_days=self.settings.retention_days,
        )

    async def inventory(self, query: InventoryFilter) -> Listing[dict[str, Any]]:
        """A page of the ``local`` provider's simulated cloud (page order, each page by
        key; ``orchestrator/inventory_repository.py``) and how many match."""
        listed = await self.inventory_repo.listing(query)
        return Listing(listed.page.rows, listed.total, listed.page.next_cursor)

    # -- checkpoints and rollbacks ----------------------------------------------------------

    async def checkpoints(self, limit: int, offset: int, cursor: str | None) -> Listing[Checkpoint]:
        """Checkpoints, newest first, and how many there are."""
        return await self.repo.list_checkpoints(limit, offset, cursor)

    async def checkpoint(self, checkpoint_id: str) -> tuple[Checkpoint, int]:
        """A checkpoint and how many operations stood Completed at it."""
        cp = await self.repo.get_checkpoint(checkpoint_id)
        if cp is None:
            raise NotFound(f"no checkpoint with id {checkpoint_id}")
        return cp, await self.completed_at(cp.seq)

    async def completed_at(self, seq: int) -> int:
        """How many operations stood Completed at a journal position, replayed from the
        journal so that later changes (rollbacks, restores) never rewrite the answer."""
        last: dict[str, str] = {}
        for e in await self.repo.task_transitions_upto(seq):
            last[str(e["entity"])] = str(e["to"])
        return sum(1 for status in last.values() if status == TaskStatus.COMPLETED)

    async def rollback_statistics(self) -> RollbackStatistics:
        """Checkpoints, finished rollbacks, their success rate and mean duration."""
        total_checkpoints = (await self.repo.workflow_stats())["checkpoints"]
        finished = [r for r in await self.repo.rollbacks() if r.get("completed_at") is not None]
        succeeded = sum(1 for r in finished if r.get("success"))
        durations = [float(r.get("duration") or 0) for r in finished]
        return RollbackStatistics(
            total_checkpoints=total_checkpoints,
            total_rollbacks=len(finished),
            success_rate=round(succeeded / len(finished) * 100, 1) if finished else 100.0,
            mean_duration_s=round(sum(durations) / len(durations), 3) if durations else 0.0,
        )


def _disk_percent(path: Path) -> float:
    try:
        usage = shutil.disk_usage(path if path.exists() else Path.cwd())
    except OSError:
        return 0.0
    return round(usage.used / usage.total * 100, 1)


def _dir_bytes(path: Path) -> int:
    total = 0
    if path.exists():
        for p in path.rglob("*"):
            if p.is_file():
                total += p.stat().st_size
    return total


def _storage_usage(settings: Settings) -> str:
    if settings.is_embedded_file_store:
        return human_size(_dir_bytes(settings.data_dir / "db"))
    if settings.resolved_db_url.startswith("mem://"):
        return "in memory (not persisted)"
    return "n/a (remote SurrealDB server)"
