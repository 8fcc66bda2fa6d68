"""Rollback: undo completed operations, dependents before their dependencies.

By checkpoint: every operation completed after the checkpoint's journal
position. By operation ids: those operations plus every completed dependent of
theirs. A failed batch with ``rollback_enabled`` rolls its own completed
operations back through :meth:`RollbackService.rollback_workflow`.
An operation being undone is ``RollingBack``, then ``RolledBack``; a failed
undo leaves it ``Failed`` with the reason. Each of those moves, and the
``RollbackStarted``/``RollbackCompleted`` events, go through the engine's
:class:`~orchestrator.transitions.Transitions`.

The engine takes this class as its ``rollbacks`` argument and builds the one
instance; the app reads it from ``engine.rollbacks``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

from orchestrator.events import EventType
from orchestrator.journal import utcnow
from orchestrator.models import OperationSpec, RollbackRequest
from orchestrator.providers import OperationFailed
from orchestrator.repository import Repository
from orchestrator.runtime import TaskState, WorkflowState
from orchestrator.states import TaskStatus
from shared.errors import Conflict, NotFound
from shared.store.writes import Write

if TYPE_CHECKING:
    from orchestrator.engine import Engine

log = logging.getLogger(__name__)


def rollback_order(tasks: list[TaskState]) -> list[TaskState]:
    """Dependents before dependencies: latest completion first.

    A dependent starts only after its dependencies finished, so it completes
    later; reverse completion order is therefore a reverse dependency order.
    Ties (never completed, e.g. a failed operation) go first.
    """
    return sorted(tasks, key=lambda t: -(t.completed_seq if t.completed_seq is not None else 1 << 62))


class RollbackService:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.repo: Repository = engine.repo
        self.transitions = engine.transitions
        self.registry = engine.registry

    # -- automatic -------------------------------------------------------------------

    async def rollback_workflow(
        self, wf: WorkflowState, *, include_failed: list[str] | None = None
    ) -> dict[str, Any]:
        """Roll back a failed batch's completed operations (called by its driver)."""
        include = set(include_failed or [])
        targets = [
            t
            for t in wf.tasks.values()
            if t.status is TaskStatus.COMPLETED or (t.status is TaskStatus.FAILED and t.id in include)
        ]
        result = await self._run(rollback_order(targets), {"workflow_id": wf.id, "automatic": True}, [wf.id])
        return _summary(result)

    # -- by request ---------------------------------------------------------------------

    async def execute(self, req: RollbackRequest) -> dict[str, Any]:
        async with self.engine.admin_lock:  # one rollback or restore at a time
            if req.checkpoint_id is not None:
                cp = await self.repo.checkpoint(req.checkpoint_id)
                if cp is None:
                    raise NotFound(f"no checkpoint with id {req.checkpoint_id}")
                rows = await self.repo.completed_after(int(cp["seq"]))
                scope: dict[str, Any] = {"checkpoint_id": req.checkpoint_id}
                if req.workflow_id is not None:  # only this workflow's operations
                    rows = [r for r in rows if str(r["workflow_id"]) == req.workflow_id]
                    scope["workflow_id"] = req.workflow_id
            else:
                rows = await self._with_dependents(req)
                scope = {"operation_ids": req.operation_ids}
            workflow_ids = sorted({str(r["workflow_id"]) for r in rows})
            running = [w for w in workflow_ids if self.engine.is_running(w)]
            if running:
                raise Conflict(
                    "cannot roll back operations of a running workflow; cancel it first",
                    details={"running_workflows": running},
                )
            specs = await self.repo.operation_specs(workflow_ids)
            tasks = [
                self.engine.task_from_row(
                    r, OperationSpec.model_validate(specs[(str(r["workflow_id"]), r["name"])])
                )
                for r in rows
            ]
            scope["workflow_ids"] = workflow_ids
            return await self._run(rollback_order(tasks), scope, workflow_ids, record_summary=True)

    async def _with_dependents(self, req: RollbackRequest) -> list[dict[str, Any]]:
        ids = list(dict.fromkeys(req.operation_ids or []))
        if req.workflow_id is not None:
            if await self.repo.workflow(req.workflow_id) is None:
                raise NotFound(f"no batch or workflow with id {req.workflow_id}")
            found = await self.repo.tasks_by_names(req.workflow_id, ids)
            key = "name"
        else:
            found = await self.repo.tasks_by_ids(ids)
            key = "id"
        missing = sorted(set(ids) - {str(r[key]) for r in found})
        if missing:
            raise NotFound(
                "unknown operation ids: "
                + ", ".join(missing)
                + ("" if req.workflow_id else " (give task ids, or operation ids with workflow_id)"),
                details={"missing": missing},
            )
        chosen: dict[str, dict[str, Any]] = {}
        for wid in {str(r["workflow_id"]) for r in found}:
            rows = await self.repo.tasks_of(wid)
            by_name = {r["name"]: r for r in rows}
            dependents: dict[str, list[str]] = {r["name"]: [] for r in rows}
            for r in rows:
                for dep in r.get("dependency_names") or []:
                    dependents[dep].append(r["name"])
            stack = [r["name"] for r in found if str(r["workflow_id"]) == wid]
            seen: set[str] = set()
            while stack:
                name = stack.pop()
                if name in seen:
                    continue
                seen.add(name)
                stack.extend(dependents.get(name, []))
            for name in seen:
                row = by_name[name]
                if row["status"] == str(TaskStatus.COMPLETED):
                    chosen[str(row["id"])] = row
        if not chosen:
            raise Conflict(
                "none of these operations is Completed: nothing to roll back", details={"operation_ids": ids}
            )
        return list(chosen.values())

    # -- the work ---------------------------------------------------------------------------

    async def _run(
        self,
        ordered: list[TaskState],
        scope: dict[str, Any],
        workflow_ids: list[str],
        *,
        record_summary: bool = False,
    ) -> dict[str, Any]:
        """Undo ``ordered``, announced by RollbackStarted/RollbackCompleted; with
        ``record_summary`` the workflows' ``rollback`` summary is committed with the
        completion, before it is announced (an automatic rollback's goes with its
        workflow's own transition)."""
        transitions = self.transitions
        rollback_id = str(uuid.uuid4())
        started = time.monotonic()
        started_at = utcnow()
        start_event = {
            "rollback_id": rollback_id,
            "operations": len(ordered),
            "workflow_id": workflow_ids[0] if len(workflow_ids) == 1 else None,
            **scope,
        }
        await transitions.announce(
            [
                Repository.upsert_rollback(
                    rollback_id,
                    {
                        "started_at": started_at,
                        "status": "Running",
                        "operations": len(ordered),
                        **scope,
                        "workflow_ids": workflow_ids,
                    },
                )
            ],
            (EventType.ROLLBACK_STARTED, start_event),
        )
        executed = failed = 0
        failures: list[dict[str, str]] = []
        for t in ordered:
            await transitions.move_task(t, TaskStatus.ROLLING_BACK, {"rollback_id": rollback_id})
            provider = self.registry.get(t.provider)

            ctx = transitions.operation_context(t, t.attempt, t.results)
            try:
                async with asyncio.timeout(t.timeout_s):
                    result = await provider.rollback(ctx)
            except Exception as exc:  # a failed undo never strands the task in RollingBack
                if isinstance(exc, OperationFailed):
                    reason = exc.message
                elif isinstance(exc, TimeoutError):
                    reason = f"timed out after {t.timeout_s:g} s"
                else:
                    log.exception("rollback of an operation crashed", extra={"task_id": t.id})
                    reason = f"internal error: {exc}"
                failed += 1
                failures.append({"operation_id": t.name, "task_id": t.id, "error": reason})
                await transitions.move_task(
                    t,
                    TaskStatus.FAILED,
                    {
                        "error": f"rollback failed: {reason}",
                    },
                )
                continue
            executed += 1
            await transitions.move_task(
                t,
                TaskStatus.ROLLED_BACK,
                {
                    "rollback_output": result.output,
                    "rolled_back_at": utcnow(),
                    "undone_seq": transitions.last_seq + 1,
                },
                extra=result.writes,
            )
        duration = round(time.monotonic() - started, 3)
        result_doc = {
            "rollback_id": rollback_id,
            "success": failed == 0,
            "operations_executed": executed,
            "operations_failed": failed,
            "duration": duration,
        }
        if failures:
            result_doc["failures"] = failures
        summaries: list[Write] = []
        if record_summary:
            summary = _summary(result_doc)
            summaries = [Repository.patch_workflow(w, {"rollback": summary}) for w in workflow_ids]
        await transitions.announce(
            [
                *summaries,
                Repository.upsert_rollback(
                    rollback_id,
                    {
                        "completed_at": utcnow(),
                        "status": "Completed" if failed == 0 else "Failed",
                        **result_doc,
                    },
                ),
            ],
            (
                EventType.ROLLBACK_COMPLETED,
                {**result_doc, "workflow_ids": workflow_ids, "workflow_id": start_event["workflow_id"]},
            ),
        )
        return result_doc


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    return {k: result[k] for k in ("rollback_id", "operations_executed", "operations_failed")}
