"""``/tasks``: every operation of every workflow."""

from __future__ import annotations

from aiohttp import web

from orchestrator.keys import WORKFLOWS
from orchestrator.models import TASK_VIEW, TaskQuery
from orchestrator.states import TaskStatus
from orchestrator.views import task_view
from shared.errors import ValidationFailed
from shared.web.envelope import ok, paginated
from shared.web.routing import Api, array

api = Api()
STATUSES = [s.value for s in TaskStatus]


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
    """List tasks, newest workflow first (each in submission order); filter by status or
    workflow (``workflow_id`` pages through one batch's operations)."""
    if query.status is not None and query.status not in STATUSES:
        raise ValidationFailed(
            f"unknown status {query.status!r}; use one of {', '.join(STATUSES)}",
            details={"fields": [{"field": "status", "message": "unknown status"}]},
        )
    listing = await request.app[WORKFLOWS].tasks(query)
    return paginated(request, [task_view(t) for t in listing.items], query, listing)


@api.route("GET", "/tasks/{id}", resource="tasks", action="read", tags=("tasks",), response=TASK_VIEW)
async def get_task(request: web.Request) -> web.Response:
    """One task's status and details."""
    return ok(task_view(await request.app[WORKFLOWS].task(request.match_info["id"])))
