"""``/rollback/*``: checkpoints, rollback, restore and statistics."""

from __future__ import annotations

from aiohttp import web

from orchestrator.keys import CHECKPOINTS, ENGINE, ROLLBACKS
from orchestrator.models import (
    CHECKPOINT,
    CHECKPOINT_DETAIL,
    ROLLBACK_RESULT,
    ROLLBACK_STATISTICS,
    CheckpointRequest,
    RollbackRequest,
)
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
    cps = request.app[CHECKPOINTS]
    rows, total = await cps.repo.checkpoints(query.limit, query.offset)
    return paginated(request, [await cps.view(r) for r in rows], total, query.limit, query.offset)


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
    cps = request.app[CHECKPOINTS]
    return ok(await cps.view(await cps.get(request.match_info["id"]), detail=True))


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
    repo = request.app[ENGINE].repo
    _, total_cps = await repo.checkpoints(1, 0)
    rollbacks = [r for r in await repo.rollbacks() if r.get("completed_at") is not None]
    ok_count = sum(1 for r in rollbacks if r.get("success"))
    durations = [float(r.get("duration") or 0) for r in rollbacks]
    return ok(
        {
            "total_checkpoints": total_cps,
            "total_rollbacks": len(rollbacks),
            "success_rate": round(ok_count / len(rollbacks) * 100, 1) if rollbacks else 100.0,
            "average_rollback_time": round(sum(durations) / len(durations), 3) if durations else 0.0,
        }
    )
