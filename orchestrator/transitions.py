"""The transition protocol: the one way a task or workflow changes status.

Persist, then announce. Every change of status in the orchestrator (scheduling,
retries, skips and cancels, resume after a crash, rollback, restore) goes
through :class:`Transitions`, in five steps:

1. **check** the move against the transition table of :mod:`orchestrator.states`
   (:func:`task_change`, :func:`workflow_change`; a restore, which resets
   recorded state rather than moving along the table, is checked by
   :func:`restore_change`);
2. **build** the journal entry and the patch of the entity's row
   (:class:`~orchestrator.journal.Journal` numbers it);
3. **queue** one store write holding the journal entry, the row's patch as a lazy
   change, the webhook outbox rows of the change's event, and whatever must be
   atomic with it (a snapshot, another event's outbox rows);
4. **commit**: wait until that write is durable;
5. **publish**: mirror the change in memory (the task's or workflow's state, the
   live status counts, the task metrics), then announce its event on the bus.

So nothing is announced before it is durable, and memory never claims a status
the record will not hold. :meth:`Transitions.queue` is the one variant: it
mirrors at once (the scheduler starts the provider while ``Running`` commits)
and announces once durable; writes commit in queue order, so the outcome that
follows can never land before it.

Events that are not transitions (progress, checkpoints, rollback runs, a
submission) use :meth:`Transitions.announce`: the same commit-then-publish, with
no table to check. Catch-up after a crash (:func:`orchestrator.journal.catch_up`)
is not a transition either: it re-applies entries recorded and announced before.

Used by :mod:`orchestrator.engine`, :mod:`orchestrator.rollback` and
:mod:`orchestrator.checkpoints`; imports none of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
from collections import Counter
from collections.abc import Callable, Generator, Sequence
from typing import Any

from orchestrator.events import EventType
from orchestrator.journal import Change, Journal, OutboxHook
from orchestrator.providers.base import OperationContext
from orchestrator.repository import Repository
from orchestrator.runtime import TaskState, WorkflowState
from orchestrator.states import (
    FINAL_TASK,
    TaskStatus,
    WorkflowStatus,
    check_restore,
    check_task_transition,
    check_workflow_transition,
)
from shared.events.bus import EventBus
from shared.metrics import TASK_DURATION, TASKS_TOTAL
from shared.store.store import Store
from shared.store.writes import Write

# An event to announce with a commit: (event_type, data).
Announcement = tuple[str, dict[str, Any]]
# The status counts of a workflow this process is driving, by workflow id (None if not).
LiveCounts = Callable[[str], "Counter[str] | None"]

# Patch fields that a task's status event carries.
_TASK_EVENT_FIELDS = ("error", "attempt", "progress")
# A status as the plain string its records and events hold, and back (a StrEnum's
# ``str()`` and constructor are Python calls: this is the hot path of every operation).
_VALUE: dict[TaskStatus | WorkflowStatus, str] = {s: s.value for s in (*TaskStatus, *WorkflowStatus)}
_TASK_STATUS = {s.value: s for s in TaskStatus}
_WORKFLOW_STATUS = {s.value: s for s in WorkflowStatus}
# What a patch may set on a task's in-memory state (a patch of its row also carries
# fields memory does not keep, such as ``output``'s record-only neighbours).
_TASK_FIELDS = frozenset(f.name for f in dataclasses.fields(TaskState)) - {"status"}
_COMPLETED = TaskStatus.COMPLETED
_RUNNING = TaskStatus.RUNNING.value
_WORKFLOW_EVENT_FIELDS = ("error", "rollback")
# What a workflow's patch sets on its in-memory state too: its finished document is
# built from memory (orchestrator/workflows.py), as its row records it.
_WORKFLOW_FIELDS = ("completed_at", "error")


@functools.cache
def _tasks_total(status: str) -> Any:
    """The ``orchestrator_tasks_total`` child of a status (looked up once, not per task)."""
    return TASKS_TOTAL.labels(status.lower())


def _not_live(workflow_id: str) -> Counter[str] | None:
    return None


# -- building changes (step 1 and the event of step 2) ----------------------------------


def task_change(
    t: TaskState, to: TaskStatus, patch: dict[str, Any] | None = None, *, note: str | None = None
) -> Change:
    """The change that moves task ``t`` to ``to``; raises
    :class:`~orchestrator.states.IllegalTransition` if the table does not allow it."""
    check_task_transition(t.status, to)
    patch = dict(patch) if patch else {}
    data = t.event_data()
    for key in _TASK_EVENT_FIELDS:
        if key in patch:
            data[key] = patch[key]
    if to is TaskStatus.COMPLETED:
        data["output"] = patch.get("output")
    return Change(
        "task",
        t.id,
        t.workflow_id,
        t.name,
        _VALUE[t.status],
        _VALUE[to],
        patch,
        EventType.TASK_STATUS_CHANGED,
        data,
        note,
        subject=t,
        page=t.page,
    )


def workflow_change(wf: WorkflowState, to: WorkflowStatus, patch: dict[str, Any] | None = None) -> Change:
    """The change that moves workflow ``wf`` to ``to``; raises
    :class:`~orchestrator.states.IllegalTransition` if the table does not allow it."""
    check_workflow_transition(wf.status, to)
    patch = dict(patch or {})
    data: dict[str, Any] = {"batch_id": wf.id, "name": wf.name, "kind": wf.kind}
    data.update({k: v for k, v in patch.items() if k in _WORKFLOW_EVENT_FIELDS})
    return Change(
        entity="workflow",
        id=wf.id,
        workflow_id=wf.id,
        name=wf.name,
        from_status=str(wf.status),
        to_status=str(to),
        patch=patch,
        event_type=EventType.BATCH_STATUS_CHANGED,
        event_data=data,
        subject=wf,
    )


def restore_change(
    entity: str,
    entity_id: str,
    workflow_id: str,
    name: str,
    from_status: str,
    to_status: str,
    *,
    checkpoint_id: str,
    patch: dict[str, Any] | None = None,
    page: str | None = None,
) -> Change:
    """The change that resets a recorded task or workflow (``entity``) to the status
    it had at a checkpoint; raises :class:`~orchestrator.states.IllegalTransition`
    unless that status is final (see :func:`~orchestrator.states.check_restore`)."""
    status: type[TaskStatus] | type[WorkflowStatus] = TaskStatus if entity == "task" else WorkflowStatus
    check_restore(status(from_status), status(to_status))
    is_task = entity == "task"
    return Change(
        entity=entity,
        id=entity_id,
        workflow_id=workflow_id,
        name=name,
        from_status=from_status,
        to_status=to_status,
        patch={"restored_from": checkpoint_id, **(patch or {})},
        event_type=EventType.TASK_STATUS_CHANGED if is_task else EventType.BATCH_STATUS_CHANGED,
        event_data={"task_id": entity_id} if is_task else {"batch_id": entity_id},
        note=f"restored from checkpoint {checkpoint_id}",
        page=page,
    )


# -- committing and publishing (steps 2 to 5) ----------------------------------------------


class Landing:
    """What the store's writer tells once queued writes land (``Store.notify``): awaited,
    it returns once they are durable or raises their error.

    One per commit, and cheaper than a future the writer resolves: nothing is scheduled
    when nobody waits (a queued ``Running``), and a waiter's future is made only when
    it awaits before the writes land. ``then`` is called with the outcome as it lands."""

    __slots__ = ("_waiter", "error", "landed", "then")

    def __init__(self, then: Callable[[BaseException | None], None] | None = None) -> None:
        self.landed = False
        self.error: BaseException | None = None
        self.then = then
        self._waiter: asyncio.Future[None] | None = None

    def __call__(self, error: BaseException | None) -> None:
        self.landed, self.error = True, error
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)  # wakes the waiter later: ``then`` runs first
        if self.then is not None:
            self.then(error)

    def __await__(self) -> Generator[Any, None, None]:
        if not self.landed:
            # A new future each wait: a cancelled wait leaves the next one waiting still.
            self._waiter = asyncio.get_running_loop().create_future()
            yield from self._waiter
        if self.error is not None:
            raise self.error


class Transitions:
    """Commits changes of status durably, then mirrors and announces them.

    ``outbox`` turns an event into the webhook delivery rows committed with it.
    ``live_counts`` gives the status counts of a workflow this process drives, so
    that they follow its tasks' transitions."""

    def __init__(
        self,
        store: Store,
        bus: EventBus,
        outbox: OutboxHook | None = None,
        *,
        live_counts: LiveCounts = _not_live,
    ) -> None:
        self.store = store
        self.bus = bus
        self.outbox = outbox
        self.journal = Journal(store)
        self.live_counts = live_counts

    async def load(self) -> None:
        """Continue the journal's numbering after its last persisted entry."""
        await self.journal.load()

    @property
    def last_seq(self) -> int:
        """The journal position of the latest change built (committed or in flight)."""
        return self.journal.last_seq

    # -- the protocol -----------------------------------------------------------------

    async def commit(
        self,
        changes: Sequence[Change],
        *,
        extra: Sequence[Write] = (),
        announce: Sequence[Announcement] = (),
    ) -> None:
        """Persist ``changes``, ``extra`` writes and the outbox rows of ``announce`` in
        one atomic write; once it is durable, mirror the changes in memory and publish
        their events, then ``announce``'s.

        If the caller is cancelled while the write is in flight (a batch cancel), the
        write still lands: it is mirrored and announced before the cancellation goes
        on, so memory never disagrees with the record (and a Completed operation is
        not then recorded Cancelled)."""
        writes: list[Write] = []
        for change in changes:
            writes.extend(self._writes(change))
        writes.extend(extra)
        for event_type, data in announce:
            writes.extend(self._outbox(event_type, data))
        # The writer tells ``landing`` (no future of the store's own to shield: a cancel
        # of this caller cancels only its wait, never the write).
        landing = Landing()
        self.store.notify(landing, *writes)
        try:
            await landing
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await landing
            if landing.landed and landing.error is None:
                self._landed(changes, announce)
            raise
        self._landed(changes, announce)

    def queue(self, change: Change) -> Landing:
        """Queue a change, mirror it in memory now, and announce it once it is durable.

        Await the returned :class:`Landing` to surface a failed write (it is done once the
        write is durable). Later writes commit after it, so a change queued behind this
        one never lands before it."""
        landing = Landing(functools.partial(self._announce_if_landed, change))
        self.store.notify(landing, *self._writes(change))
        self._mirror(change)
        return landing

    async def move_task(
        self,
        t: TaskState,
        to: TaskStatus,
        patch: dict[str, Any] | None = None,
        *,
        extra: Sequence[Write] = (),
    ) -> None:
        """Check, commit, mirror and announce one task's move to ``to``."""
        await self.commit([task_change(t, to, patch)], extra=extra)

    async def move_workflow(
        self,
        wf: WorkflowState,
        to: WorkflowStatus,
        patch: dict[str, Any] | None = None,
        *,
        extra: Sequence[Write] = (),
    ) -> None:
        """Check, commit, mirror and announce one workflow's move to ``to``."""
        await self.commit([workflow_change(wf, to, patch)], extra=extra)

    async def announce(self, writes: Sequence[Write], *events: Announcement) -> None:
        """For what is not a transition (progress, checkpoints, rollback runs, a
        submission): commit ``writes`` with the events' outbox rows, then publish them."""
        await self.commit((), extra=writes, announce=events)

    def operation_context(
        self, t: TaskState, attempt: int, previous_results: dict[str, Any] | None = None
    ) -> OperationContext:
        """What a provider gets for one attempt (apply or rollback) of ``t``; its progress
        reports go through :meth:`report_progress`."""

        async def report(percent: float, message: str) -> None:
            await self.report_progress(t, percent, message)

        return OperationContext(
            task_id=t.id,
            workflow_id=t.workflow_id,
            name=t.name,
            spec=t.spec,
            provider=t.provider,
            attempt=attempt,
            timeout_s=t.timeout_s,
            report=report,
            previous_results=previous_results or {},
        )

    async def report_progress(self, t: TaskState, percent: float, message: str) -> None:
        """Persist then announce an operation's progress."""
        t.progress = round(percent, 2)
        t.message = message
        await self.announce(
            [Repository.patch_task(str(t.page), t.id, {"progress": t.progress, "message": message})],
            (
                EventType.OPERATION_PROGRESS,
                {
                    "workflow_id": t.workflow_id,
                    "task_id": t.id,
                    "operation_id": t.name,
                    "progress": t.progress,
                    "message": message,
                },
            ),
        )

    # -- the steps ------------------------------------------------------------------------

    def _outbox(self, event_type: str, data: dict[str, Any]) -> list[Write]:
        return self.outbox(event_type, data) if self.outbox is not None else []

    def _writes(self, change: Change) -> list[Write]:
        writes = self.journal.writes_for(change)
        if self.outbox is not None and change.event_type:
            writes.extend(self.outbox(change.event_type, change.announcement()))
        return writes

    def _landed(self, changes: Sequence[Change], announce: Sequence[Announcement]) -> None:
        for change in changes:
            self._mirror(change)
            if change.event_type:
                self.bus.publish(change.event_type, change.announcement())
        for event_type, data in announce:
            self.bus.publish(event_type, data)

    def _announce_if_landed(self, change: Change, error: BaseException | None) -> None:
        if error is None:
            self.bus.publish(change.event_type, change.announcement())

    def _mirror(self, change: Change) -> None:
        """Apply a change to its in-memory subject (and its workflow's status counts)."""
        subject = change.subject
        if type(subject) is TaskState:
            to = _TASK_STATUS[change.to_status]
            counts = self.live_counts(subject.workflow_id)
            if counts is not None:  # keyed by plain strings, as documents read them
                counts[_VALUE[subject.status]] -= 1
                counts[change.to_status] += 1
            subject.status = to
            for key, value in change.patch.items():
                if key in _TASK_FIELDS:
                    setattr(subject, key, value)
            if to is _COMPLETED:
                subject.completed_seq = change.seq
            if change.from_status == _RUNNING and to in FINAL_TASK:
                _tasks_total(change.to_status).inc()
                if subject.started_at is not None and subject.completed_at is not None:
                    TASK_DURATION.observe((subject.completed_at - subject.started_at).total_seconds())
        elif isinstance(subject, WorkflowState):
            subject.status = _WORKFLOW_STATUS[change.to_status]
            for key in _WORKFLOW_FIELDS:
                if key in change.patch:
                    setattr(subject, key, change.patch[key])
