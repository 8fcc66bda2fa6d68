"""Workflows and their tasks for the API: submit, plan, cancel, and read.

:class:`WorkflowService` is built once per app (``orchestrator.keys.WORKFLOWS``).
Commands go to the engine, which owns every running workflow; reads go to the
repository's typed reads and come back as records (:mod:`orchestrator.records`),
which the handlers shape with :mod:`orchestrator.views`. It takes an
:class:`~shared.security.actor.Actor`, never a request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from orchestrator.models import BatchRequest, TaskQuery
from orchestrator.records import DEFAULT_KIND, BatchSummary, Task, Workflow
from orchestrator.repository import Repository
from orchestrator.runtime import WorkflowState
from orchestrator.states import WorkflowStatus
from shared.errors import NotFound
from shared.security.actor import Actor
from shared.store.keyset import Listing

# A listed batch carries its operations only up to this many (a bigger one is paged
# through GET /tasks?workflow_id=…): a page of batches stays small whatever they hold.
LIST_OPERATIONS_MAX = 100
PAGE_OPERATIONS_MAX = 100  # and at most this many over a page (its later batches: counts only)

if TYPE_CHECKING:
    from orchestrator.engine import Engine


class WorkflowService:
    """Submit, plan, cancel and read workflows (batches) and tasks."""

    def __init__(self, engine: Engine, repo: Repository) -> None:
        self.engine = engine
        self.repo = repo

    # -- commands -------------------------------------------------------------------------

    def plan(self, batch: BatchRequest) -> dict[str, Any]:
        """What a batch would do, with no effects (``check_mode``)."""
        return self.engine.plan(batch)

    async def submit(
        self,
        batch: BatchRequest,
        actor: Actor,
        *,
        kind: str = DEFAULT_KIND,
        workflow_id: str | None = None,
        task_id: str | None = None,
    ) -> WorkflowState:
        """Validate, record and start a batch on behalf of ``actor``."""
        return await self.engine.submit(
            batch, kind=kind, workflow_id=workflow_id, task_id=task_id, submitted_by=actor.username
        )

    async def cancel(self, workflow_id: str) -> None:
        await self.engine.cancel(workflow_id)

    # -- reads ------------------------------------------------------------------------------

    async def batch(self, workflow_id: str) -> tuple[Workflow, list[Task]]:
        """A workflow and its tasks in submission order."""
        wf = await self.repo.get_workflow(workflow_id)
        if wf is None:
            raise NotFound(f"no batch with id {workflow_id}")
        return wf, await self.repo.workflow_tasks(wf.id)

    async def batches(
        self, *, status: WorkflowStatus | None, limit: int, offset: int, cursor: str | None, full: bool
    ) -> Listing[BatchSummary]:
        """A page of workflows, newest first, each with its tasks counted by status; with
        ``full``, the operations too of each batch of at most ``LIST_OPERATIONS_MAX``
        operations, up to ``PAGE_OPERATIONS_MAX`` over the page (page through the
        others with ``tasks(workflow_id=…)``)."""
        listing = await self.repo.list_workflows(
            status=status, kind=None, limit=limit, offset=offset, cursor=cursor
        )
        ids = [wf.id for wf in listing.items]
        counts = await self.repo.task_counts_of(ids)
        small: list[str] = []
        listed = 0
        for w in ids if full else []:
            n = sum(counts[w].values())
            if n <= LIST_OPERATIONS_MAX and listed + n <= PAGE_OPERATIONS_MAX:
                small.append(w)
                listed += n
        tasks = await self.repo.tasks_by_workflow(small) if small else {}
        items = [BatchSummary(wf, counts[wf.id], tasks.get(wf.id)) for wf in listing.items]
        return Listing(items, listing.total, listing.next_cursor)

    async def task(self, task_id: str) -> Task:
        task = await self.repo.get_task(task_id)
        if task is None:
            raise NotFound(f"no task with id {task_id}")
        return task

    async def tasks(self, query: TaskQuery) -> Listing[Task]:
        """A page of tasks (newest workflow first, each in submission order); how many match."""
        return await self.repo.list_tasks(query)
