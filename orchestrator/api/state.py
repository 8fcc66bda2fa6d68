"""``/state/*``: workflow progress, snapshots, system metrics, health and statistics."""

from __future__ import annotations

from aiohttp import web
from pydantic import Field

from orchestrator.keys import STATE, WORKFLOWS
from orchestrator.models import (
    INVENTORY,
    JOURNAL,
    PROGRESS,
    SNAPSHOTS,
    STATE_AT,
    STATE_STATISTICS,
    SYSTEM_HEALTH,
    SYSTEM_METRICS,
    InventoryQuery,
)
from orchestrator.views import (
    journal_entry_view,
    progress_document,
    snapshot_view,
    state_statistics_view,
    system_health_view,
    system_metrics_view,
)
from shared.web.envelope import ok, ok_encoded, paginated
from shared.web.routing import Api, Model

api = Api()


class StateQuery(Model):
    seq: int | None = Field(
        None, ge=0, le=2**63 - 1, description="journal position (a 64-bit integer); latest if omitted"
    )


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
    progress = await request.app[WORKFLOWS].encoded(request.match_info["id"], "progress", progress_document)
    return ok_encoded(progress)


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
    rows = await request.app[STATE].snapshots(request.match_info["id"])
    return ok([snapshot_view(r) for r in rows])


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
    return ok(await request.app[STATE].state_at(request.match_info["id"], query.seq))


@api.route(
    "GET", "/state/workflows/{id}/journal", resource="state", action="read", tags=("state",), response=JOURNAL
)
async def get_journal(request: web.Request) -> web.Response:
    """Every recorded transition of a workflow and its operations, in order."""
    entries = await request.app[STATE].journal(request.match_info["id"])
    return ok([journal_entry_view(e) for e in entries])


@api.route(
    "GET", "/state/system/metrics", resource="state", action="read", tags=("state",), response=SYSTEM_METRICS
)
async def get_system_metrics(request: web.Request) -> web.Response:
    """Workflow counts and the machine's load."""
    return ok(system_metrics_view(await request.app[STATE].system_metrics()))


@api.route(
    "GET", "/state/system/health", resource="state", action="read", tags=("state",), response=SYSTEM_HEALTH
)
async def get_system_health(request: web.Request) -> web.Response:
    """Health of storage, the batch coordinator and monitoring."""
    return ok(system_health_view(await request.app[STATE].system_health()))


@api.route(
    "GET", "/state/statistics", resource="state", action="read", tags=("state",), response=STATE_STATISTICS
)
async def get_statistics(request: web.Request) -> web.Response:
    """State manager statistics."""
    return ok(state_statistics_view(await request.app[STATE].statistics()))


@api.route(
    "GET",
    "/state/inventory",
    resource="state",
    action="read",
    query=InventoryQuery,
    tags=("state",),
    response=INVENTORY,
)
async def get_inventory(request: web.Request, query: InventoryQuery) -> web.Response:
    """Resources in the simulated cloud of the ``local`` provider (all simulated), a page
    at a time: in the order their pages were made, each page by key (not alphabetical
    across pages); filter by kind, provider or workflow."""
    listing = await request.app[STATE].inventory(query)
    return paginated(request, listing.items, query, listing)
