"""The orchestrator's own tools: batches, tasks, checkpoints, rollback, audit, statistics.

Each mirrors one REST route (same policy ``resource``/``action``, same service call,
same view) so that an assistant can do over MCP exactly what the caller's token may
do over HTTP, and nothing else. Handlers call the app's services, never HTTP and
never a repository; the services exist once the app has started, so each handler
looks them up in the app when it runs.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field, field_validator

from orchestrator.keys import CHECKPOINTS, ROLLBACKS, STATE, WORKFLOWS
from orchestrator.models import (
    BATCH_DOCUMENT_FIELDS,
    BatchListQuery,
    BatchRequest,
    CheckpointRequest,
    RollbackRequest,
    TaskQuery,
)
from orchestrator.states import WorkflowStatus
from orchestrator.tools import Tool, ToolCall
from orchestrator.views import (
    batch_document,
    batch_list_view,
    batch_view,
    checkpoint_view,
    progress_document,
    rollback_statistics_view,
    state_statistics_view,
    submitted_view,
    task_view,
)
from orchestrator.workflows import BatchCapture
from shared.security.audit import AUDIT, HASHED_FIELDS, SEARCH_FIELDS, search_filters
from shared.store.keyset import Listing
from shared.web.routing import Model, PageQuery

PREFIX = "provisioning."
ID = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")
WAIT_MAX_S = 600.0
POLL_S = 0.1  # how often a waiting submission looks at its batch
FINAL = frozenset({WorkflowStatus.COMPLETED, WorkflowStatus.FAILED, WorkflowStatus.CANCELLED})
# The batch view's fields (the document's, without its counts), in the document's order.
BATCH_VIEW_FIELDS = tuple(f for f in BATCH_DOCUMENT_FIELDS if f not in ("counts", "total_operations"))


async def _batch_view_document(capture: BatchCapture) -> bytes:
    return await batch_document(capture, BATCH_VIEW_FIELDS)


def plain(value: Any) -> Any:
    """A view as plain JSON values (datetimes as ISO 8601 with ``Z``)."""

    def default(v: Any) -> Any:
        if isinstance(v, BaseModel):
            return v.model_dump(mode="json")
        if isinstance(v, datetime):
            return v.isoformat().replace("+00:00", "Z")
        raise TypeError(f"not JSON serialisable: {type(v).__name__}")

    return json.loads(json.dumps(value, default=default))


# -- argument models ----------------------------------------------------------------------


class ById(Model):
    id: str = ID


class SubmitBatch(BatchRequest):
    """A batch (``POST /batch/execute``); ``wait_s`` waits that long for it to finish,
    reporting progress when the caller can receive it."""

    wait_s: float = Field(0.0, ge=0, le=WAIT_MAX_S, description="wait for the batch to finish (seconds)")


class AuditLogQuery(PageQuery):
    """``GET /audit/logs``'s filters; a trailing ``*`` matches a prefix."""

    user_id: str | None = Field(None, max_length=128)
    action: str | None = Field(None, max_length=128)
    resource: str | None = Field(None, max_length=256)
    result: str | None = Field(None, max_length=32)
    from_: datetime | None = Field(None, alias="from")
    to: datetime | None = None

    @field_validator("from_", "to")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


class NoArguments(Model):
    pass


def _page(items: list[Any], listing: Listing[Any], query: PageQuery) -> dict[str, Any]:
    """A page as a tool answers it: ``next_cursor`` continues it (``cursor`` argument)."""
    return {
        "items": plain(items),
        "total": listing.total,
        "limit": query.limit,
        "offset": query.offset,
        "next_cursor": listing.next_cursor,
    }


def _check_mode(arguments: dict[str, Any]) -> dict[str, Any]:
    return {**arguments, "check_mode": True}


def product_tools(app: web.Application) -> list[Tool]:
    """The orchestrator's tools, bound to ``app``'s services."""

    async def validate(call: ToolCall, args: BatchRequest) -> Any:
        batch = args.model_copy(update={"check_mode": True})
        return plain({"check_mode": True, "plan": app[WORKFLOWS].plan(batch)})

    async def submit(call: ToolCall, args: SubmitBatch) -> Any:
        workflows = app[WORKFLOWS]
        batch = BatchRequest.model_validate(args.model_dump(exclude={"wait_s"}))
        if batch.check_mode:
            return plain({"check_mode": True, "plan": workflows.plan(batch)})
        wf = await workflows.submit(batch, call.actor)
        submitted = plain(submitted_view(wf))
        if args.wait_s <= 0:
            return submitted
        return await _wait(call, wf.id, args.wait_s)

    async def _wait(call: ToolCall, batch_id: str, wait_s: float) -> Any:
        workflows = app[WORKFLOWS]
        deadline = asyncio.get_running_loop().time() + wait_s
        reported = -1.0  # progress notifications must increase
        while True:
            # From the engine's memory while it runs (a poll never reads every task row).
            capture = await workflows.capture(batch_id)
            wf, tasks = capture.workflow, capture.tasks
            view = batch_view(wf, tasks)
            percent = float(view["progress"])
            if percent > reported:
                reported = percent
                done = sum(1 for t in tasks if t.final)
                text = f"{wf.status.value}: {done}/{len(tasks)} operations finished"
                await call.report(percent, 100.0, text)
            if wf.status in FINAL or asyncio.get_running_loop().time() >= deadline:
                return plain(view)
            await asyncio.sleep(POLL_S)

    async def get_batch(call: ToolCall, args: ById) -> Any:
        # The batch view's fields, encoded as the REST document is (and kept alike once
        # the batch has finished: a repeated call costs a lookup).
        key = ("document", BATCH_VIEW_FIELDS)
        return json.loads(await app[WORKFLOWS].encoded(args.id, key, _batch_view_document))

    async def list_batches(call: ToolCall, args: BatchListQuery) -> Any:
        status = None if args.status is None else WorkflowStatus(args.status)
        listing = await app[WORKFLOWS].batches(
            status=status, limit=args.limit, offset=args.offset, cursor=args.cursor, full=args.view == "full"
        )
        return _page([batch_list_view(b) for b in listing.items], listing, args)

    async def progress(call: ToolCall, args: ById) -> Any:
        return json.loads(await app[WORKFLOWS].encoded(args.id, "progress", progress_document))

    async def cancel(call: ToolCall, args: ById) -> Any:
        await app[WORKFLOWS].cancel(args.id)
        return {"batch_id": args.id, "message": "Operation cancelled"}

    async def list_tasks(call: ToolCall, args: TaskQuery) -> Any:
        listing = await app[WORKFLOWS].tasks(args)
        return _page([task_view(t) for t in listing.items], listing, args)

    async def get_task(call: ToolCall, args: ById) -> Any:
        return plain(task_view(await app[WORKFLOWS].task(args.id)))

    async def list_checkpoints(call: ToolCall, args: PageQuery) -> Any:
        listing = await app[STATE].checkpoints(args.limit, args.offset, args.cursor)
        return _page([checkpoint_view(c) for c in listing.items], listing, args)

    async def create_checkpoint(call: ToolCall, args: CheckpointRequest) -> Any:
        return {"checkpoint_id": await app[CHECKPOINTS].create(args)}

    async def rollback(call: ToolCall, args: RollbackRequest) -> Any:
        return plain(await app[ROLLBACKS].execute(args))

    async def restore(call: ToolCall, args: ById) -> Any:
        await app[CHECKPOINTS].restore(args.id)
        return {"checkpoint_id": args.id, "message": f"State restored from checkpoint {args.id}"}

    async def audit_log(call: ToolCall, args: AuditLogQuery) -> Any:
        filters = search_filters(**args.model_dump(include=SEARCH_FIELDS))
        listing = await app[AUDIT].search(filters, args.limit, args.offset, args.cursor)
        fields = [k for k in (*HASHED_FIELDS, "hash") if k != "prev_hash"]
        return _page([{k: row.get(k) for k in fields} for row in listing.items], listing, args)

    async def statistics(call: ToolCall, args: NoArguments) -> Any:
        return plain(state_statistics_view(await app[STATE].statistics()))

    async def rollback_statistics(call: ToolCall, args: NoArguments) -> Any:
        return plain(rollback_statistics_view(await app[STATE].rollback_statistics()))

    def tool(
        name: str,
        description: str,
        model: type[BaseModel],
        handler: Callable[[ToolCall, Any], Awaitable[Any]],
        resource: str,
        action: str,
        route: str,
        document: Callable[[dict[str, Any]], Any] | None = None,
    ) -> Tool:
        return Tool(
            PREFIX + name, description, model, handler, resource, action, route=route, document=document
        )

    return [
        tool(
            "batch.validate",
            "Validate a batch and return its plan without running anything (check mode): the "
            "operations in dependency order, and what each would do.",
            BatchRequest,
            validate,
            "batch",
            "execute",
            "POST /batch/execute",
            document=_check_mode,
        ),
        tool(
            "batch.submit",
            "Submit a batch of operations (a DAG) to run. Returns its batch_id at once, or with "
            "wait_s > 0 waits for it to finish and streams progress notifications.",
            SubmitBatch,
            submit,
            "batch",
            "execute",
            "POST /batch/execute",
        ),
        tool(
            "batch.get",
            "One batch: its status, error, and each operation's status, progress, output and error.",
            ById,
            get_batch,
            "batch",
            "read",
            "GET /batch/operations/{id}",
        ),
        tool(
            "batch.list",
            "Batches, newest first, with their operations; filter by status.",
            BatchListQuery,
            list_batches,
            "batch",
            "read",
            "GET /batch/operations",
        ),
        tool(
            "batch.progress",
            "A batch's progress: percent, current step, steps done and an estimate of the time left.",
            ById,
            progress,
            "state",
            "read",
            "GET /state/workflows/{id}/progress",
        ),
        tool(
            "batch.cancel",
            "Cancel a running batch: nothing more is scheduled and running operations are stopped.",
            ById,
            cancel,
            "batch",
            "cancel",
            "POST /batch/operations/{id}/cancel",
        ),
        tool(
            "tasks.list",
            "Tasks (operations of every batch), newest first; filter by status or batch (workflow_id).",
            TaskQuery,
            list_tasks,
            "tasks",
            "read",
            "GET /tasks",
        ),
        tool(
            "tasks.get",
            "One task: status, command, output, error and timings.",
            ById,
            get_task,
            "tasks",
            "read",
            "GET /tasks/{id}",
        ),
        tool(
            "checkpoints.list",
            "Checkpoints, newest first.",
            PageQuery,
            list_checkpoints,
            "rollback",
            "read",
            "GET /rollback/checkpoints",
        ),
        tool(
            "checkpoints.create",
            "Create a named checkpoint at the current point of the journal (optionally of one batch).",
            CheckpointRequest,
            create_checkpoint,
            "rollback",
            "create",
            "POST /rollback/checkpoints",
        ),
        tool(
            "rollback.execute",
            "Undo the operations completed after a checkpoint (checkpoint_id), or given operations "
            "and their dependents (operation_ids with workflow_id), dependents first.",
            RollbackRequest,
            rollback,
            "rollback",
            "rollback",
            "POST /rollback/execute",
        ),
        tool(
            "rollback.restore",
            "Reset the recorded state to a checkpoint without running any provider.",
            ById,
            restore,
            "rollback",
            "rollback",
            "POST /rollback/restore/{id}",
        ),
        tool(
            "audit.search",
            "Audit records, newest first; filter by user_id, action, resource, result (a trailing * "
            "matches a prefix) and a from/to time range.",
            AuditLogQuery,
            audit_log,
            "audit",
            "read",
            "GET /audit/logs",
        ),
        tool(
            "statistics.state",
            "Workflow statistics: how many, snapshots, storage used and mean duration.",
            NoArguments,
            statistics,
            "state",
            "read",
            "GET /state/statistics",
        ),
        tool(
            "statistics.rollback",
            "Rollback statistics: checkpoints, rollbacks, success rate and mean duration.",
            NoArguments,
            rollback_statistics,
            "rollback",
            "read",
            "GET /rollback/statistics",
        ),
    ]
