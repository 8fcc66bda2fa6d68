"""How a submitted operation becomes a task: its runtime state, what its provider says it
runs, and its row as submission records it (and catch-up rebuilds it from the
workflow's recorded operations); and back from a row to a task to resume or roll back."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from orchestrator.models import OperationSpec, RetryPolicy
from orchestrator.providers import Provider, ProviderRegistry
from orchestrator.runtime import TaskState
from orchestrator.states import TaskStatus
from orchestrator.task_repository import PAGE_SIZE, page_of_key
from shared.settings import Settings

_PENDING = str(TaskStatus.PENDING)


class TaskFactory:
    """Tasks and task rows for one engine (its defaults and its providers)."""

    def __init__(self, settings: Settings, registry: ProviderRegistry) -> None:
        self.registry = registry
        self.default_timeout_s = settings.default_timeout_s
        self.default_retry = RetryPolicy(  # shared by every operation without its own
            max_attempts=settings.default_max_attempts,
            initial_delay_s=settings.default_initial_delay_s,
            max_delay_s=settings.default_max_delay_s,
        )

    def state(self, wid: str, tid: str, index: int, op: OperationSpec) -> TaskState:
        """A new task of operation ``op`` (the ``index``-th of its workflow), pending."""
        return TaskState(
            id=tid,
            workflow_id=wid,
            name=op.id,
            index=index,
            spec=op,
            provider=op.provider_name,
            timeout_s=op.timeout or self.default_timeout_s,
            retry=op.retry or self.default_retry,
        )

    def submitted(
        self,
        wid: str,
        ops: Sequence[OperationSpec],
        ids: Sequence[str],
        now: datetime,
        pages: Callable[[int], str] | None = None,
    ) -> tuple[list[TaskState], list[dict[str, Any]]]:
        """The tasks of a workflow's operations as submission makes them (described,
        created at ``now``, each in the page ``pages(index)`` names for the first index of
        a page) and their rows, in one pass: what each provider name resolves to and the
        providers themselves are looked up once."""
        by_name = dict(zip((op.id for op in ops), ids, strict=True))
        providers: dict[str, tuple[Provider, str | None]] = {}
        states: list[TaskState] = []
        rows: list[dict[str, Any]] = []
        page: str | None = None
        for index, (op, tid) in enumerate(zip(ops, ids, strict=True)):
            name = op.provider_name
            try:
                provider, implementation = providers[name]
            except KeyError:
                provider, implementation = providers[name] = (
                    self.registry.get(name),
                    self.registry.resolve_name(name),
                )
            if pages is not None and index % PAGE_SIZE == 0:
                page = pages(index)
            command, args = provider.describe(op, name)
            t = TaskState(
                id=tid,
                workflow_id=wid,
                name=op.id,
                index=index,
                spec=op,
                provider=name,
                timeout_s=op.timeout or self.default_timeout_s,
                retry=op.retry or self.default_retry,
                command=command,
                args=tuple(args),
                created_at=now,
                page=page,
            )
            states.append(t)
            refs = op.dependency_refs
            rows.append(
                {
                    "id": tid,
                    "workflow_id": wid,
                    "name": op.id,
                    "index": index,
                    "type": op.type.value,
                    "provider": name,
                    "implementation": implementation,
                    "command": command,
                    "args": list(args),
                    "undo": op.undo_argv,
                    "dependencies": [by_name[d.id] for d in refs] if refs else [],
                    "dependency_names": [d.id for d in refs] if refs else [],
                    "status": _PENDING,
                    "attempt": 0,
                    "progress": 0.0,
                    "max_attempts": t.retry.max_attempts,
                    "timeout_s": t.timeout_s,
                    "created_at": now,
                    "started_at": None,
                    "completed_at": None,
                    "output": None,
                    "error": None,
                    "results": None,
                }
            )
        return states, rows

    def rows_of(self, workflow_row: dict[str, Any]) -> list[dict[str, Any]]:
        """A recorded workflow's task rows as first submitted (for catch-up)."""
        wid = str(workflow_row["id"])
        specs = [OperationSpec.model_validate(op) for op in json.loads(workflow_row["operations_json"])]
        ids = json.loads(workflow_row["task_ids_json"])
        return self.submitted(wid, specs, ids, workflow_row["created_at"])[1]

    def from_row(self, row: dict[str, Any], spec: OperationSpec) -> TaskState:
        """A task as recorded in the store, ready to schedule or roll back."""
        t = self.state(str(row["workflow_id"]), str(row["id"]), int(row["index"]), spec)
        t.status = TaskStatus(row["status"])
        t.attempt = int(row.get("attempt") or 0)
        t.progress = float(row.get("progress") or 0.0)
        t.output, t.error, t.results = row.get("output"), row.get("error"), row.get("results")
        t.command, t.args = row.get("command"), tuple(row.get("args") or ())
        t.created_at, t.started_at = row.get("created_at"), row.get("started_at")
        t.completed_at, t.completed_seq = row.get("completed_at"), row.get("completed_seq")
        t.page = page_of_key(str(row["lk"]))
        return t
