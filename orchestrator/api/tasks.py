"""``/tasks``: every operation of every workflow."""

from __future__ import annotations

from aiohttp import web

from orchestrator.keys import ENGINE
from orchestrator.models import TASK_VIEW, TaskQuery
from orchestrator.states import TaskStatus
from orchestrator.views import task_view
from shared.errors import NotFound, ValidationFailed
from shared.web.envelope import ok, paginated
from shared.web.routing import Api, array

api = Api()
STATUSES = [str(s) for s in TaskStatus]


@api.route(
    "GET",
    "/tasks",
    resource="tasks",
    action="read",
    query=TaskQuery,
    tags=("tasks",),
    response=array(TASK_VIEW),
)
async def list_tasks(request: web.Request, query: TaskQuery) -> web.Response:
    """List tasks, newest first; filter by status or workflow."""
    if query.status is not None and query.status not in STATUSES:
        raise ValidationFailed(
            f"unknown status {query.status!r}; use one of {', '.join(STATUSES)}",
            details={"fields": [{"field": "status", "message": "unknown status"}]},
        )
    repo = request.app[ENGINE].repo
    rows, total = await repo.tasks(
        status=query.status,
        workflow_id=query.workflow_id,
        limit=query.limit,
        offset=query.offset,
    )
    return paginated(request, [task_view(r) for r in rows], total, query.limit, query.offset)


@api.route("GET", "/tasks/{id}", resource="tasks", action="read", tags=("tasks",), response=TASK_VIEW)
async def get_task(request: web.Request) -> web.Response:
    """One task's status and details."""
    task_id = request.match_info["id"]
    row = await request.app[ENGINE].repo.task(task_id)
    if row is None:
        raise NotFound(f"no task with id {task_id}")
    return ok(task_view(row))
