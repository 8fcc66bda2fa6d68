"""The engine: validates, records and runs batches on a ready set.

An operation starts as soon as its hard dependencies are ``Completed`` (soft
ones only need to have finished) and a slot under ``parallel_limit`` is free.
Every change of status goes through :class:`~orchestrator.transitions.Transitions`,
which persists before it announces; after a crash :meth:`Engine.start` resumes what
was running: completed operations never run again, interrupted ones retry under
their policy, pending ones proceed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from orchestrator.dag import build_graph, generations, validate
from orchestrator.journal import Change, OutboxHook, catch_up, utcnow
from orchestrator.memory import trim_heap, tune_gc
from orchestrator.models import BatchRequest, OperationSpec
from orchestrator.providers import (
    OperationFailed,
    ProviderEnv,
    ProviderRegistry,
)
from orchestrator.providers.base import ValidatesOperations
from orchestrator.repository import Repository
from orchestrator.runtime import TaskState, WorkflowState
from orchestrator.snapshots import Snapshots
from orchestrator.states import FINAL_WORKFLOW, TaskStatus, WorkflowStatus
from orchestrator.submission import Join, Recorder
from orchestrator.task_repository import page_of_key
from orchestrator.tasks import TaskFactory
from orchestrator.transitions import Transitions, task_change
from shared import collector
from shared.errors import Conflict, NotFound
from shared.events.bus import EventBus
from shared.metrics import WORKFLOWS_ACTIVE
from shared.settings import Settings
from shared.store.store import Store
from shared.store.writes import Write

if TYPE_CHECKING:
    from orchestrator.rollback import RollbackService

log = logging.getLogger(__name__)

INTERRUPTED = "interrupted: the orchestrator stopped while this attempt ran"


@dataclass
class _Run:
    """A running workflow: its state, scheduler bookkeeping and asyncio tasks."""

    wf: WorkflowState
    driver: asyncio.Task[None] | None = None
    running: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    # Of ``running``, the operations whose provider is at work (each holds a slot of
    # ``parallel_limit``); the others are recording their outcome.
    executing: set[str] = field(default_factory=set)
    # An operation's name once it is settled; None when it only gave its slot back.
    done: asyncio.Queue[str | None] = field(default_factory=asyncio.Queue)
    stopping: bool = False
    cancel_requested: bool = False
    finishing: bool = False  # past scheduling: rolling back and recording the outcome
    stop_reason: str | None = None


class Engine:
    """Owns every running workflow of this process.

    ``rollbacks`` builds the rollback service from the engine (the app passes
    :class:`~orchestrator.rollback.RollbackService`): a failed batch with
    ``rollback_enabled`` is rolled back through it, and as the argument is
    required, no engine exists that would skip that. It is injected, not
    imported: rollback drives operations through this engine's providers and
    transitions, so it depends on the engine, never the other way round."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        bus: EventBus,
        *,
        rollbacks: Callable[[Engine], RollbackService],
        outbox: OutboxHook | None = None,
        registry: ProviderRegistry | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.bus = bus
        self.repo = Repository(store)
        self.runs: dict[str, _Run] = {}
        self.transitions = Transitions(store, bus, outbox, live_counts=self._live_counts)
        self.snapshots = Snapshots()
        self.registry = registry or ProviderRegistry(ProviderEnv(settings, store), settings.provider_map)
        self.tasks = TaskFactory(settings, self.registry)
        self.recorder = Recorder(self.tasks, self.snapshots)
        # Rollbacks by request and restores rewrite recorded state: one at a time.
        self.admin_lock = asyncio.Lock()
        self.submitting = 0  # submissions between validation and launch
        # Each provider's submission check (or None), by batch provider name.
        self._checks: dict[str, Callable[[OperationSpec], list[tuple[str, str]]] | None] = {}
        self._shutting_down = False
        self.healthy = True
        self.started_at = time.time()
        self.rollbacks = rollbacks(self)  # last: it reads the engine's collaborators

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Load the journal position and resume every workflow that was running."""
        self._shutting_down = False
        tune_gc(self.settings.gc_gen0_threshold)
        s = self.settings
        collector.configure(enabled=s.gc_burst_freeze, idle_s=s.gc_idle_collect_s, max_bursts=s.gc_max_bursts)
        await self.transitions.load()
        await catch_up(self.store, self.repo, self.task_rows_of)
        if moved := await self.repo.convert_legacy_tasks():
            log.info("moved task rows into pages", extra={"tasks": moved})
        await self._sweep_interrupted_rollbacks()
        for row in await self.repo.with_specs(await self.repo.active_workflows()):
            try:
                await self._resume(row)
            except Exception:
                log.exception("could not resume workflow", extra={"workflow_id": row["id"]})

    async def _sweep_interrupted_rollbacks(self) -> None:
        """Undo attempts cut off by a stop (of finished workflows: running ones are handled
        on resume) end Failed, so the operations can be rolled back again."""
        rows = await self.repo.tasks_rolling_back() if await self.repo.any_rolling_back() else []
        changes = []
        for row in rows:
            if row.get("workflow_status") in ("Pending", "Running"):
                continue
            t = TaskState(
                id=str(row["id"]),
                workflow_id=str(row["workflow_id"]),
                name=row["name"],
                index=int(row["index"]),
                spec=OperationSpec(id=row["name"], type=row["type"]),
                provider=row["provider"],
                status=TaskStatus.ROLLING_BACK,
                page=page_of_key(str(row["lk"])),
            )
            changes.append(
                task_change(
                    t,
                    TaskStatus.FAILED,
                    {"error": "rollback interrupted by a restart; roll it back again"},
                    note="resumed",
                )
            )
        if changes:
            await self.transitions.commit(changes)
        await self.repo.close_interrupted_rollbacks()

    async def stop(self) -> None:
        """Stop driving workflows without marking them: a restart resumes them."""
        self._shutting_down = True
        tasks: list[asyncio.Task[None]] = []
        for run in self.runs.values():
            tasks.extend(run.running.values())
            if run.driver is not None:
                tasks.append(run.driver)
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self.runs.clear()
        WORKFLOWS_ACTIVE.set(0)

    # -- submission -------------------------------------------------------------------

    def validate(self, batch: BatchRequest, *, providers_check: bool = True) -> None:
        """Raise 422 naming every problem of the batch. ``providers_check``: also ask each provider about its
        operations (at submission; a resumed batch meets those checks when it runs)."""
        validate(
            batch,
            lambda name: self.registry.resolve_name(name) is not None,
            self._operation_problems if providers_check else None,
        )

    def _operation_problems(self, op: OperationSpec) -> list[tuple[str, str]]:
        name = op.provider_name  # known: checked just before
        try:
            check = self._checks[name]
        except KeyError:
            # A runtime Protocol check costs ~30 µs: once per provider, not per operation.
            provider = self.registry.get(name)
            check = self._checks[name] = (
                provider.problems if isinstance(provider, ValidatesOperations) else None
            )
        return check(op) if check is not None else []

    def plan(self, batch: BatchRequest) -> dict[str, Any]:
        """What a batch would do, with no effects and nothing recorded (``check_mode``)."""
        self.validate(batch)
        graph = build_graph(batch)
        order = [op.id for op in batch.operations]
        ops = []
        for op in batch.operations:
            provider = self.registry.get(op.provider_name)
            command, args = provider.describe(op, op.provider_name)
            ops.append(
                {
                    "id": op.id,
                    "type": str(op.type),
                    "provider": op.provider_name,
                    "implementation": self.registry.resolve_name(op.provider_name),
                    "dependencies": [d._asdict() for d in op.dependency_refs],
                    "command": command,
                    "args": args,
                    "would": provider.check(op, op.provider_name),
                }
            )
        return {
            "name": batch.name,
            "parallel_limit": batch.parallel_limit,
            "rollback_enabled": batch.rollback_enabled,
            "generations": generations(graph, order),
            "operations": ops,
        }

    async def submit(
        self,
        batch: BatchRequest,
        *,
        kind: str = "batch",
        workflow_id: str | None = None,
        task_id: str | None = None,
        submitted_by: str | None = None,
        join: Join | None = None,
    ) -> WorkflowState:
        """Validate, record (workflow, tasks, checkpoint, first snapshot) and start a batch.
        ``join``: what must be recorded in the same commit (orchestrator/submission.py)."""
        self.submitting += 1
        try:
            self.validate(batch)
            wid = workflow_id or str(uuid.uuid4())

            async def commit(extra: Sequence[Write]) -> WorkflowState:
                # No await before the write is queued: positions are taken in commit order.
                sub = self.recorder.build(
                    batch,
                    seq=self.transitions.journal.next_seq(),
                    now=utcnow(),
                    kind=kind,
                    wid=wid,
                    task_id=task_id,
                    submitted_by=submitted_by,
                )
                self._link(sub.wf)
                await self.transitions.announce([*sub.writes, *extra], *sub.events)
                self._launch(sub.wf)
                return sub.wf

            return await (commit(()) if join is None else join(commit))
        finally:
            self.submitting -= 1

    def task_rows_of(self, workflow_row: dict[str, Any]) -> list[dict[str, Any]]:
        """A recorded workflow's task rows as first submitted (for catch-up)."""
        return self.tasks.rows_of(workflow_row)

    def task_from_row(self, row: dict[str, Any], spec: OperationSpec) -> TaskState:
        """A task as recorded in the store, ready to schedule or roll back."""
        return self.tasks.from_row(row, spec)

    @staticmethod
    def _link(wf: WorkflowState) -> None:
        """Wire dependencies both ways (the batch is validated: every reference exists)."""
        tasks = wf.tasks
        for t in tasks.values():
            refs = t.spec.dependency_refs
            if not refs:
                continue
            t.deps.extend(refs)  # (id, kind) tuples already
            hard, soft = (t.name, "hard"), (t.name, "soft")  # shared: fewer objects to collect
            for ref_id, kind in refs:
                tasks[ref_id].dependents.append(hard if kind == "hard" else soft)

    def _launch(self, wf: WorkflowState) -> None:
        run = _Run(wf=wf)
        wf.recount()
        self.runs[wf.id] = run
        WORKFLOWS_ACTIVE.set(len(self.runs))
        run.driver = asyncio.create_task(self._drive(run), name=f"workflow-{wf.id}")

    # -- resume -------------------------------------------------------------------------

    async def _resume(self, row: dict[str, Any]) -> None:
        wid = str(row["id"])
        rows = await self.repo.tasks_of(wid)
        specs = {spec["id"]: spec for spec in json.loads(row["operations_json"])}
        batch_ops = [OperationSpec.model_validate(specs[r["name"]]) for r in rows]
        batch = BatchRequest(
            name=row["name"],
            parallel_limit=row["parallel_limit"],
            rollback_enabled=row["rollback_enabled"],
            operations=batch_ops,
        )
        self.validate(batch, providers_check=False)
        wf = WorkflowState(
            id=wid,
            name=row["name"],
            kind=row.get("kind", "batch"),
            status=WorkflowStatus(row["status"]),
            parallel_limit=row["parallel_limit"],
            rollback_enabled=row["rollback_enabled"],
            created_at=row.get("created_at"),
            started_at=row.get("started_at"),
            checkpoint_id=row.get("checkpoint_id"),
            version=row.get("version"),
        )
        changes: list[Change] = []
        for r, op in zip(rows, batch_ops, strict=True):
            t = self.task_from_row(r, op)
            wf.tasks[op.id] = t
            if t.status is TaskStatus.RUNNING:
                # The attempt that was running counts; retry it if the policy allows.
                to = TaskStatus.PENDING if t.attempt < t.retry.max_attempts else TaskStatus.FAILED
                changes.append(task_change(t, to, {"error": INTERRUPTED}, note="resumed"))
            elif t.status is TaskStatus.ROLLING_BACK:
                changes.append(
                    task_change(
                        t,
                        TaskStatus.FAILED,
                        {"error": "rollback interrupted by a restart"},
                        note="resumed",
                    )
                )
        self._link(wf)
        if changes:
            await self.transitions.commit(changes)
        if wf.status is WorkflowStatus.PENDING:
            await self.transitions.move_workflow(wf, WorkflowStatus.RUNNING, {"started_at": utcnow()})
        log.info("resuming workflow", extra={"workflow_id": wid, "operations": len(rows)})
        self._launch(wf)

    def _live_counts(self, workflow_id: str) -> Counter[str] | None:
        """The status counts of a workflow this engine drives (kept by its transitions)."""
        run = self.runs.get(workflow_id)
        return run.wf.counts if run is not None else None

    # -- scheduling -------------------------------------------------------------------------

    async def _drive(self, run: _Run) -> None:
        wf = run.wf
        tasks = wf.tasks
        # Recompute readiness from what is recorded (fresh or resumed alike).
        skips: list[TaskState] = []
        for t in tasks.values():
            t.waiting = 0
            for dep, kind in t.deps:
                d = tasks[dep]
                if kind == "soft":
                    t.waiting += 0 if d.final else 1
                elif d.status is not TaskStatus.COMPLETED:
                    t.waiting += 1
                    if d.final and t.status is TaskStatus.PENDING:
                        skips.append(t)
        if skips:
            await self._skip_cascade(run, skips)
        if any(t.status is TaskStatus.FAILED and t.spec.on_failure != "continue" for t in tasks.values()):
            run.stopping = True
            run.stop_reason = "an operation failed"
        ready = deque(t for t in tasks.values() if t.status is TaskStatus.PENDING and t.waiting == 0)
        limit = wf.parallel_limit
        executing, running = run.executing, run.running
        try:
            while True:
                # A slot is an operation at work; one recording its outcome has given its
                # slot back (see _release), so the next ones run while that commits. At
                # most ``limit`` more may be recording: the writer's next commit.
                while ready and len(executing) < limit and len(running) < 2 * limit and not run.stopping:
                    t = ready.popleft()
                    if t.status is TaskStatus.PENDING and t.name not in running:
                        executing.add(t.name)
                        running[t.name] = asyncio.create_task(self._execute(run, t))
                if not running:
                    break
                name = await run.done.get()
                if name is None:  # a slot came free
                    continue
                finished = running.pop(name)
                await finished  # _execute never raises except on shutdown
                await self._settle(run, tasks[name], ready)
            await self._finish(run)
        except asyncio.CancelledError:
            if not self._shutting_down:
                raise
        except Exception as exc:
            log.exception("workflow driver failed", extra={"workflow_id": wf.id})
            self.healthy = False
            if wf.status not in FINAL_WORKFLOW:  # never leave it Running with no driver
                with contextlib.suppress(Exception):
                    await self.transitions.move_workflow(
                        wf,
                        WorkflowStatus.FAILED,
                        {"error": f"internal error: {exc}", "completed_at": utcnow()},
                    )
        finally:
            if not self._shutting_down:
                self.runs.pop(wf.id, None)
                WORKFLOWS_ACTIVE.set(len(self.runs))
                if not self.runs and self.settings.trim_memory_after_batch:
                    trim_heap()
                collector.settle(idle=not self.runs)

    async def _settle(self, run: _Run, t: TaskState, ready: deque[TaskState]) -> None:
        """Release or skip the dependents of an operation that reached a final state."""
        if t.status is TaskStatus.FAILED and t.spec.on_failure != "continue" and not run.stopping:
            run.stopping = True
            run.stop_reason = f"operation {t.name!r} failed"
        skips: list[TaskState] = []
        for name, kind in t.dependents:
            d = run.wf.tasks[name]
            if d.status is not TaskStatus.PENDING:
                continue
            if kind == "hard" and t.status is not TaskStatus.COMPLETED:
                skips.append(d)
                continue
            d.waiting -= 1
            if d.waiting == 0:
                ready.append(d)
        if skips:
            released = await self._skip_cascade(run, skips)
            ready.extend(released)

    async def _skip_cascade(self, run: _Run, start: list[TaskState]) -> list[TaskState]:
        """Cancel operations whose hard dependency did not complete, and theirs in turn.
        Returns soft dependents that became ready."""
        tasks = run.wf.tasks
        changes: list[Change] = []
        released: list[TaskState] = []
        seen: set[str] = set()
        stack = list(start)
        while stack:
            d = stack.pop()
            if d.name in seen or d.status is not TaskStatus.PENDING:
                continue
            seen.add(d.name)
            blocker = next(
                (
                    dep
                    for dep, kind in d.deps
                    if (kind == "hard" and tasks[dep].final and tasks[dep].status is not TaskStatus.COMPLETED)
                    or dep in seen
                ),
                d.deps[0][0] if d.deps else "?",
            )
            changes.append(
                task_change(
                    d,
                    TaskStatus.CANCELLED,
                    {
                        "error": f"skipped: dependency {blocker!r} did not complete",
                        "completed_at": utcnow(),
                    },
                )
            )
            for name, kind in d.dependents:
                nxt = tasks[name]
                if kind == "hard":
                    stack.append(nxt)
                elif nxt.status is TaskStatus.PENDING:
                    nxt.waiting -= 1
                    if nxt.waiting == 0:
                        released.append(nxt)
        if changes:
            await self.transitions.commit(changes)
        return [r for r in released if r.status is TaskStatus.PENDING]

    async def _execute(self, run: _Run, t: TaskState) -> None:
        """Run one operation's attempts under its timeout and retry policy."""
        try:
            await self._attempts(run, t)
        except asyncio.CancelledError:
            if self._shutting_down:
                raise
            # A user cancel: record it, then let the driver settle.
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()
            if not t.final:
                await self.transitions.move_task(
                    t,
                    TaskStatus.CANCELLED,
                    {
                        "error": "cancelled by request",
                        "completed_at": utcnow(),
                    },
                )
        except Exception as exc:  # a bug, not a provider failure: fail the operation
            log.exception("operation crashed", extra={"task_id": t.id})
            if not t.final and t.status is TaskStatus.RUNNING:
                await self.transitions.move_task(
                    t,
                    TaskStatus.FAILED,
                    {
                        "error": f"internal error: {exc}",
                        "completed_at": utcnow(),
                    },
                )
        finally:
            if not self._shutting_down:
                run.executing.discard(t.name)
                run.done.put_nowait(t.name)

    @staticmethod
    def _release(run: _Run, t: TaskState) -> None:
        """The provider is done with ``t`` for good: give its slot to the next operation
        while its outcome is being recorded. Its dependents still wait for that outcome
        to be durable (the driver settles ``t`` only then), so this only lets operations
        that do not depend on it overlap the commit."""
        if t.name in run.executing:
            run.executing.discard(t.name)
            run.done.put_nowait(None)

    async def _attempts(self, run: _Run, t: TaskState) -> None:
        provider = self.registry.get(t.provider)
        while True:
            attempt = t.attempt + 1
            # The provider starts while Running is being committed: a crash before the
            # commit lands leaves the task Pending, which resume runs again anyway. The
            # Running event still goes out only once durable, and the outcome is
            # recorded only after it (writes commit in order).
            running = self.transitions.queue(
                task_change(
                    t,
                    TaskStatus.RUNNING,
                    {
                        "attempt": attempt,
                        "started_at": utcnow(),
                        "completed_at": None,
                        "error": None,
                        "progress": 0.0,
                    },
                )
            )

            ctx = self.transitions.operation_context(t, attempt)
            failure: str
            output: str | None = None
            retryable = True
            try:
                async with asyncio.timeout(t.timeout_s):
                    result = await provider.apply(ctx)
            except TimeoutError:
                failure = f"timed out after {t.timeout_s:g} s (attempt {attempt})"
            except OperationFailed as exc:
                failure, output, retryable = exc.message, exc.output, exc.retryable
            else:
                self._release(run, t)
                # Queued behind Running, so it commits with it or after it; awaiting
                # Running first would cost a commit per operation.
                await self.transitions.move_task(
                    t,
                    TaskStatus.COMPLETED,
                    {
                        "output": result.output,
                        "results": result.results,
                        "completed_at": utcnow(),
                        "progress": 100.0,
                    },
                    extra=result.writes,
                )
                await running  # long since resolved; surfaces a failed write
                return
            await running
            if retryable and attempt < t.retry.max_attempts and not run.stopping:
                delay = t.retry.delay_s(attempt)
                await self.transitions.move_task(
                    t,
                    TaskStatus.PENDING,
                    {
                        "error": f"{failure}; retrying in {delay:g} s",
                        "output": output,
                    },
                )
                await asyncio.sleep(delay)
                if run.stopping:  # the batch stopped while this one waited to retry
                    await self.transitions.move_task(
                        t,
                        TaskStatus.CANCELLED,
                        {
                            "error": f"not retried: {run.stop_reason or 'the batch stopped'}",
                            "completed_at": utcnow(),
                        },
                    )
                    return
                continue
            await self.transitions.move_task(
                t,
                TaskStatus.FAILED,
                {
                    "error": failure,
                    "output": output,
                    "completed_at": utcnow(),
                },
                extra=[
                    self.snapshots.snapshot_write(
                        run.wf,
                        f"operation {t.name} failed",
                        self.transitions.last_seq + 1,
                        changed=[t],
                        failed=t,
                    )
                ],
            )
            return

    async def _finish(self, run: _Run) -> None:
        """Cancel what never started, roll back if asked, and record the final status."""
        wf = run.wf
        run.finishing = True
        leftover = [t for t in wf.tasks.values() if t.status is TaskStatus.PENDING]
        if leftover:
            reason = (
                "cancelled by request"
                if run.cancel_requested
                else f"not started: {run.stop_reason or 'the batch stopped'}"
            )
            await self.transitions.commit(
                [
                    task_change(t, TaskStatus.CANCELLED, {"error": reason, "completed_at": utcnow()})
                    for t in leftover
                ]
            )
        failed = [t for t in wf.tasks.values() if t.status is TaskStatus.FAILED]
        if run.cancel_requested:
            final = WorkflowStatus.CANCELLED
        elif failed:
            final = WorkflowStatus.FAILED
        else:
            final = WorkflowStatus.COMPLETED
        patch: dict[str, Any] = {"completed_at": utcnow()}
        if failed:
            patch["error"] = "; ".join(f"{t.name}: {t.error}" for t in failed[:5])
        stop_failures = [t for t in failed if t.spec.on_failure != "continue"]
        if final is WorkflowStatus.FAILED and wf.rollback_enabled and stop_failures:
            include_failed = [t.id for t in stop_failures if t.spec.on_failure == "rollback"]
            summary = await self.rollbacks.rollback_workflow(wf, include_failed=include_failed)
            wf.rollback = summary
            patch["rollback"] = summary
        if wf.started_at is not None:
            patch["duration_s"] = (patch["completed_at"] - wf.started_at).total_seconds()
        snap = self.snapshots.snapshot_write(
            wf,
            "finished",
            self.transitions.last_seq + 1,
            changed=list(wf.tasks.values()),
            final_status=str(final),
        )
        await self.transitions.move_workflow(wf, final, patch, extra=[snap])

    # -- commands -----------------------------------------------------------------------------

    async def cancel(self, workflow_id: str) -> None:
        """Stop scheduling, cancel running operations (their processes die), mark Cancelled."""
        run = self.runs.get(workflow_id)
        if run is None:
            row = await self.repo.workflow(workflow_id)
            if row is None:
                raise NotFound(f"no batch or workflow with id {workflow_id}")
            raise Conflict(
                f"workflow {workflow_id} is already {row['status']}; only a running one can be cancelled",
                details={"status": row["status"]},
            )
        if run.cancel_requested or run.wf.status in FINAL_WORKFLOW:
            raise Conflict(f"workflow {workflow_id} is already being cancelled")
        if run.finishing:
            raise Conflict(
                f"workflow {workflow_id} has stopped scheduling and is recording its outcome "
                "(rolling back if enabled); it can no longer be cancelled",
                details={"status": str(run.wf.status)},
            )
        run.cancel_requested = True
        run.stopping = True
        run.stop_reason = "cancelled by request"
        for task in list(run.running.values()):
            task.cancel()
        if run.driver is not None:
            await asyncio.shield(run.driver)

    def live(self, workflow_id: str) -> WorkflowState | None:
        """The in-memory state of a workflow this engine drives (None once it finished:
        its rows are then the record)."""
        run = self.runs.get(workflow_id)
        return run.wf if run is not None else None

    def is_running(self, workflow_id: str) -> bool:
        return workflow_id in self.runs
