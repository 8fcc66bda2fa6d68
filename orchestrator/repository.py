"""Every SurrealQL statement of the orchestrator: workflows, tasks, journal, snapshots,
checkpoints, rollbacks and the ``local`` provider's simulated inventory. Values are
always bound; ids are addressed with ``type::thing`` so user input never becomes
query text.

Two kinds of reads: the rows the engine rebuilds its runtime state from (``workflow``,
``tasks_of``, …, ``dict`` rows), and the typed reads the API's services use
(``get_workflow``, ``list_tasks``, …), which return the frozen records of
:mod:`orchestrator.records`."""

from __future__ import annotations

import json
from typing import Any

from surrealdb import RecordID

from orchestrator.records import Checkpoint, Task, Workflow
from orchestrator.states import TaskStatus, WorkflowStatus
from shared.store.codec import log_entries
from shared.store.store import Store
from shared.store.writes import Insert, Lazy, Merge, Put, Stmt, Write


class Repository:
    """The orchestrator's aggregates in the store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- catch-up after a crash (orchestrator/journal.py) ----------------------------

    async def workflow_rows(self, workflow_ids: list[str]) -> list[dict[str, Any]]:
        """The stored rows of these workflows, as they are (no record types)."""
        rows: list[dict[str, Any]] = await self.store.query(
            "SELECT * FROM $ids", {"ids": [RecordID("workflow", w) for w in workflow_ids]}
        )
        return rows

    async def task_ids_of(self, workflow_ids: list[str]) -> set[str]:
        """The ids of the task rows these workflows already have."""
        return set(
            await self.store.query(
                "SELECT VALUE id FROM task WHERE workflow_id IN $wids", {"wids": workflow_ids}
            )
        )

    # -- write builders (the engine adds them to one atomic write) --------------

    @staticmethod
    def insert_workflow(row: dict[str, Any]) -> Write:
        return Insert("workflow", row)

    @staticmethod
    def create_task(row: dict[str, Any], seq: int) -> Write:
        """A task row, applied lazily: the journal entry at ``seq`` (its workflow's
        submission) is what makes it recoverable."""
        fields = dict(row)
        return Lazy("task", str(fields.pop("id")), fields, seq, create=True)

    @staticmethod
    def patch_task(task_id: str, patch: dict[str, Any]) -> Write:
        return Merge("task", task_id, patch)

    @staticmethod
    def patch_workflow(workflow_id: str, patch: dict[str, Any]) -> Write:
        return Merge("workflow", workflow_id, patch)

    @staticmethod
    def insert_snapshot(row: dict[str, Any]) -> Write:
        return Insert("snapshot", row)

    @staticmethod
    def insert_checkpoint(row: dict[str, Any]) -> Write:
        return Insert("checkpoint", row)

    @staticmethod
    def upsert_rollback(rollback_id: str, row: dict[str, Any]) -> Write:
        return Stmt("UPSERT type::thing('rollback', $id) MERGE $row", {"id": rollback_id, "row": row})

    # -- reads --------------------------------------------------------------------

    async def _page(
        self,
        table: str,
        filters: dict[str, Any],
        order: str,
        limit: int,
        offset: int,
        omit: str = "",
    ) -> tuple[list[dict[str, Any]], int]:
        """One page of a table (equality filters, fixed order) and the total that match."""
        where, params = _where(filters)
        return await self.store.page(
            table,
            where=where,
            params=params,
            order=order,
            limit=limit,
            offset=offset,
            fields=f"* OMIT {omit}" if omit else "*",
        )

    async def last_journal_seq(self) -> int:
        rows = await self.store.query("SELECT VALUE last FROM journal ORDER BY last DESC LIMIT 1")
        return int(rows[0]) if rows else 0

    async def _entries(
        self,
        sql: str,
        params: dict[str, Any] | None = None,
        *,
        after: int = 0,
        upto: int | None = None,
        workflow_id: str | None = None,
        entities: set[str] | None = None,
        kind: str | None = None,
    ) -> list[dict[str, Any]]:
        """Journal entries from the rows ``sql`` selects, filtered, in order."""
        out = []
        for row in await self.store.query(sql, params):
            for e in log_entries(row):
                seq = int(e["seq"])
                if seq <= after or (upto is not None and seq > upto):
                    continue
                if workflow_id is not None and e["workflow_id"] != workflow_id:
                    continue
                if entities is not None and str(e["entity"]) not in entities:
                    continue
                if kind is not None and e["entity_kind"] != kind:
                    continue
                out.append(e)
        out.sort(key=lambda e: int(e["seq"]))
        return out

    async def workflow(self, workflow_id: str) -> dict[str, Any] | None:
        rows = await self.store.query(
            "SELECT * OMIT operations_json FROM type::thing('workflow', $id)", {"id": workflow_id}
        )
        return rows[0] if rows else None

    async def workflows(
        self, *, status: str | None, kind: str | None, limit: int, offset: int
    ) -> tuple[list[dict[str, Any]], int]:
        return await self._page(
            "workflow",
            {"status": status, "kind": kind},
            "created_at DESC, id",
            limit,
            offset,
            omit="operations_json",
        )

    async def active_workflows(self) -> list[dict[str, Any]]:
        return await self.store.query(
            "SELECT * FROM workflow WHERE status IN $active ORDER BY created_at",
            {"active": [WorkflowStatus.PENDING.value, WorkflowStatus.RUNNING.value]},
        )

    async def tasks_of(self, workflow_id: str) -> list[dict[str, Any]]:
        return await self.store.query(
            "SELECT * FROM task WHERE workflow_id = $wid ORDER BY index", {"wid": workflow_id}
        )

    async def tasks_of_many(self, workflow_ids: list[str]) -> list[dict[str, Any]]:
        return await self.store.query(
            "SELECT * FROM task WHERE workflow_id IN $wids ORDER BY workflow_id, index",
            {"wids": workflow_ids},
        )

    async def operation_specs(self, workflow_ids: list[str]) -> dict[tuple[str, str], dict[str, Any]]:
        """The submitted operation specs of workflows, by (workflow id, operation id)."""
        rows = await self.store.query(
            "SELECT id, operations_json FROM $ids",
            {"ids": [RecordID("workflow", w) for w in workflow_ids]},
        )
        return {(str(r["id"]), op["id"]): op for r in rows for op in json.loads(r["operations_json"])}

    async def tasks_rolling_back(self) -> list[dict[str, Any]]:
        """Tasks left RollingBack, with their workflow's status (a scan: start-up only)."""
        return await self.store.query(
            "SELECT *, (SELECT VALUE status FROM ONLY type::thing('workflow', $parent.workflow_id))"
            " AS workflow_status FROM task WHERE status = $status",
            {"status": TaskStatus.ROLLING_BACK.value},
        )

    async def close_interrupted_rollbacks(self) -> None:
        await self.store.write(
            Stmt(
                "UPDATE rollback SET status = 'Interrupted', completed_at = time::now() "
                "WHERE status = 'Running'"
            )
        )

    async def task(self, task_id: str) -> dict[str, Any] | None:
        rows = await self.store.query("SELECT * FROM type::thing('task', $id)", {"id": task_id})
        return rows[0] if rows else None

    async def tasks(
        self, *, status: str | None, workflow_id: str | None, limit: int, offset: int
    ) -> tuple[list[dict[str, Any]], int]:
        return await self._page(
            "task", {"status": status, "workflow_id": workflow_id}, "created_at DESC, index", limit, offset
        )

    async def tasks_by_ids(self, task_ids: list[str]) -> list[dict[str, Any]]:
        return await self.store.query("SELECT * FROM $ids", {"ids": [RecordID("task", t) for t in task_ids]})

    async def tasks_by_names(self, workflow_id: str, names: list[str]) -> list[dict[str, Any]]:
        return await self.store.query(
            "SELECT * FROM task WHERE workflow_id = $wid AND name IN $names",
            {"wid": workflow_id, "names": names},
        )

    async def completed_after(self, seq: int) -> list[dict[str, Any]]:
        """Tasks completed after a journal position, latest completion first."""
        entries = await self.journal_after(seq)
        ids = list(
            dict.fromkeys(
                str(e["entity"])
                for e in entries
                if e["entity_kind"] == "task" and e["to"] == TaskStatus.COMPLETED
            )
        )
        if not ids:
            return []
        return await self.store.query(
            "SELECT * FROM $ids WHERE status = $completed AND completed_seq > $seq "
            "ORDER BY completed_seq DESC",
            {"ids": [RecordID("task", t) for t in ids], "seq": seq, "completed": TaskStatus.COMPLETED.value},
        )

    async def snapshots(self, workflow_id: str) -> list[dict[str, Any]]:
        return await self.store.query(
            "SELECT * FROM snapshot WHERE workflow_id = $wid ORDER BY seq", {"wid": workflow_id}
        )

    async def journal_of(self, workflow_id: str, upto_seq: int | None = None) -> list[dict[str, Any]]:
        """A workflow's journal entries (up to a position), in order: a range scan from
        its submission, keeping the rows that hold any of its entries."""
        rows = await self.store.query(
            "SELECT VALUE submitted_seq FROM ONLY type::thing('workflow', $id)", {"id": workflow_id}
        )
        start = int(rows[0]) if rows and rows[0] is not None else 1
        upto_clause = "" if upto_seq is None else " AND first <= $upto"
        return await self._entries(
            f"SELECT * FROM {_from(start)} WHERE keys CONTAINS $wid{upto_clause}",
            {"wid": workflow_id, "upto": upto_seq},
            upto=upto_seq,
            workflow_id=workflow_id,
        )

    async def journal_after(self, seq: int) -> list[dict[str, Any]]:
        return await self._entries(f"SELECT * FROM {_from(seq + 1)}", after=seq)

    async def journal_upto(self, seq: int, entity_ids: list[str]) -> list[dict[str, Any]]:
        """Journal entries up to ``seq`` for the given entities, in order."""
        return await self._entries(
            "SELECT * FROM journal WHERE first <= $seq", {"seq": seq}, upto=seq, entities=set(entity_ids)
        )

    async def checkpoints(self, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
        return await self._page("checkpoint", {}, "seq DESC, created_at DESC", limit, offset)

    async def checkpoint(self, checkpoint_id: str) -> dict[str, Any] | None:
        rows = await self.store.query("SELECT * FROM type::thing('checkpoint', $id)", {"id": checkpoint_id})
        return rows[0] if rows else None

    async def task_transitions_upto(self, seq: int) -> list[dict[str, Any]]:
        """Every task transition up to a journal position, in order."""
        return await self._entries(
            "SELECT * FROM journal WHERE first <= $seq", {"seq": seq}, upto=seq, kind="task"
        )

    async def rollbacks(self) -> list[dict[str, Any]]:
        return await self.store.query("SELECT * FROM rollback ORDER BY started_at")

    async def workflow_stats(self) -> dict[str, Any]:
        by_status, durations, snaps = await self.store.query_each(
            "SELECT status, count() AS n FROM workflow GROUP BY status;"
            "SELECT math::mean(duration_s) AS mean FROM workflow "
            "WHERE duration_s != NONE GROUP ALL;"
            "SELECT count() AS n FROM snapshot GROUP ALL",
        )
        return {
            "by_status": {r["status"]: int(r["n"]) for r in by_status},
            "mean_duration_s": float(durations[0]["mean"]) if durations else 0.0,
            "snapshots": int(snaps[0]["n"]) if snaps else 0,
        }

    async def ping(self) -> None:
        """A round trip to the store; raises if it cannot answer."""
        await self.store.query("RETURN 1")

    # -- typed reads (the API's services): frozen records ------------------------------

    async def get_workflow(self, workflow_id: str) -> Workflow | None:
        row = await self.workflow(workflow_id)
        return None if row is None else Workflow.from_row(row)

    async def list_workflows(
        self, *, status: WorkflowStatus | None, kind: str | None, limit: int, offset: int
    ) -> tuple[list[Workflow], int]:
        rows, total = await self.workflows(
            status=None if status is None else str(status), kind=kind, limit=limit, offset=offset
        )
        return [Workflow.from_row(r) for r in rows], total

    async def workflow_tasks(self, workflow_id: str) -> list[Task]:
        """A workflow's tasks in submission order."""
        return [Task.from_row(r) for r in await self.tasks_of(workflow_id)]

    async def tasks_by_workflow(self, workflow_ids: list[str]) -> dict[str, list[Task]]:
        """The tasks of several workflows, each in submission order."""
        by_workflow: dict[str, list[Task]] = {w: [] for w in workflow_ids}
        if workflow_ids:
            for row in await self.tasks_of_many(workflow_ids):
                task = Task.from_row(row)
                by_workflow.setdefault(str(task.workflow_id), []).append(task)
        return by_workflow

    async def get_task(self, task_id: str) -> Task | None:
        row = await self.task(task_id)
        return None if row is None else Task.from_row(row)

    async def list_tasks(
        self, *, status: TaskStatus | None, workflow_id: str | None, limit: int, offset: int
    ) -> tuple[list[Task], int]:
        rows, total = await self.tasks(
            status=None if status is None else str(status),
            workflow_id=workflow_id,
            limit=limit,
            offset=offset,
        )
        return [Task.from_row(r) for r in rows], total

    async def get_checkpoint(self, checkpoint_id: str) -> Checkpoint | None:
        row = await self.checkpoint(checkpoint_id)
        return None if row is None else Checkpoint.from_row(row)

    async def list_checkpoints(self, limit: int, offset: int) -> tuple[list[Checkpoint], int]:
        rows, total = await self.checkpoints(limit, offset)
        return [Checkpoint.from_row(r) for r in rows], total


class InventoryRepository:
    """The ``local`` provider's simulated cloud: one row per resource, keyed ``<kind>/<name>``."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def all(self) -> list[dict[str, Any]]:
        return await self.store.query("SELECT * FROM inventory ORDER BY kind, name")

    async def by_keys(self, keys: list[str]) -> list[dict[str, Any]]:
        return await self.store.query("SELECT * FROM $ids", {"ids": [RecordID("inventory", k) for k in keys]})

    @staticmethod
    def put(key: str, row: dict[str, Any]) -> Write:
        """Create or replace a resource (the puts of one commit share one statement)."""
        return Put("inventory", key, row)

    @staticmethod
    def remove(key: str) -> Write:
        return Put("inventory", key, None)

    @staticmethod
    def remove_made_by(task_id: str) -> Write:
        """Everything one task's operation made (before providers recorded prior state)."""
        return Stmt("DELETE inventory WHERE task_id = $task", {"task": task_id})


# A journal row holds the entries of one commit and is keyed by the last of their
# positions, so the row holding position ``seq`` and every later one is a range
# scan of record ids from ``seq``: no index needed. SurrealQL ranges take no
# parameters; the bound is an integer formatted here, never text from a request.
def _from(seq: int) -> str:
    return f"journal:{int(seq)}.."


def _where(filters: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    parts = [f"{name} = ${name}" for name, value in filters.items() if value is not None]
    params = {name: value for name, value in filters.items() if value is not None}
    return " AND ".join(parts), params
