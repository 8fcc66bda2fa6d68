"""``/state/*``: workflow progress, snapshots, system metrics, health and statistics."""

from __future__ import annotations

import os
import resource
import shutil
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web
from pydantic import Field

from orchestrator.checkpoints import human_size
from orchestrator.keys import ENGINE
from orchestrator.models import (
    INVENTORY,
    JOURNAL,
    PROGRESS,
    SNAPSHOTS,
    STATE_AT,
    STATE_STATISTICS,
    SYSTEM_HEALTH,
    SYSTEM_METRICS,
)
from orchestrator.snapshots import state_at, view
from orchestrator.views import workflow_progress
from shared.errors import NotFound
from shared.settings import Settings
from shared.web.envelope import ok
from shared.web.keys import SETTINGS
from shared.web.routing import Api, Model

api = Api()


class StateQuery(Model):
    seq: int | None = Field(
        None, ge=0, le=2**63 - 1, description="journal position (a 64-bit integer); latest if omitted"
    )


async def _workflow(request: web.Request) -> dict[str, object]:
    wid = request.match_info["id"]
    wf = await request.app[ENGINE].repo.workflow(wid)
    if wf is None:
        raise NotFound(f"no workflow with id {wid}")
    return wf


@api.route(
    "GET",
    "/state/workflows/{id}/progress",
    resource="state",
    action="read",
    tags=("state",),
    response=PROGRESS,
)
async def get_progress(request: web.Request) -> web.Response:
    """Real-time progress of a workflow."""
    wf = await _workflow(request)
    tasks = await request.app[ENGINE].repo.tasks_of(str(wf["id"]))
    return ok(workflow_progress(wf, tasks))


@api.route(
    "GET",
    "/state/workflows/{id}/snapshots",
    resource="state",
    action="read",
    tags=("state",),
    response=SNAPSHOTS,
)
async def get_snapshots(request: web.Request) -> web.Response:
    """Snapshots at the workflow's milestones (submitted, failures, finished)."""
    wf = await _workflow(request)
    rows = await request.app[ENGINE].repo.snapshots(str(wf["id"]))
    return ok([view(r) for r in rows])


@api.route(
    "GET",
    "/state/workflows/{id}/state",
    resource="state",
    action="read",
    query=StateQuery,
    tags=("state",),
    response=STATE_AT,
)
async def get_state_at(request: web.Request, query: StateQuery) -> web.Response:
    """The workflow's recorded state at any journal position, rebuilt from the journal."""
    wf = await _workflow(request)
    return ok(await state_at(request.app[ENGINE].repo, str(wf["id"]), query.seq))


@api.route(
    "GET", "/state/workflows/{id}/journal", resource="state", action="read", tags=("state",), response=JOURNAL
)
async def get_journal(request: web.Request) -> web.Response:
    """Every recorded transition of a workflow and its operations, in order."""
    wf = await _workflow(request)
    rows = await request.app[ENGINE].repo.journal_of(str(wf["id"]))
    return ok(
        [
            {
                "seq": r["seq"],
                "at": r["at"],
                "entity_kind": r["entity_kind"],
                "entity_id": r["entity"],
                "name": r["name"],
                "from": r.get("from"),
                "to": r["to"],
                "attempt": r.get("attempt"),
                "note": r.get("note"),
            }
            for r in rows
        ]
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


@api.route(
    "GET", "/state/system/metrics", resource="state", action="read", tags=("state",), response=SYSTEM_METRICS
)
async def get_system_metrics(request: web.Request) -> web.Response:
    """Workflow counts and the machine's load."""
    stats = await request.app[ENGINE].repo.workflow_stats()
    by = stats["by_status"]
    settings = request.app[SETTINGS]
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return ok(
        {
            "total_workflows": sum(by.values()),
            "active_workflows": by.get("Running", 0) + by.get("Pending", 0),
            "completed_workflows": by.get("Completed", 0),
            "failed_workflows": by.get("Failed", 0),
            "cancelled_workflows": by.get("Cancelled", 0),
            "system_load": {
                "cpu_usage": round(os.getloadavg()[0] / (os.cpu_count() or 1) * 100, 1),
                "memory_usage": round(rss_mb, 1),
                "disk_usage": _disk_percent(settings.data_dir),
            },
        }
    )


@api.route(
    "GET", "/state/system/health", resource="state", action="read", tags=("state",), response=SYSTEM_HEALTH
)
async def get_system_health(request: web.Request) -> web.Response:
    """Health of storage, the batch coordinator and monitoring."""
    engine = request.app[ENGINE]
    try:
        await engine.store.query("RETURN 1")
        storage = "Healthy"
    except Exception:
        storage = "Unhealthy"
    coordinator = "Healthy" if engine.healthy else "Degraded"
    components = {"storage": storage, "batch_coordinator": coordinator, "monitoring": "Healthy"}
    overall = (
        "Healthy"
        if all(v == "Healthy" for v in components.values())
        else ("Unhealthy" if storage != "Healthy" else "Degraded")
    )
    return ok({"overall_status": overall, "components": components, "last_check": datetime.now(UTC)})


@api.route(
    "GET", "/state/statistics", resource="state", action="read", tags=("state",), response=STATE_STATISTICS
)
async def get_statistics(request: web.Request) -> web.Response:
    """State manager statistics."""
    stats = await request.app[ENGINE].repo.workflow_stats()
    settings = request.app[SETTINGS]
    return ok(
        {
            "total_workflows": sum(stats["by_status"].values()),
            "active_snapshots": stats["snapshots"],
            "storage_usage": _storage_usage(settings),
            "average_workflow_duration": round(stats["mean_duration_s"], 3),
        }
    )


@api.route("GET", "/state/inventory", resource="state", action="read", tags=("state",), response=INVENTORY)
async def get_inventory(request: web.Request) -> web.Response:
    """Resources in the simulated cloud of the ``local`` provider (all simulated)."""
    return ok(await request.app[ENGINE].repo.inventory())
