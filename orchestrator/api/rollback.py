"""``/rollback/*``: checkpoints, rollback, restore and statistics."""

from __future__ import annotations

from aiohttp import web

from orchestrator.keys import CHECKPOINTS, ROLLBACKS, STATE
from orchestrator.models import (
    CHECKPOINT,
    CHECKPOINT_DETAIL,
    ROLLBACK_RESULT,
    ROLLBACK_STATISTICS,
    CheckpointRequest,
    RollbackRequest,
)
from orchestrator.views import checkpoint_view, rollback_statistics_view
from shared.web.envelope import ok, paginated
from shared.web.routing import MESSAGE, STR, Api, PageQuery, array

api = Api()


@api.route(
    "POST",
    "/rollback/checkpoints",
    resource="rollback",
    action="create",
    body=CheckpointRequest,
    tags=("rollback",),
    status=201,
    response={**STR, "description": "the checkpoint's id"},
    errors=(404,),
)
async def create_checkpoint(request: web.Request, body: CheckpointRequest) -> web.Response:
    """A named checkpoint at the current point of the journal."""
    return ok(await request.app[CHECKPOINTS].create(body), status=201)


@api.route(
    "GET",
    "/rollback/checkpoints",
    resource="rollback",
    action="read",
    query=PageQuery,
    tags=("rollback",),
    response=array(CHECKPOINT),
)
async def list_checkpoints(request: web.Request, query: PageQuery) -> web.Response:
    """Checkpoints, newest first."""
    listing = await request.app[STATE].checkpoints(query.limit, query.offset, query.cursor)
    return paginated(request, [checkpoint_view(c) for c in listing.items], query, listing)


@api.route(
    "GET",
    "/rollback/checkpoints/{id}",
    resource="rollback",
    action="read",
    tags=("rollback",),
    response=CHECKPOINT_DETAIL,
)
async def get_checkpoint(request: web.Request) -> web.Response:
    """One checkpoint, with how many operations stood completed at it."""
    checkpoint, completed = await request.app[STATE].checkpoint(request.match_info["id"])
    return ok(checkpoint_view(checkpoint, operations_count=completed))


@api.route(
    "POST",
    "/rollback/execute",
    resource="rollback",
    action="rollback",
    body=RollbackRequest,
    tags=("rollback",),
    response=ROLLBACK_RESULT,
    errors=(404, 409),
)
async def execute_rollback(request: web.Request, body: RollbackRequest) -> web.Response:
    """Undo operations completed after a checkpoint, or given operations and dependents."""
    return ok(await request.app[ROLLBACKS].execute(body))


@api.route(
    "POST",
    "/rollback/restore/{id}",
    resource="rollback",
    action="rollback",
    tags=("rollback",),
    response=MESSAGE,
    errors=(409,),
)
async def restore_checkpoint(request: web.Request) -> web.Response:
    """Reset recorded state to a checkpoint without running any provider."""
    cid = request.match_info["id"]
    await request.app[CHECKPOINTS].restore(cid)
    return ok(f"State restored from checkpoint {cid}")


@api.route(
    "GET",
    "/rollback/statistics",
    resource="rollback",
    action="read",
    tags=("rollback",),
    response=ROLLBACK_STATISTICS,
)
async def rollback_statistics(request: web.Request) -> web.Response:
    """Checkpoints, rollbacks, success rate and mean rollback time."""
    return ok(rollback_statistics_view(await request.app[STATE].rollback_statistics()))
