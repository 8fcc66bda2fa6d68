"""Workflows and their tasks for the API: submit, plan, cancel, and read.

:class:`WorkflowService` is built once per app (``orchestrator.keys.WORKFLOWS``).
Commands go to the engine, which owns every running workflow; reads go to the
repository's typed reads and come back as records (:mod:`orchestrator.records`),
which the handlers shape with :mod:`orchestrator.views`. It takes an
:class:`~shared.security.actor.Actor`, never a request.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from orchestrator.models import BatchRequest, TaskQuery
from orchestrator.records import DEFAULT_KIND, BatchSummary, Task, Workflow
from orchestrator.repository import Repository
from orchestrator.runtime import TaskSnapshot, WorkflowState
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


SNAPSHOTS_CHUNK = 2_000  # tasks snapshotted between two turns of the event loop (~2 ms)


@dataclass
class BatchCapture:
    """A workflow and its tasks at one instant, for documents (``orchestrator.views``).

    ``live``: captured from the engine's memory while it runs (shared by the readers of
    the next ``live_document_max_age_s``), else read from the rows. ``documents`` keeps
    what was already encoded from it, by the fields asked for."""

    workflow: Workflow
    tasks: Sequence[Task | TaskSnapshot]
    live: bool = False
    at: float = 0.0  # loop time of the capture
    documents: dict[tuple[str, ...], bytes] = field(default_factory=dict)


class WorkflowService:
    """Submit, plan, cancel and read workflows (batches) and tasks.

    A running workflow is read from the engine's memory (its rows are applied lazily:
    reading them would first apply every pending row of a big batch at once), captured
    at most every ``max_age_s`` and shared by the readers in between; a finished one
    from its rows."""

    def __init__(self, engine: Engine, repo: Repository, *, max_age_s: float = 0.25) -> None:
        self.engine = engine
        self.repo = repo
        self.max_age_s = max_age_s
        self._captures: dict[str, BatchCapture] = {}  # of running workflows only
        self._capturing: dict[str, asyncio.Task[BatchCapture]] = {}

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

    async def capture(self, workflow_id: str) -> BatchCapture:
        """A workflow and its tasks at one instant: from memory while it runs (at most
        ``max_age_s`` old), from its rows once finished; 404 if there is none."""
        state = self.engine.live(workflow_id)
        for wid in [w for w in self._captures if self.engine.live(w) is None]:
            del self._captures[wid]  # finished: its rows are the record now
        if state is None:
            wf, tasks = await self.batch(workflow_id)
            return BatchCapture(wf, tasks)
        loop = asyncio.get_running_loop()
        cached = self._captures.get(workflow_id)
        if cached is not None and loop.time() - cached.at < self.max_age_s:
            return cached
        task = self._capturing.get(workflow_id)
        if task is None:  # else another reader is capturing it: share theirs
            # A task of its own: a reader that goes away does not cancel the others'.
            task = asyncio.create_task(self._capture_live(state))
            self._capturing[workflow_id] = task
            task.add_done_callback(functools.partial(self._captured, workflow_id))
        return await asyncio.shield(task)

    def _captured(self, workflow_id: str, task: asyncio.Task[BatchCapture]) -> None:
        self._capturing.pop(workflow_id, None)
        if not task.cancelled() and task.exception() is None:
            self._captures[workflow_id] = task.result()

    @staticmethod
    async def _capture_live(state: WorkflowState) -> BatchCapture:
        # One synchronous pass reads every task's changing fields (~1 ms for 5,000);
        # building the snapshots from those values may then yield to the event loop.
        at = asyncio.get_running_loop().time()
        moments = state.capture()
        workflow = state.record()
        tasks: list[TaskSnapshot] = []
        for start in range(0, len(moments), SNAPSHOTS_CHUNK):
            if start:
                await asyncio.sleep(0)
            tasks.extend(t.snapshot(m) for t, m in moments[start : start + SNAPSHOTS_CHUNK])
        return BatchCapture(workflow, tasks, live=True, at=at)

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
