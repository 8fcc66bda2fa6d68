"""``/batch/*`` and the single-purpose ``/workflows/*`` submissions."""

from __future__ import annotations

import re
import uuid
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from orchestrator.keys import ENGINE
from orchestrator.models import (
    BATCH_SUBMITTED,
    BATCH_VIEW,
    PLAN,
    WORKFLOW_ID,
    BatchListQuery,
    BatchRequest,
    ClusterWorkflowRequest,
    OperationSpec,
    OperationType,
    ServerConfig,
    ServerWorkflowRequest,
    TaskservWorkflowRequest,
    WorkflowCommon,
)
from orchestrator.states import WorkflowStatus
from orchestrator.views import batch_view
from shared.errors import NotFound, ValidationFailed
from shared.security.auth import principal_of
from shared.web.envelope import ok, paginated
from shared.web.middlewares import SUBMITTED
from shared.web.routing import MESSAGE, Api, array
from shared.web.validation import validation_failed

api = Api()
DEFAULT_WORKFLOW_PROVIDER = "local"


@api.route(
    "POST",
    "/batch/execute",
    resource="batch",
    action="execute",
    body=BatchRequest,
    tags=("batch",),
    status=201,
    response=BATCH_SUBMITTED,
    alternatives={200: PLAN},
)
async def execute_batch(request: web.Request, body: BatchRequest) -> web.Response:
    """Validate and start a batch (or, with ``check_mode``, return its plan)."""
    engine = request.app[ENGINE]
    if body.check_mode:
        return ok({"check_mode": True, "plan": engine.plan(body)})
    wf = await engine.submit(body, submitted_by=principal_of(request).username)
    request[SUBMITTED] = True
    return ok(
        {
            "batch_id": wf.id,
            "status": str(WorkflowStatus.RUNNING),
            "checkpoint_id": wf.checkpoint_id,
            "operations": [
                {"id": t.name, "task_id": t.id, "status": "Pending", "progress": 0.0}
                for t in wf.tasks.values()
            ],
        },
        status=201,
    )


@api.route(
    "GET",
    "/batch/operations",
    resource="batch",
    action="read",
    query=BatchListQuery,
    tags=("batch",),
    response=array(BATCH_VIEW),
)
async def list_batches(request: web.Request, query: BatchListQuery) -> web.Response:
    """Every batch, newest first, with its operations."""
    if query.status is not None and query.status not in [str(s) for s in WorkflowStatus]:
        raise ValidationFailed(f"unknown status {query.status!r}")
    repo = request.app[ENGINE].repo
    rows, total = await repo.workflows(status=query.status, kind=None, limit=query.limit, offset=query.offset)
    tasks = await repo.tasks_of_many([r["id"] for r in rows]) if rows else []
    by_wf: dict[str, list[dict[str, Any]]] = {}
    for t in tasks:
        by_wf.setdefault(t["workflow_id"], []).append(t)
    data = [batch_view(r, by_wf.get(r["id"], [])) for r in rows]
    return paginated(request, data, total, query.limit, query.offset)


@api.route(
    "GET", "/batch/operations/{id}", resource="batch", action="read", tags=("batch",), response=BATCH_VIEW
)
async def get_batch(request: web.Request) -> web.Response:
    """One batch's status and its operations' progress and results."""
    wid = request.match_info["id"]
    repo = request.app[ENGINE].repo
    wf = await repo.workflow(wid)
    if wf is None:
        raise NotFound(f"no batch with id {wid}")
    return ok(batch_view(wf, await repo.tasks_of(wid)))


@api.route(
    "POST",
    "/batch/operations/{id}/cancel",
    resource="batch",
    action="cancel",
    tags=("batch",),
    response=MESSAGE,
    errors=(409,),
)
async def cancel_batch(request: web.Request) -> web.Response:
    """Stop scheduling, kill running operations, mark the batch Cancelled (409 if finished)."""
    await request.app[ENGINE].cancel(request.match_info["id"])
    return ok("Operation cancelled")


# -- single-purpose workflows -------------------------------------------------------


def operation_id(*parts: str) -> str:
    """An operation id from request text ("create", "my svc" → "create_my_svc"): characters
    an id cannot hold become ``_``, and it is cut to the id's maximum length."""
    return re.sub(r"[^A-Za-z0-9_.:-]", "_", "_".join(parts))[:128]


def _one_op_batch(name: str, common: WorkflowCommon, op: dict[str, Any]) -> BatchRequest:
    try:
        spec = OperationSpec.model_validate(
            {
                "provider": common.provider or DEFAULT_WORKFLOW_PROVIDER,
                "infra": common.infra,
                "settings": common.settings,
                "simulate": common.simulate.model_dump() if common.simulate else None,
                "params": {"wait": common.wait},
                **op,
            }
        )
        return BatchRequest(name=name, operations=[spec], check_mode=common.check_mode, parallel_limit=1)
    except ValidationError as exc:  # a field the operation derives from the request
        raise validation_failed(exc, "request body") from exc


def servers_batch(body: ServerWorkflowRequest) -> BatchRequest:
    servers = body.servers or [ServerConfig(name=f"{body.infra[:118]}-server-01")]
    return _one_op_batch(
        f"servers_create_{body.infra}",
        body,
        {
            "id": "create_servers",
            "type": OperationType.SERVER_BATCH,
            "server_configs": [s.model_dump() for s in servers],
        },
    )


def taskserv_batch(body: TaskservWorkflowRequest) -> BatchRequest:
    return _one_op_batch(
        f"taskserv_{body.operation}_{body.taskserv}",
        body,
        {
            "id": operation_id(body.operation, body.taskserv),
            "type": OperationType.TASKSERV_BATCH,
            "taskservs": [body.taskserv],
            "operation": body.operation,
        },
    )


def cluster_batch(body: ClusterWorkflowRequest) -> BatchRequest:
    return _one_op_batch(
        f"cluster_{body.operation}_{body.cluster_type}",
        body,
        {
            "id": operation_id(body.operation, body.cluster_type),
            "type": OperationType.CLUSTER_BATCH,
            "cluster_type": body.cluster_type,
            "operation": body.operation,
        },
    )


async def _submit_one(request: web.Request, kind: str, batch: BatchRequest) -> web.Response:
    engine = request.app[ENGINE]
    if batch.check_mode:
        return ok({"check_mode": True, "plan": engine.plan(batch)})
    wid = str(uuid.uuid4())
    await engine.submit(
        batch, kind=kind, workflow_id=wid, task_id=wid, submitted_by=principal_of(request).username
    )
    request[SUBMITTED] = True
    return ok(wid, status=201)


@api.route(
    "POST",
    "/workflows/servers/create",
    resource="workflows",
    action="create",
    body=ServerWorkflowRequest,
    tags=("workflows",),
    status=201,
    response=WORKFLOW_ID,
    alternatives={200: PLAN},
)
async def create_servers(request: web.Request, body: ServerWorkflowRequest) -> web.Response:
    """Create servers for an infrastructure: a one-operation batch; returns the task id."""
    return await _submit_one(request, "servers", servers_batch(body))


@api.route(
    "POST",
    "/workflows/taskserv/create",
    resource="workflows",
    action="create",
    body=TaskservWorkflowRequest,
    tags=("workflows",),
    status=201,
    response=WORKFLOW_ID,
    alternatives={200: PLAN},
)
async def create_taskserv(request: web.Request, body: TaskservWorkflowRequest) -> web.Response:
    """Install (or update, delete) a task service such as kubernetes; returns the task id."""
    return await _submit_one(request, "taskserv", taskserv_batch(body))


@api.route(
    "POST",
    "/workflows/cluster/create",
    resource="workflows",
    action="create",
    body=ClusterWorkflowRequest,
    tags=("workflows",),
    status=201,
    response=WORKFLOW_ID,
    alternatives={200: PLAN},
)
async def create_cluster(request: web.Request, body: ClusterWorkflowRequest) -> web.Response:
    """Build (or update, delete) a cluster; returns the task id."""
    return await _submit_one(request, "cluster", cluster_batch(body))
