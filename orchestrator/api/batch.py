"""``/batch/*`` and the single-purpose ``/workflows/*`` submissions."""

from __future__ import annotations

import functools
import re
import uuid
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from orchestrator.keys import WORKFLOWS
from orchestrator.models import (
    BATCH_DOCUMENT,
    BATCH_LIST_ITEM,
    BATCH_SUBMITTED,
    PLAN,
    WORKFLOW_ID,
    BatchDocumentQuery,
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
from orchestrator.submission import Join
from orchestrator.views import batch_document, batch_list_view, submitted_view
from shared.errors import ValidationFailed
from shared.security.actor import actor_of
from shared.security.audit import record_request_with
from shared.web.envelope import encode_json, ok, ok_encoded, paginated
from shared.web.middlewares import SUBMITTED
from shared.web.routing import MESSAGE, Api, array
from shared.web.validation import json_body, validation_failed

api = Api()
DEFAULT_WORKFLOW_PROVIDER = "local"
WORKFLOW_STATUSES = frozenset(s.value for s in WorkflowStatus)


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
    burst=True,
)
async def execute_batch(request: web.Request, body: BatchRequest) -> web.Response:
    """Validate and start a batch (or, with ``check_mode``, return its plan)."""
    workflows = request.app[WORKFLOWS]
    if body.check_mode:
        return ok({"check_mode": True, "plan": workflows.plan(body)})
    _, doc = await json_body(request)  # parsed once already: what ``body`` was validated from
    body.keep_received(doc.get("operations"))
    wf = await workflows.submit(body, actor_of(request), join=_audited(request, 201))
    request[SUBMITTED] = True
    return ok_encoded(encode_json(submitted_view(wf)), status=201)


def _audited(request: web.Request, status: int) -> Join:
    """The request's audit record (as answering ``status``), committed with the
    submission: one commit and one sync before the answer, not two."""
    return functools.partial(record_request_with, request, status)


@api.route(
    "GET",
    "/batch/operations",
    resource="batch",
    action="read",
    query=BatchListQuery,
    tags=("batch",),
    response=array(BATCH_LIST_ITEM),
)
async def list_batches(request: web.Request, query: BatchListQuery) -> web.Response:
    """Every batch, newest first, its operations counted by status (and, in the full view,
    listed for batches of at most 100, at most 100 over the page; page the others with
    ``GET /tasks?workflow_id=``)."""
    if query.status is not None and query.status not in WORKFLOW_STATUSES:
        raise ValidationFailed(f"unknown status {query.status!r}")
    listing = await request.app[WORKFLOWS].batches(
        status=None if query.status is None else WorkflowStatus(query.status),
        limit=query.limit,
        offset=query.offset,
        cursor=query.cursor,
        full=query.view == "full",
    )
    return paginated(request, [batch_list_view(b) for b in listing.items], query, listing)


@api.route(
    "GET",
    "/batch/operations/{id}",
    resource="batch",
    action="read",
    query=BatchDocumentQuery,
    tags=("batch",),
    response=BATCH_DOCUMENT,
)
async def get_batch(request: web.Request, query: BatchDocumentQuery) -> web.Response:
    """One batch's status, its operations counted by status, and their progress and
    results (``view=summary``: without the operations; ``fields``: only those)."""
    fields = query.selected
    document = await request.app[WORKFLOWS].encoded(
        request.match_info["id"], ("document", fields), lambda capture: batch_document(capture, fields)
    )
    return ok_encoded(document)


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
    await request.app[WORKFLOWS].cancel(request.match_info["id"])
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
    workflows = request.app[WORKFLOWS]
    if batch.check_mode:
        return ok({"check_mode": True, "plan": workflows.plan(batch)})
    wid = str(uuid.uuid4())
    await workflows.submit(
        batch, actor_of(request), kind=kind, workflow_id=wid, task_id=wid, join=_audited(request, 201)
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
