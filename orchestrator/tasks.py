"""How a submitted operation becomes a task: its runtime state, what its provider says it
runs, and its row as submission records it (and catch-up rebuilds it from the
workflow's recorded operations); and back from a row to a task to resume or roll back."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from orchestrator.models import OperationSpec, RetryPolicy
from orchestrator.providers import ProviderRegistry
from orchestrator.runtime import TaskState
from orchestrator.states import TaskStatus
from orchestrator.task_repository import page_of_key
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

    def described(self, t: TaskState) -> TaskState:
        """``t`` with what its provider says it runs (``/tasks``' command and args), as
        submission records it (a resumed task reads them from its row instead)."""
        command, args = self.registry.get(t.provider).describe(t.spec, t.provider)
        t.command, t.args = command, tuple(args)
        return t

    def row(self, t: TaskState, ids: dict[str, str], now: datetime) -> dict[str, Any]:
        """A new task's row, as submission records it (and catch-up rebuilds it)."""
        op = t.spec
        refs = op.dependency_refs
        return {
            "id": t.id,
            "workflow_id": t.workflow_id,
            "name": t.name,
            "index": t.index,
            "type": str(op.type),
            "provider": t.provider,
            "implementation": self.registry.resolve_name(t.provider),
            "command": t.command,
            "args": list(t.args),
            "undo": op.undo_argv,
            "dependencies": [ids[d.id] for d in refs] if refs else [],
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

    def rows_of(self, workflow_row: dict[str, Any]) -> list[dict[str, Any]]:
        """A recorded workflow's task rows as first submitted (for catch-up)."""
        wid = str(workflow_row["id"])
        specs = [OperationSpec.model_validate(op) for op in json.loads(workflow_row["operations_json"])]
        ids = dict(zip((op.id for op in specs), json.loads(workflow_row["task_ids_json"]), strict=True))
        return [
            self.row(self.described(self.state(wid, ids[op.id], index, op)), ids, workflow_row["created_at"])
            for index, op in enumerate(specs)
        ]

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
