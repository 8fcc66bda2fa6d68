"""Workflows and their tasks for the API: submit, plan, cancel, and read.

:class:`WorkflowService` is built once per app (``orchestrator.keys.WORKFLOWS``).
Commands go to the engine, which owns every running workflow; reads go to the
repository's typed reads and come back as records (:mod:`orchestrator.records`),
which the handlers shape with :mod:`orchestrator.views`. It takes an
:class:`~shared.security.actor.Actor`, never a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine, Hashable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from orchestrator.document_repository import DocumentRepository, StoredBatch, pack_products
from orchestrator.events import EventType
from orchestrator.models import BATCH_DOCUMENT_FIELDS, BATCH_SUMMARY_FIELDS, BatchRequest, TaskQuery
from orchestrator.records import DEFAULT_KIND, BatchSummary, Task, Workflow
from orchestrator.repository import Repository
from orchestrator.runtime import Moment, TaskSnapshot, WorkflowState
from orchestrator.states import FINAL_WORKFLOW, WorkflowStatus
from orchestrator.submission import Join
from orchestrator.views import (
    OperationFacts,
    Summary,
    Tally,
    batch_document,
    encode_operation_rows,
    encode_operations,
    operation_entry,
    operation_facts,
    operation_json,
    progress_document,
    summarise,
    summarise_rows,
)
from shared.errors import NotFound
from shared.events.bus import Event
from shared.security.actor import Actor
from shared.store.keyset import Listing

# A listed batch carries its operations only up to this many (a bigger one is paged
# through GET /tasks?workflow_id=…): a page of batches stays small whatever they hold.
# Measured (docs/performance.md, "Reads above the store"): on the row store every 100
# operations listed add ~16-25 ms of CPU to a page of 50 batches whose counts alone cost
# ~40 ms, of which ~0.5 ms above the store; 100 is also one page of the paged task store.
LIST_OPERATIONS_MAX = 100
PAGE_OPERATIONS_MAX = 100  # and at most this many over a page (its later batches: counts only)

if TYPE_CHECKING:
    from orchestrator.engine import Engine

log = logging.getLogger(__name__)

LIVE_CHUNK = 400  # operations encoded between two turns of the event loop (~2 ms)
# A capture reads again only the tasks an event named since the last one, and every task
# at least this often (a change whose event never came: its write failed).
LIVE_FULL_PASS_S = 2.0
# The events that name a task whose moment changed (a transition, a progress report).
_TASK_CHANGES = frozenset({EventType.TASK_STATUS_CHANGED, EventType.OPERATION_PROGRESS})


def _listed(workflows: list[Workflow], size: Callable[[Workflow], int]) -> list[Workflow]:
    """The batches of a page whose operations a full view lists: each of at most
    ``LIST_OPERATIONS_MAX``, newest first while the page's ``PAGE_OPERATIONS_MAX`` allows."""
    chosen, listed = [], 0
    for wf in workflows:
        n = size(wf)
        if n <= LIST_OPERATIONS_MAX and listed + n <= PAGE_OPERATIONS_MAX:
            chosen.append(wf)
            listed += n
    return chosen


class BatchCapture:
    """A workflow and its tasks at one instant, for documents (``orchestrator.views``):
    from task records or snapshots (``tasks``), from task rows as stored (``rows``: a
    finished workflow's, with no record built), or from a running workflow's
    :class:`LiveDocument` (``live``: the moments it captured).

    ``live``: captured from the engine's memory while it runs (shared by the readers of
    the next ``live_document_max_age_s``). ``documents`` keeps what was already encoded
    from it (a document by its fields, the progress), for the readers that share it."""

    def __init__(
        self,
        workflow: Workflow,
        tasks: Sequence[Task | TaskSnapshot] | None = None,
        *,
        rows: Sequence[dict[str, Any]] | None = None,
        stored: StoredBatch | None = None,
        live: tuple[LiveDocument, list[Moment], Summary] | None = None,
        at: float = 0.0,
    ) -> None:
        self.workflow = workflow
        self._tasks = tasks
        self._rows = rows
        self.stored = stored  # read with its pages' fingerprint: its rows decoded on demand
        self._live = live
        self.live = live is not None
        self.at = at  # loop time of the capture
        self.documents: dict[Hashable, bytes] = {}
        self._summary = None if live is None else live[2]

    def _stored_rows(self) -> Sequence[dict[str, Any]] | None:
        if self._rows is None and self.stored is not None:
            self._rows = self.stored.rows()
        return self._rows

    @property
    def tasks(self) -> Sequence[Task | TaskSnapshot]:
        """The tasks as records (rows) or snapshots (a running workflow), built on demand."""
        if self._tasks is None:
            if self._live is not None:
                doc, moments, _ = self._live
                self._tasks = [t.snapshot(m) for t, m in zip(doc.tasks, moments, strict=True)]
            else:
                self._tasks = [Task.from_row(r) for r in self._stored_rows() or ()]
        return self._tasks

    @property
    def summary(self) -> Summary:
        """The operations counted by status, progress and steps (one pass, kept)."""
        if self._summary is None:
            if self._tasks is None and (rows := self._stored_rows()) is not None:
                self._summary = summarise_rows(rows)
            else:
                self._summary = summarise(self.tasks)
        return self._summary

    async def operations(self) -> bytes:
        """The ``operations[]`` entries, encoded and joined (no brackets)."""
        if self._live is not None:
            doc, moments, _ = self._live
            return await doc.operations(moments)
        if self._tasks is None and (rows := self._stored_rows()) is not None:
            return await encode_operation_rows(rows)
        return await encode_operations(self.tasks)


class LiveDocument:
    """A running workflow as its documents last showed it: each task's changing fields
    (its moment) as last captured, the :class:`~orchestrator.views.Tally` of them, and
    each operation's encoded entry with the moment it shows. A capture reads the moments
    of the tasks an event named since the last capture (``dirty``; every task at least
    every ``LIVE_FULL_PASS_S``) in one synchronous pass (one instant: nothing counted
    twice or missing; the engine changes a task in memory before its event goes out, and
    events go out in commit order, so a task shown Running has its dependencies shown
    Completed) and updates the tally for the tasks whose moment changed; a document
    encodes again only the entries whose moment is not the one it shows, so a poll of a
    big running batch costs the pass and the changes since the last one, and joins
    the other entries as they were."""

    def __init__(self, state: WorkflowState) -> None:
        self.state = state
        self.tasks = list(state.tasks.values())
        n = len(self.tasks)
        self.moments: list[Moment | None] = [None] * n  # as last captured
        self.tally = Tally()
        self.entries: list[bytes] = [b""] * n
        self.facts: list[OperationFacts | None] = [None] * n  # what never changes, encoded once
        self.shown: list[Moment | None] = [None] * n  # the moment each entry shows
        self.encoding = asyncio.Lock()  # one document encodes at a time: entries stay whole
        self.index = {t.id: i for i, t in enumerate(self.tasks)}
        self.dirty: set[int] = set()  # positions of the tasks an event named since the last capture
        self.full_at = float("-inf")  # loop time of the last capture that read every task

    def touched(self, task_id: object) -> None:
        """An event named this task: its moment changed (the event's listener)."""
        i = self.index.get(str(task_id))
        if i is not None:
            self.dirty.add(i)

    def follows(self, state: WorkflowState) -> bool:
        """Whether this is still ``state``'s document (the engine did not replace its tasks)."""
        return state is self.state and len(state.tasks) == len(self.tasks)

    def capture(self, now: float | None = None) -> tuple[list[Moment], Summary]:
        """Every task's moment now, and the summary of them (synchronous: one instant).
        A moment equal to the last one captured is kept as that same object, so a
        document finds the entries that still show it by identity. At loop time ``now``,
        only the tasks named by events since the last capture are read, unless the last
        full pass is ``LIVE_FULL_PASS_S`` old; without ``now``, every task."""
        tasks = self.tasks
        dirty, self.dirty = self.dirty, set()
        fresh: list[Moment | None]
        if now is None or now - self.full_at >= LIVE_FULL_PASS_S:
            fresh = [t.moment() for t in tasks]
            last = self.moments
            changed = [i for i, (m, old) in enumerate(zip(fresh, last, strict=True)) if m != old]
            self.full_at = float("-inf") if now is None else now
        else:
            fresh = self.moments.copy()  # the others as last read
            for i in dirty:
                fresh[i] = tasks[i].moment()
            last = self.moments
            changed = sorted(i for i in dirty if fresh[i] != last[i])
        tally = self.tally
        for i in changed:
            old = last[i]
            name = tasks[i].name
            if old is not None:
                tally.count(i, name, old[0], old[1], old[3], old[7], old[8], -1)
            m = last[i] = fresh[i]
            assert m is not None  # read in this pass
            tally.count(i, name, m[0], m[1], m[3], m[7], m[8])
        return list(last), tally.summary()  # type: ignore[arg-type]  # every one captured now

    async def operations(self, moments: list[Moment]) -> bytes:
        """The entries of the operations at ``moments`` (a capture's), joined: those whose
        moment changed since they were encoded are encoded again, a chunk per turn."""
        async with self.encoding:
            shown, entries, facts, tasks = self.shown, self.entries, self.facts, self.tasks
            stale = [i for i, (m, was) in enumerate(zip(moments, shown, strict=True)) if m is not was]
            for start in range(0, len(stale), LIVE_CHUNK):
                if start:
                    await asyncio.sleep(0)
                for i in stale[start : start + LIVE_CHUNK]:
                    m = moments[i]
                    known = facts[i]
                    if known is not None:
                        entries[i] = operation_entry(known, m)
                    elif shown[i] is None:  # first shown: encoded whole (most never change again)
                        entries[i] = operation_json(tasks[i].snapshot(m))
                    else:  # changed: what never changes is kept encoded from now on
                        known = facts[i] = operation_facts(tasks[i].snapshot(m))
                        entries[i] = operation_entry(known, m)
                    shown[i] = m
            return b",".join(entries)


async def _product(
    capture: BatchCapture, key: Hashable, encode: Callable[[BatchCapture], Awaitable[bytes]]
) -> bytes:
    """``encode(capture)``, once per capture and ``key``: its readers share the bytes."""
    body = capture.documents.get(key)
    if body is None:
        body = capture.documents[key] = await encode(capture)
    return body


async def _shared(
    running: dict[str, asyncio.Task[BatchCapture]],
    workflow_id: str,
    start: Callable[[], Coroutine[Any, Any, BatchCapture]],
    hold_s: float = 0.0,
) -> BatchCapture:
    """The capture of ``workflow_id`` under way in ``running`` (or made less than
    ``hold_s`` ago), or a new one: readers at the same time share one. A task of its
    own, so a reader that goes away does not cancel the others'."""
    task = running.get(workflow_id)
    if task is None:
        task = running[workflow_id] = asyncio.create_task(start())

        def drop(finished: asyncio.Task[BatchCapture]) -> None:
            if running.get(workflow_id) is finished:
                del running[workflow_id]

        def done(finished: asyncio.Task[BatchCapture]) -> None:
            if hold_s > 0 and not finished.cancelled() and finished.exception() is None:
                asyncio.get_running_loop().call_later(hold_s, drop, finished)
            else:
                drop(finished)

        task.add_done_callback(done)
    return await asyncio.shield(task)


# What may change workflows it does not name (a restore, a rollback of several): every
# finished workflow's products are dropped.
_CHANGES_ANY = frozenset({EventType.STATE_RESTORED, EventType.ROLLBACK_STARTED, EventType.ROLLBACK_COMPLETED})


class _Build:
    """One encoding of a finished workflow's product in progress; ``spoiled`` once an
    event says the workflow changed meanwhile (its bytes are then answered, not kept)."""

    __slots__ = ("spoiled",)

    def __init__(self, spoiled: bool) -> None:
        self.spoiled = spoiled


@dataclass
class _Products:
    encoded: dict[Hashable, bytes] = field(default_factory=dict)
    expires: float = float("inf")  # wall clock: when retention may prune the workflow
    size: int = 0


class FinishedDocuments:
    """Encoded products (documents, progress) of finished workflows, so that repeated reads
    of one cost a lookup: at most ``max_bytes`` of them, the least recently read dropped
    first. Any event of a workflow drops its products, and one that changes workflows
    it does not name (a restore) drops them all; a product encoded while its workflow
    changed is answered but not kept. A product is kept only until retention may prune
    its workflow (``completed_at`` + ``retention_days``), which announces nothing.

    ``reads``: the reads of finished workflows' rows under way (or just made), shared by
    the readers that come meanwhile; a change of the workflow detaches its read, so a
    reader that comes after the change (a client that just rolled it back) reads again."""

    def __init__(self, max_bytes: int, retention_days: int) -> None:
        self.max_bytes = max_bytes
        self.retention_days = retention_days
        self.size = 0
        self.reads: dict[str, asyncio.Task[BatchCapture]] = {}
        self._products: OrderedDict[str, _Products] = OrderedDict()
        self._builds: dict[str, list[_Build]] = {}

    def get(self, workflow_id: str, key: Hashable) -> bytes | None:
        products = self._products.get(workflow_id)
        if products is None:
            return None
        if time.time() >= products.expires:
            self._drop(workflow_id)
            return None
        body = products.encoded.get(key)
        if body is not None:
            self._products.move_to_end(workflow_id)
        return body

    def begin(self, workflow_id: str, *, spoiled: bool) -> _Build:
        """A product of ``workflow_id`` is being encoded (``spoiled``: already not to keep)."""
        build = _Build(spoiled)
        self._builds.setdefault(workflow_id, []).append(build)
        return build

    def end(self, workflow_id: str, build: _Build) -> None:
        builds = self._builds.get(workflow_id, [])
        if build in builds:
            builds.remove(build)
        if not builds:
            self._builds.pop(workflow_id, None)

    def keep(self, workflow_id: str, build: _Build, wf: Workflow, key: Hashable, body: bytes) -> None:
        """Keep ``body``, unless the workflow changed while it was built or is not final."""
        expires = self._expiry(wf)
        if build.spoiled or wf.status not in FINAL_WORKFLOW or len(body) > self.max_bytes:
            return
        if expires <= time.time():
            return
        products = self._products.setdefault(workflow_id, _Products(expires=expires))
        self._products.move_to_end(workflow_id)
        old = products.encoded.get(key)
        products.encoded[key] = body
        grown = len(body) - (0 if old is None else len(old))
        products.size += grown
        self.size += grown
        while self.size > self.max_bytes:
            self._drop(next(iter(self._products)))

    def _expiry(self, wf: Workflow) -> float:
        if self.retention_days <= 0:
            return float("inf")
        last = wf.completed_at or wf.created_at
        if not isinstance(last, datetime):
            return 0.0  # retention may prune it any time: never kept
        return (last + timedelta(days=self.retention_days)).timestamp()

    def forget(self, workflow_id: str) -> None:
        """The workflow changed: drop its products, spoil its builds, detach its read."""
        self._drop(workflow_id)
        self.reads.pop(workflow_id, None)
        for build in self._builds.get(workflow_id, ()):
            build.spoiled = True

    def clear(self) -> None:
        self._products.clear()
        self.reads.clear()
        self.size = 0
        for builds in self._builds.values():
            for build in builds:
                build.spoiled = True

    def _drop(self, workflow_id: str) -> None:
        products = self._products.pop(workflow_id, None)
        if products is not None:
            self.size -= products.size

    def on_event(self, event: Event) -> None:
        """The bus's listener, called for every event: a few lookups."""
        wid = event.workflow_id
        if wid is not None:
            self.forget(wid)
        named = event.data.get("workflow_ids")
        if isinstance(named, list):
            for w in named:
                self.forget(str(w))
        elif wid is None and event.event_type in _CHANGES_ANY:
            self.clear()


async def _full_document(capture: BatchCapture) -> bytes:
    return await batch_document(capture, BATCH_DOCUMENT_FIELDS)


async def _summary_document(capture: BatchCapture) -> bytes:
    return await batch_document(capture, BATCH_SUMMARY_FIELDS)


# What is built of a workflow when it finishes (the keys its readers ask for, and the
# names they are kept under in the store): the full document, its summary and its
# progress (the summary and progress cost microseconds).
FINISHED_PRODUCTS: tuple[tuple[str, Hashable, Callable[[BatchCapture], Awaitable[bytes]]], ...] = (
    ("summary", ("document", BATCH_SUMMARY_FIELDS), _summary_document),
    ("progress", "progress", progress_document),
    ("document", ("document", BATCH_DOCUMENT_FIELDS), _full_document),
)
# How long the products of a batch that just finished wait for a moment with no task or
# workflow row pending (a read of its rows would apply every pending one at once, in the
# middle of the next batch); a service busy all that time keeps them on the first read.
STORE_WAIT_S = 60.0
STORE_POLL_S = 0.25


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
        self._live: dict[str, LiveDocument] = {}  # of running workflows read since they began
        self._capturing: dict[str, asyncio.Task[BatchCapture]] = {}
        settings = engine.settings
        self.finished = FinishedDocuments(settings.document_cache_bytes, settings.retention_days)
        engine.bus.add_listener(self.finished.on_event)  # first: it drops what an event changed
        engine.bus.add_listener(self._on_event)
        self._finishing: dict[str, asyncio.Task[None]] = {}  # documents being built as they finish
        # Finished big batches' products kept in the store (orchestrator/document_repository.py).
        self.documents = DocumentRepository(repo.store)
        self.store_min_operations = settings.document_store_min_operations
        # By workflow and how they were built ("finished": from memory; "read": from rows).
        self._storing: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._closing = asyncio.Event()

    # -- a workflow that just finished ----------------------------------------------------

    def _on_event(self, event: Event) -> None:
        """When a workflow reaches its final status, its documents are built from the
        engine's memory, which holds exactly what its rows record: the first read of a
        finished batch is then a lookup, not a read of every task row (those rows may
        still be pending, and reading them would apply them all first)."""
        if event.event_type in _TASK_CHANGES:
            doc = self._live.get(event.workflow_id or "")
            if doc is not None:
                doc.touched(event.data.get("task_id"))
            return
        if event.event_type != EventType.BATCH_STATUS_CHANGED or event.workflow_id is None:
            return
        state = self.engine.live(event.workflow_id)
        if state is None or state.status not in FINAL_WORKFLOW:
            return
        # Begun now, before any later event of the workflow can spoil it.
        build = self.finished.begin(state.id, spoiled=self.engine.admin_lock.locked())
        task = asyncio.get_running_loop().create_task(self._keep_finished(state, build))
        self._finishing[state.id] = task

        def done(finished: asyncio.Task[None]) -> None:
            if self._finishing.get(state.id) is finished:
                del self._finishing[state.id]

        task.add_done_callback(done)

    async def _keep_finished(self, state: WorkflowState, build: _Build) -> None:
        wid = state.id
        handed = False
        try:
            doc = self._live.pop(wid, None)
            if doc is None or not doc.follows(state):
                doc = LiveDocument(state)  # never read while it ran: every entry encoded now
            moments, summary = doc.capture()
            capture = BatchCapture(state.record(), live=(doc, moments, summary))
            products: dict[str, bytes] = {}
            for name, key, encode in FINISHED_PRODUCTS:
                if build.spoiled:
                    return
                body = products[name] = await encode(capture)
                self.finished.keep(wid, build, capture.workflow, key, body)
            if self._stores(summary.total) and not build.spoiled:
                # The build stays open (any event of the workflow spoils it) until kept.
                job = self._store_finished(wid, build, capture.workflow, products)
                handed = self._start_storing(wid, "finished", job)
        finally:
            if not handed:
                self.finished.end(wid, build)

    # -- products kept in the store (orchestrator/document_repository.py) ----------------

    def _stores(self, operations: int) -> bool:
        return 0 < self.store_min_operations <= operations and not self._closing.is_set()

    def _start_storing(self, workflow_id: str, how: str, job: Coroutine[Any, Any, None]) -> bool:
        """Run ``job`` (keeping a workflow's products) unless one built the same way runs."""
        key = (workflow_id, how)
        if key in self._storing:
            job.close()
            return False
        task = self._storing[key] = asyncio.get_running_loop().create_task(job)

        def done(finished: asyncio.Task[None]) -> None:
            if self._storing.get(key) is finished:
                del self._storing[key]
            if not finished.cancelled() and finished.exception() is not None:
                log.warning("keeping the documents of %s failed", workflow_id, exc_info=finished.exception())

        task.add_done_callback(done)
        return True

    async def _store_finished(
        self, wid: str, build: _Build, workflow: Workflow, products: dict[str, bytes]
    ) -> None:
        """Keep the products a batch's memory gave as it finished, under the fingerprint of
        its rows: once they are applied (waiting at most ``STORE_WAIT_S``: a read would
        apply every pending row at once), read under the admin lock (no rollback or
        restore meanwhile) and only if no event of the workflow came since it finished
        (its memory then holds exactly what its rows record)."""
        try:
            packed = await asyncio.get_running_loop().run_in_executor(None, pack_products, products)
            if not await self._rows_applied():
                return
            async with self.engine.admin_lock:
                if build.spoiled:
                    return
                stored = await self.documents.read(wid, kept=False)
                if stored is None or build.spoiled or stored.row.get("status") != workflow.status.value:
                    return
                await self.repo.store.write(self.documents.keep(wid, stored.fingerprint, packed))
        finally:
            self.finished.end(wid, build)

    async def _rows_applied(self) -> bool:
        """Whether no task or workflow row is pending (within ``STORE_WAIT_S``), or the
        service is stopping (then the rows are applied before the store closes anyway)."""
        store = self.repo.store
        loop = asyncio.get_running_loop()
        until = loop.time() + STORE_WAIT_S
        while store.pending_tables & {"task_page", "workflow"}:
            if loop.time() >= until:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), STORE_POLL_S)
                return True
        return True

    async def _store_read(self, capture: BatchCapture) -> None:
        """Keep the products of a finished batch read from its rows, under the fingerprint
        of exactly the rows they were built from (a change since makes them stale)."""
        stored = capture.stored
        assert stored is not None
        for _, key, encode in FINISHED_PRODUCTS:
            await _product(capture, key, encode)
        products = {name: capture.documents[key] for name, key, _ in FINISHED_PRODUCTS}
        packed = await asyncio.get_running_loop().run_in_executor(None, pack_products, products)
        await self.repo.store.write(self.documents.keep(capture.workflow.id, stored.fingerprint, packed))

    async def close(self) -> None:
        """Before the engine stops: the products being kept are kept now (a few seconds at
        most), the rest dropped."""
        self._closing.set()
        running = list(self._storing.values())
        if running:
            await asyncio.wait(running, timeout=5.0)
        for task in running:
            task.cancel()

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
        join: Join | None = None,
    ) -> WorkflowState:
        """Validate, record and start a batch on behalf of ``actor`` (``join``: what must be
        recorded in the same commit, such as the request's audit record)."""
        return await self.engine.submit(
            batch,
            kind=kind,
            workflow_id=workflow_id,
            task_id=task_id,
            submitted_by=actor.username,
            join=join,
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

    async def encoded(
        self, workflow_id: str, key: Hashable, encode: Callable[[BatchCapture], Awaitable[bytes]]
    ) -> bytes:
        """A product of the workflow's capture, encoded by ``encode`` (a document, its
        progress; ``key`` names it): shared by the readers of one capture while the
        workflow runs; once it has finished, kept (:class:`FinishedDocuments`) until an
        event of the workflow says it changed, so repeated reads cost a lookup."""
        if self.engine.live(workflow_id) is not None:
            return await _product(await self.capture(workflow_id), key, encode)
        body = self.finished.get(workflow_id, key)
        if body is not None:
            return body
        finishing = self._finishing.get(workflow_id)
        if finishing is not None:  # just finished: its documents are being built from memory
            await asyncio.wait({finishing})
            body = self.finished.get(workflow_id, key)
            if body is not None:
                return body
        # Not kept if begun while a rollback or restore holds the admin lock: a rollback
        # records its summary on the workflow after its last event.
        build = self.finished.begin(workflow_id, spoiled=self.engine.admin_lock.locked())
        try:
            capture = await self.capture(workflow_id)
            body = await _product(capture, key, encode)
            if not capture.live:
                self.finished.keep(workflow_id, build, capture.workflow, key, body)
                stored = capture.stored
                big = self._stores(capture.workflow.operation_count or 0)
                if stored is not None and stored.kept is None and big:
                    self._start_storing(workflow_id, "read", self._store_read(capture))
        finally:
            self.finished.end(workflow_id, build)
        return body

    async def capture(self, workflow_id: str) -> BatchCapture:
        """A workflow and its tasks at one instant: from memory while it runs (at most
        ``max_age_s`` old), from its rows once finished (readers at the same time share
        one read, unless the workflow changed since it began); 404 if there is none."""
        state = self.engine.live(workflow_id)
        for wid in [w for w in self._captures if self.engine.live(w) is None]:
            del self._captures[wid]  # finished: its rows are the record now
        for wid in [w for w in self._live if self.engine.live(w) is None]:
            del self._live[wid]
        if state is None:
            if self.engine.admin_lock.locked():
                # A rollback may still record its summary, with no event: share nothing.
                return await self._read(workflow_id)
            # Kept max_age_s too, so a document, its summary and progress asked one after
            # the other read the rows once (an event of the workflow drops it at once).
            read = functools.partial(self._read, workflow_id)
            return await _shared(self.finished.reads, workflow_id, read, self.max_age_s)
        cached = self._captures.get(workflow_id)
        if cached is not None and asyncio.get_running_loop().time() - cached.at < self.max_age_s:
            return cached
        capture = await _shared(self._capturing, workflow_id, lambda: self._capture_live(workflow_id, state))
        self._captures[workflow_id] = capture
        return capture

    async def _read(self, workflow_id: str) -> BatchCapture:
        """A finished workflow from its rows, with the products kept in the store for
        exactly these rows (then no row is decoded unless another product is asked)."""
        stored = await self.documents.read(workflow_id)
        if stored is None:
            raise NotFound(f"no batch with id {workflow_id}")
        capture = BatchCapture(Workflow.from_row(stored.row), stored=stored)
        for name, key, _ in FINISHED_PRODUCTS:
            if stored.kept is not None and name in stored.kept:
                capture.documents[key] = stored.kept[name]
        return capture

    async def _capture_live(self, workflow_id: str, state: WorkflowState) -> BatchCapture:
        # One synchronous pass reads every task's changing fields (~1 ms for 5,000) and
        # counts those that changed since the last capture; a document encodes them later.
        at = asyncio.get_running_loop().time()
        doc = self._live.get(workflow_id)
        if doc is None or not doc.follows(state):
            doc = self._live[workflow_id] = LiveDocument(state)
        moments, summary = doc.capture(at)
        return BatchCapture(state.record(), live=(doc, moments, summary), at=at)

    async def batches(
        self, *, status: WorkflowStatus | None, limit: int, offset: int, cursor: str | None, full: bool
    ) -> Listing[BatchSummary]:
        """A page of workflows, newest first, each with its tasks counted by status; with
        ``full``, the operations too of each batch of at most ``LIST_OPERATIONS_MAX``
        operations, up to ``PAGE_OPERATIONS_MAX`` over the page (page through the
        others with ``tasks(workflow_id=…)``)."""
        listing = await self.repo.batch_page(status=status, limit=limit, offset=offset, cursor=cursor)
        # The batches listed are chosen by their counts; read with the counts (one round
        # trip) are those chosen by their operations, the same while no row was pruned.
        guess = _listed(listing.items, lambda wf: wf.operation_count or 0) if full else []
        counts, tasks = await self.repo.batch_counts(listing.items, guess)
        if (
            full
            and (chosen := _listed(listing.items, lambda wf: sum(counts.get(wf.id, {}).values()))) != guess
        ):
            tasks = await self.repo.listed_tasks(chosen, counts)
        items = [BatchSummary(wf, counts.get(wf.id, {}), tasks.get(wf.id)) for wf in listing.items]
        return Listing(items, listing.total, listing.next_cursor)

    async def task(self, task_id: str) -> Task:
        task = await self.repo.get_task(task_id)
        if task is None:
            raise NotFound(f"no task with id {task_id}")
        return task

    async def tasks(self, query: TaskQuery) -> Listing[Task]:
        """A page of tasks (newest workflow first, each in submission order); how many match."""
        return await self.repo.list_tasks(query)
