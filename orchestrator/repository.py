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
import re
from collections import Counter
from datetime import UTC, datetime
from typing import Any, Protocol

from surrealdb import RecordID

from orchestrator.inventory_repository import InventoryRepository as InventoryRepository
from orchestrator.list_repository import BatchLists
from orchestrator.records import Checkpoint, Task, Workflow
from orchestrator.states import FINAL_TASK, FINAL_WORKFLOW, TaskStatus, WorkflowStatus
from orchestrator.task_repository import (
    LEGACY_TASKS,
    PAGE_SIZE,
    TASK_PAGES,
    TASK_REFS,
    TaskPages,
    of_workflow,
    page_id,
    page_of_key,
    partition,
)
from shared.store.codec import log_entries, pack, unpack
from shared.store.counters import TOTAL, counts_of, moved, read_counter, read_counters
from shared.store.keyset import KEY, Listing, PageFilter, Unchanged, keyset_page, list_key, part
from shared.store.store import Store
from shared.store.writes import Count, Insert, Lazy, Merge, Paged, Put, Stmt, Write

WORKFLOW_SPECS = "workflow_spec"  # a workflow's operations as submitted, packed
_SPEC_FIELDS = ("operations_json", "task_ids_json")

# Counters (shared/store/counters.py), kept in the commit of each change.
TASK_COUNTS = "task"  # tasks by status
WORKFLOW_COUNTS = "workflow"  # workflows by status
KIND_COUNTS = "workflow_kind"  # workflows by kind
DURATIONS = "workflow_duration"  # finished workflows: "ms" summed, "n" of them
CHECKPOINT_COUNTS = "checkpoint"
SNAPSHOT_COUNTS = "snapshot"
PRUNED = "pruned"  # what retention removed, by what (orchestrator/retention.py)
# Set by migration 0011: the counters of task and workflow rows are recounted once
# the rows have caught up with the journal (the previous version kept none).
RECOUNT = RecordID("meta", "recount")
# List answers kept while the store commits nothing (shared/store/keyset.py, Unchanged):
# the pages of /tasks and /batch/operations a dashboard polls (the service passes its
# ``list_answers_kept`` setting), holding at most LIST_ROWS_KEPT rows in all (a page of
# 1,000 tasks is read, not kept, so what is kept stays a few megabytes).
LIST_ANSWERS_KEPT = 64
LIST_ROWS_KEPT = 2_000


_FINAL_TASK = sorted(str(s) for s in FINAL_TASK)
_FINAL_WORKFLOW = sorted(str(s) for s in FINAL_WORKFLOW)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_IDENT = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")  # a status or kind pasted into SET


def tasks_of(workflow_id: str) -> str:
    """The counter of one workflow's tasks by status."""
    return f"workflow/{workflow_id}"


def _micros(value: Any) -> int:
    return int(value.timestamp() * 1_000_000) if hasattr(value, "timestamp") else 0


workflow_partition = partition  # the key prefix of a workflow and of all its tasks


def task_key(submitted_seq: int, index: int, task_id: str) -> str:
    """Newest workflow first, then its tasks in submission order."""
    return list_key(workflow_partition(submitted_seq), part(index), tiebreak=task_id)


class TaskFilter(PageFilter, Protocol):
    """What a page of tasks is asked for (``orchestrator.models.TaskQuery`` is one)."""

    @property
    def status(self) -> str | None: ...
    @property
    def workflow_id(self) -> str | None: ...


class Repository:
    """The orchestrator's aggregates in the store."""

    def __init__(self, store: Store, *, answers_kept: int = LIST_ANSWERS_KEPT) -> None:
        self.store = store
        self.pages = TaskPages(store)
        self.lists = BatchLists(store, self.pages)
        self.kept = Unchanged(store, answers_kept, LIST_ROWS_KEPT)

    # -- catch-up after a crash (orchestrator/journal.py) ----------------------------

    async def workflow_rows(self, workflow_ids: list[str]) -> list[dict[str, Any]]:
        """The stored rows of these workflows with their specs (no record types)."""
        rows: list[dict[str, Any]] = await self.store.query(
            "SELECT * FROM $ids", {"ids": [RecordID("workflow", w) for w in workflow_ids]}
        )
        return await self.with_specs(rows)

    async def task_ids_of(self, workflows: list[dict[str, Any]]) -> set[str]:
        """The ids of the task rows these workflows (their rows) already have."""
        rows = await self.pages.of_workflows(int(w.get("submitted_seq") or 0) for w in workflows)
        return {str(r["id"]) for r in rows}

    async def convert_legacy_tasks(self) -> int:
        """Move task rows kept one to a record (before pages) into pages, a workflow per
        commit, each with a ``task_ref`` (its id does not name its page); then drop the
        old table. Runs at start, after catch-up; a crash midway resumes where it was.
        Counters are untouched: the tasks are the same."""
        moved = 0
        while True:
            first = await self.store.query(f"SELECT VALUE workflow_id FROM {LEGACY_TASKS} LIMIT 1")
            if not first:
                break
            wid = str(first[0])
            rows = await self.store.query(f"SELECT * FROM {LEGACY_TASKS} WHERE workflow_id = $w", {"w": wid})
            seqs = await self.store.query(
                "SELECT VALUE submitted_seq FROM type::thing('workflow', $w)", {"w": wid}
            )
            seq = int(seqs[0] or 0) if seqs else 0
            writes: list[Write] = []
            for row in rows:
                tid = str(row["id"])
                key = str(row.get(KEY) or task_key(seq, int(row.get("index") or 0), tid))
                page = page_of_key(key)
                writes.append(Paged(TASK_PAGES, page, tid, {**row, KEY: key}, create=True))
                writes.append(Put(TASK_REFS, tid, {"page": page, "workflow_id": wid}))
            writes.append(Stmt(f"DELETE {LEGACY_TASKS} WHERE workflow_id = $w", {"w": wid}))
            await self.store.write(*writes)
            moved += len(rows)
        if moved:
            await self.store.write(Stmt(f"REMOVE TABLE IF EXISTS {LEGACY_TASKS}"))
        return moved

    async def recount_requested(self) -> bool:
        """Whether the counters of task and workflow rows must be recounted (an upgrade)."""
        return bool(await self.store.query("SELECT VALUE id FROM $m", {"m": RECOUNT}))

    async def recount(self) -> None:
        """Count task and workflow rows into their counters, in one transaction: only
        once, after an upgrade, when the rows have caught up with the journal."""
        by = (
            "object::from_entries((SELECT VALUE [{f}, n] FROM "
            "(SELECT {f}, count() AS n FROM {t}{w} GROUP BY {f})))"
        )
        await self.store.write(
            Stmt(f"UPSERT counter:{TASK_COUNTS} CONTENT {by.format(f='status', t='task', w='')}"),
            Stmt(f"UPSERT counter:{WORKFLOW_COUNTS} CONTENT {by.format(f='status', t='workflow', w='')}"),
            Stmt(f"UPSERT counter:{KIND_COUNTS} CONTENT {by.format(f='kind', t='workflow', w='')}"),
            Stmt(
                "FOR $w IN (SELECT VALUE record::id(id) FROM workflow) { "
                "UPSERT type::thing('counter', string::concat('workflow/', $w)) CONTENT "
                f"{by.format(f='status', t='task', w=' WHERE workflow_id = $w')} }}"
            ),
            Stmt(
                f"UPSERT counter:{DURATIONS} CONTENT {{"
                "ms: math::sum((SELECT VALUE math::round(duration_s * 1000) FROM workflow "
                "WHERE type::is::number(duration_s))), "
                "n: count((SELECT VALUE id FROM workflow WHERE type::is::number(duration_s)))}"
            ),
            Stmt(f"UPSERT counter:{SNAPSHOT_COUNTS} CONTENT {{n: count((SELECT VALUE id FROM snapshot))}}"),
            Stmt(
                f"UPSERT counter:{CHECKPOINT_COUNTS} CONTENT {{n: count((SELECT VALUE id FROM checkpoint))}}"
            ),
            Stmt("DELETE $m", {"m": RECOUNT}),
        )

    # -- write builders (the engine adds them to one atomic write) --------------

    @staticmethod
    def insert_workflow(row: dict[str, Any]) -> list[Write]:
        """A workflow row, counted by status and kind; its operations as submitted and their
        task ids (``operations_json``, ``task_ids_json``) go to a ``workflow_spec`` record
        of their own, packed: written once, where the row is rewritten at each of its
        changes (5,000 operations: 0.8 MB a rewrite, half of what a run wrote)."""
        wid = str(row["id"])
        seq = int(row.get("submitted_seq") or row.get("updated_seq") or 0)
        fields = {k: v for k, v in row.items() if k not in _SPEC_FIELDS}
        spec = {k: row[k] for k in _SPEC_FIELDS if k in row}
        return [
            Insert(
                "workflow",
                {**fields, KEY: list_key(workflow_partition(seq), tiebreak=wid)},
                counts=(
                    Count(WORKFLOW_COUNTS, str(row["status"]), 1),
                    Count(KIND_COUNTS, str(row.get("kind") or "batch"), 1),
                ),
            ),
            Put(WORKFLOW_SPECS, wid, {"spec": pack(spec)}),
        ]

    async def with_specs(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Workflow rows with their submitted operations and task ids (from their
        ``workflow_spec`` record; rows from before it hold them themselves)."""
        wanted = [str(r["id"]) for r in rows if r.get("operations_json") is None]
        if not wanted:
            return rows
        records = await self.store.query(
            "SELECT id, spec FROM $ids", {"ids": [RecordID(WORKFLOW_SPECS, w) for w in wanted]}
        )
        specs = {str(r["id"]): unpack(r["spec"]) for r in records if isinstance(r.get("spec"), bytes)}
        return [{**r, **specs[str(r["id"])]} if str(r["id"]) in specs else r for r in rows]

    @staticmethod
    def create_tasks(rows: list[dict[str, Any]], seq: int) -> list[Write]:
        """New task rows (taken over: ``id`` is popped from each), applied lazily into
        their pages: the journal entry at ``seq`` (their workflow's submission) is what
        makes them recoverable. Counted at once, with that entry: one delta per status
        and counter, however many tasks."""
        writes: list[Write] = []
        by_status: Counter[tuple[str, str]] = Counter()
        prefix = workflow_partition(seq)
        pages: dict[int, str] = {}  # by index // PAGE_SIZE: worked out once a page
        for fields in rows:
            tid = str(fields.pop("id"))
            index = int(fields.get("index") or 0)
            fields[KEY] = list_key(prefix, part(index), tiebreak=tid)  # task_key
            by_status[(str(fields["workflow_id"]), str(fields["status"]))] += 1
            number = index // PAGE_SIZE
            page = pages.get(number)
            if page is None:
                page = pages[number] = page_id(seq, index)
            # Its page is new: the position of this submission names it.
            writes.append(Lazy(TASK_PAGES, tid, fields, seq, create=True, page=page, fresh=True))
        for (wid, status), n in by_status.items():
            writes += [Count(TASK_COUNTS, status, n), Count(tasks_of(wid), status, n)]
        return writes

    @staticmethod
    def rebuilt_task(row: dict[str, Any], seq: int) -> Write:
        """A task row catch-up rebuilds: counted already, when it was submitted."""
        index = int(row.get("index") or 0)
        key = task_key(seq, index, str(row["id"]))
        return Paged(TASK_PAGES, page_id(seq, index), str(row["id"]), {**row, KEY: key}, create=True)

    @staticmethod
    def status_counts(
        entity: str, workflow_id: str, from_status: str | None, to_status: str, patch: dict[str, Any]
    ) -> tuple[Count, ...]:
        """The counter deltas of a task or workflow moving from one status to another."""
        if entity == "task":
            return moved(TASK_COUNTS, from_status, to_status) + moved(
                tasks_of(workflow_id), from_status, to_status
            )
        out = moved(WORKFLOW_COUNTS, from_status, to_status)
        duration = patch.get("duration_s")
        if isinstance(duration, int | float):
            out += (Count(DURATIONS, "ms", round(duration * 1000)), Count(DURATIONS, TOTAL, 1))
        return out

    @staticmethod
    def patch_task(page: str, task_id: str, patch: dict[str, Any]) -> Write:
        """A change to a task's row (in ``page``) committed now, not through the journal."""
        return Paged(TASK_PAGES, page, task_id, patch)

    @staticmethod
    def patch_workflow(workflow_id: str, patch: dict[str, Any]) -> Write:
        return Merge("workflow", workflow_id, patch)

    @staticmethod
    def insert_snapshot(row: dict[str, Any]) -> Write:
        return Insert("snapshot", row, counts=(Count(SNAPSHOT_COUNTS, TOTAL, 1),))

    @staticmethod
    def insert_checkpoint(row: dict[str, Any]) -> Write:
        """A checkpoint, listed newest position first (then newest made first)."""
        key = list_key(
            part(int(row["seq"]), descending=True),
            part(_micros(row.get("created_at")), descending=True),
            tiebreak=str(row["id"]),
        )
        return Insert("checkpoint", {**row, KEY: key}, counts=(Count(CHECKPOINT_COUNTS, TOTAL, 1),))

    @staticmethod
    def upsert_rollback(rollback_id: str, row: dict[str, Any]) -> Write:
        return Stmt("UPSERT type::thing('rollback', $id) MERGE $row", {"id": rollback_id, "row": row})

    # -- reads --------------------------------------------------------------------

    async def last_journal_seq(self) -> int:
        """The position of the last journal entry (0: none), read at start.

        Journal rows are keyed by their last position, so the answer is the highest
        record id; the embedded planner walks id ranges forward only (``ORDER BY …
        DESC`` reads and sorts the whole table: seconds at 100,000 tasks). So the walk
        starts at the store's lazy mark, which is a position the journal holds (rows
        are applied only once their entries are durable, retention keeps every
        segment from the mark on): the rows after it are the few a crash left behind
        the rows, which catch-up reads next anyway. A store whose mark was never
        written (none applied yet, or written by a version that kept none) falls back
        to the sort, once."""
        mark = await self.store.lazy_mark()
        if mark <= 0:
            rows = await self.store.query("SELECT VALUE last FROM journal ORDER BY last DESC LIMIT 1")
            return int(rows[0]) if rows else 0
        last, start = 0, mark
        while True:  # in pages: a long crash backlog is never held at once
            ids = await self.store.query(
                f"SELECT VALUE record::id(id) FROM {_from(start)} LIMIT {_JOURNAL_PAGE}"
            )
            if ids:
                last = max(last, *(int(i) for i in ids))
                start = last + 1
            if len(ids) < _JOURNAL_PAGE:
                break
        if last == 0:  # the journal lost its tail: the mark's position was allocated
            rows = await self.store.query("SELECT VALUE last FROM journal ORDER BY last DESC LIMIT 1")
            return max(mark, int(rows[0]) if rows else 0)
        return last

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

    async def list_workflows(
        self, *, status: WorkflowStatus | None, kind: str | None, limit: int, offset: int, cursor: str | None
    ) -> Listing[Workflow]:
        """A page of workflows, newest first, and how many match (from the counters)."""
        filters = {"status": None if status is None else str(status), "kind": kind}
        where, params = _where(filters)
        fields = "* OMIT operations_json, task_ids_json"
        page = await keyset_page(
            self.store,
            "workflow",
            limit,
            offset,
            cursor,
            where=where,
            reads="status, kind",
            params=params,
            fields=fields,
        )
        if kind is None:
            total = await self._counted(WORKFLOW_COUNTS, filters["status"])
        elif status is None:
            total = await self._counted(KIND_COUNTS, kind)
        else:
            total = None  # no counter follows both at once
        return Listing([Workflow.from_row(r) for r in page.rows], total, page.next_cursor)

    async def batch_page(
        self, *, status: WorkflowStatus | None, limit: int, offset: int, cursor: str | None
    ) -> Listing[Workflow]:
        """A page of workflows, newest first, and how many match: one round trip (none
        while nothing was committed since the same page was read)."""

        async def read() -> Listing[Workflow]:
            if status is not None:
                return await self.list_workflows(
                    status=status, kind=None, limit=limit, offset=offset, cursor=cursor
                )
            page, total = await self.lists.page(
                limit=limit, offset=offset, cursor=cursor, total_key=WORKFLOW_COUNTS
            )
            return Listing([Workflow.from_row(r) for r in page.rows], total, page.next_cursor)

        return await self.kept.get(("batches", status, limit, offset, cursor), read, limit)

    async def batch_counts(
        self, workflows: list[Workflow], listed: list[Workflow]
    ) -> tuple[dict[str, dict[str, int]], dict[str, list[Task]]]:
        """Each workflow's tasks by status (by id) and the tasks of the ``listed`` ones,
        each in submission order: one round trip while their rows are all there."""
        key = ("counts", tuple(w.id for w in workflows), tuple(w.id for w in listed))
        weight = len(workflows) + sum(w.operation_count or 0 for w in listed)
        return await self.kept.get(key, lambda: self.lists.counts_and_tasks(workflows, listed), weight)

    async def listed_tasks(
        self, workflows: list[Workflow], counts: dict[str, dict[str, int]]
    ) -> dict[str, list[Task]]:
        """The tasks of listed workflows (with their counts), each in submission order."""
        key = ("listed", tuple(w.id for w in workflows))
        weight = sum(w.operation_count or 0 for w in workflows)
        return await self.kept.get(key, lambda: self.lists.tasks_of(workflows, counts), weight)

    async def _counted(self, key: str, field: str | None) -> int:
        counts = await read_counter(self.store, key)
        return counts.get(field, 0) if field is not None else sum(counts.values())

    async def active_workflows(self) -> list[dict[str, Any]]:
        """The workflows to resume at start, oldest first: a walk of the status index
        over the active ones only, sorted in memory (never the finished history)."""
        return await self.store.query(
            "SELECT * FROM workflow WHERE status IN $active ORDER BY created_at",
            {"active": [WorkflowStatus.PENDING.value, WorkflowStatus.RUNNING.value]},
        )

    async def any_rolling_back(self) -> bool:
        """Whether any task is RollingBack, from its status counter (one lookup): the
        start-up sweep of undos a stop cut off scans the task table only if so. The
        counter moves in the commit of each transition, so it is exact after a crash."""
        counts = await read_counter(self.store, TASK_COUNTS)
        return counts.get(TaskStatus.ROLLING_BACK.value, 0) > 0

    async def tasks_of(self, workflow_id: str) -> list[dict[str, Any]]:
        """A workflow's task rows in index order (its pages: one range read)."""
        return await self.tasks_of_many([workflow_id])

    async def tasks_of_many(self, workflow_ids: list[str]) -> list[dict[str, Any]]:
        """The task rows of several workflows, each workflow's in index order."""
        if not workflow_ids:
            return []
        seqs = await self.store.query(
            "SELECT VALUE submitted_seq FROM $ids", {"ids": [RecordID("workflow", w) for w in workflow_ids]}
        )
        return await self.pages.of_workflows(int(s) for s in seqs if isinstance(s, int))

    async def operation_specs(self, workflow_ids: list[str]) -> dict[tuple[str, str], dict[str, Any]]:
        """The submitted operation specs of workflows, by (workflow id, operation id)."""
        rows = await self.with_specs(
            await self.store.query(
                "SELECT id, operations_json FROM $ids",
                {"ids": [RecordID("workflow", w) for w in workflow_ids]},
            )
        )
        return {
            (str(r["id"]), op["id"]): op for r in rows for op in json.loads(r.get("operations_json") or "[]")
        }

    async def tasks_rolling_back(self) -> list[dict[str, Any]]:
        """Tasks left RollingBack, with their workflow's status (a walk of the pages that
        hold one: start-up only, and only when :meth:`any_rolling_back` says so)."""
        rows = await self.pages.rolling_back()
        wids = sorted({str(r["workflow_id"]) for r in rows})
        statuses = await self.store.query(
            "SELECT VALUE [record::id(id), status] FROM $ids",
            {"ids": [RecordID("workflow", w) for w in wids]},
        )
        of = {str(w): s for w, s in statuses}
        return [{**r, "workflow_status": of.get(str(r["workflow_id"]))} for r in rows]

    async def close_interrupted_rollbacks(self) -> None:
        await self.store.write(
            Stmt(
                "UPDATE rollback SET status = 'Interrupted', completed_at = time::now() "
                "WHERE status = 'Running'"
            )
        )

    async def task(self, task_id: str) -> dict[str, Any] | None:
        rows = await self.pages.find([task_id])
        return rows[0] if rows else None

    async def list_tasks(self, query: TaskFilter) -> Listing[Task]:
        """A page of tasks (newest workflow first, each in submission order) and how many
        match, from the counter read in the page's own round trip (no round trip while
        nothing was committed since the same page was read)."""
        status = None if query.status is None else str(query.status)
        key = ("tasks", status, query.workflow_id, query.limit, query.offset, query.cursor)
        return await self.kept.get(key, lambda: self._list_tasks(query), query.limit)

    async def _list_tasks(self, query: TaskFilter) -> Listing[Task]:
        """:meth:`list_tasks`, read. One workflow's tasks are one contiguous range of
        pages: its position and its counter come first."""
        prefix = ""
        status = None if query.status is None else str(query.status)
        counter: RecordID | None = RecordID("counter", TASK_COUNTS)
        dense = None
        if query.workflow_id is not None:
            key = tasks_of(query.workflow_id)
            found, counts = await self.store.query_each(
                "SELECT submitted_seq, operation_count FROM type::thing('workflow', $id); "
                "SELECT * FROM $counter",
                {"id": query.workflow_id, "counter": RecordID("counter", key)},
            )
            if not found:
                return Listing([], 0, None)
            prefix = workflow_partition(int(found[0].get("submitted_seq") or 0))
            counter, rows = None, counts_of((counts or [None])[0])
            # Every task of a workflow has a row from its submission until retention prunes
            # them: while all are there, their pages are known by number.
            if sum(rows.values()) == found[0].get("operation_count"):
                dense = sum(rows.values())
        page, counted = await self.pages.page(
            prefix,
            limit=query.limit,
            offset=query.offset,
            cursor=query.cursor,
            status=status,
            scan_budget=self.store.list_scan_budget,
            counter=counter,
            dense=dense,
        )
        if counter is not None:
            rows = counts_of(counted)
        total = rows.get(status, 0) if status is not None else sum(rows.values())
        return Listing([Task.from_row(r) for r in page.rows], total, page.next_cursor)

    async def tasks_by_ids(self, task_ids: list[str]) -> list[dict[str, Any]]:
        return await self.pages.find(task_ids)

    async def tasks_by_names(self, workflow_id: str, names: list[str]) -> list[dict[str, Any]]:
        wanted = set(names)
        return [r for r in await self.tasks_of(workflow_id) if r.get("name") in wanted]

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
        rows = [
            r
            for r in await self.pages.find(ids)
            if r.get("status") == TaskStatus.COMPLETED.value and int(r.get("completed_seq") or 0) > seq
        ]
        return sorted(rows, key=lambda r: -int(r["completed_seq"]))

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

    async def list_checkpoints(
        self, limit: int, offset: int, cursor: str | None = None
    ) -> Listing[Checkpoint]:
        page = await keyset_page(self.store, "checkpoint", limit=limit, offset=offset, cursor=cursor)
        total = await self._counted(CHECKPOINT_COUNTS, TOTAL)
        return Listing([Checkpoint.from_row(r) for r in page.rows], total, page.next_cursor)

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
        """Workflows by status and kind, tasks by status, durations, snapshots,
        checkpoints and what retention pruned: counter rows, one lookup each."""
        keys = (
            WORKFLOW_COUNTS,
            KIND_COUNTS,
            TASK_COUNTS,
            DURATIONS,
            SNAPSHOT_COUNTS,
            CHECKPOINT_COUNTS,
            PRUNED,
        )
        c = await read_counters(self.store, keys)
        durations = c[DURATIONS]
        finished = durations.get(TOTAL, 0)
        return {
            "by_status": c[WORKFLOW_COUNTS],
            "by_kind": c[KIND_COUNTS],
            "tasks_by_status": c[TASK_COUNTS],
            "mean_duration_s": durations.get("ms", 0) / finished / 1000 if finished else 0.0,
            "snapshots": c[SNAPSHOT_COUNTS].get(TOTAL, 0),
            "checkpoints": c[CHECKPOINT_COUNTS].get(TOTAL, 0),
            "pruned": c[PRUNED],
        }

    async def task_counts_of(self, workflow_ids: list[str]) -> dict[str, dict[str, int]]:
        """Each workflow's tasks by status (its counter row)."""
        counts = await read_counters(self.store, [tasks_of(w) for w in workflow_ids])
        return {w: counts[tasks_of(w)] for w in workflow_ids}

    async def ping(self) -> None:
        """A round trip to the store; raises if it cannot answer."""
        await self.store.query("RETURN 1")

    # -- retention (orchestrator/retention.py): bounded chunks, counters kept exact ----------

    async def oldest_checkpoints(self, limit: int) -> list[dict[str, Any]]:
        """Checkpoints with the lowest positions first (index ``checkpoint_seq``)."""
        return await self.store.query(
            "SELECT id, seq, created_at, workflow_id FROM checkpoint WHERE seq >= 0 ORDER BY seq LIMIT $n",
            {"n": limit},
        )

    async def oldest_submitted_seq(self) -> int | None:
        """The submission position of the oldest workflow still recorded."""
        rows = await self.store.query(
            "SELECT submitted_seq, created_at FROM workflow WHERE created_at >= $epoch "
            "ORDER BY created_at LIMIT 10",
            {"epoch": _EPOCH},
        )
        seqs = [int(r["submitted_seq"]) for r in rows if isinstance(r.get("submitted_seq"), int)]
        return min(seqs) if seqs else None

    async def expired_workflows(
        self, cutoff: datetime, below_seq: int | None, limit: int
    ) -> list[dict[str, Any]]:
        """Finished workflows completed before ``cutoff`` whose last change lies below
        ``below_seq`` (no kept checkpoint could roll them back), oldest first: a walk of
        the ``created_at`` index up to the cutoff (an ``OR`` in the condition made the
        planner read the whole table instead)."""
        return await self.store.query(
            "SELECT id, status, kind, submitted_seq, duration_s, checkpoint_id, created_at FROM workflow "
            "WHERE created_at < $cutoff AND status IN $final AND completed_at < $cutoff "
            "AND updated_seq < $below ORDER BY created_at LIMIT $n",
            {
                "cutoff": cutoff,
                "final": _FINAL_WORKFLOW,
                "below": _NO_SEQ_BOUND if below_seq is None else below_seq,
                "n": limit,
            },
        )

    @staticmethod
    def prune_checkpoint(checkpoint_id: str) -> Write:
        """Forget an expired checkpoint, counted."""
        return Stmt(
            "{ LET $gone = array::len((DELETE type::thing('checkpoint', $id) RETURN BEFORE)); "
            f"UPSERT counter:{CHECKPOINT_COUNTS} SET {TOTAL} -= $gone; "
            f"UPSERT counter:{PRUNED} SET checkpoint += $gone; }}",
            {"id": checkpoint_id},
        )

    @staticmethod
    def prune_tasks(workflow_id: str, submitted_seq: int, chunk: int) -> Write:
        """Forget about ``chunk`` finished tasks of a workflow: whole pages of its range
        whose every task is final, each status counter dropping by what they held;
        the result is how many tasks went (0: none left to prune)."""
        sums = {s: f"math::sum($gone.map(|$p| $p.counts.{s} ?? 0))" for s in _FINAL_TASK}
        by_status = ", ".join(f"{s} -= {total}" for s, total in sums.items())
        return Stmt(
            f"{{ LET $gone = (DELETE (SELECT VALUE id FROM {of_workflow(submitted_seq)} "
            "WHERE open = 0 LIMIT $pages) RETURN BEFORE); "
            "LET $n = math::sum($gone.map(|$p| $p.n ?? 0)); "
            f"UPSERT counter:{TASK_COUNTS} SET {by_status}; "
            f"UPSERT type::thing('counter', $wf) SET {by_status}; "
            f"UPSERT counter:{PRUNED} SET task += $n; "
            "$n }",
            {"pages": max(1, chunk // PAGE_SIZE), "wf": tasks_of(workflow_id)},
        )

    @staticmethod
    def prune_workflow(row: dict[str, Any]) -> Write:
        """Forget a finished workflow whose tasks are gone: its row, snapshots, the
        automatic checkpoint and its counter, all counted; nothing if it changed status
        or still has a task (a rollback started meanwhile). The result says whether."""
        status, kind = str(row["status"]), str(row.get("kind") or "batch")
        duration = row.get("duration_s")
        ms, finished = (round(duration * 1000), 1) if isinstance(duration, int | float) else (0, 0)
        for name in (status, kind):
            if not _IDENT.fullmatch(name):
                raise ValueError(f"not a counter field: {name!r}")
        # No RETURN inside: in a transaction it would end the whole group commit.
        return Stmt(
            "{ LET $left = array::len((SELECT VALUE id FROM "
            f"{of_workflow(int(row.get('submitted_seq') or 0))} LIMIT 1)); "
            "LET $wf = IF $left = 0 { (DELETE type::thing('workflow', $id) WHERE status = $status "
            "RETURN BEFORE) } ELSE { [] }; "
            "LET $ok = array::len($wf); "
            "LET $snaps = IF $ok > 0 { array::len((DELETE snapshot WHERE workflow_id = $id RETURN BEFORE)) } "
            "ELSE { 0 }; "
            "LET $cps = IF $ok > 0 { array::len((DELETE $cp WHERE auto = true RETURN BEFORE)) } ELSE { 0 }; "
            f"IF $ok > 0 {{ DELETE {TASK_REFS} WHERE workflow_id = $id }}; "
            f"IF $ok > 0 {{ DELETE type::thing('{WORKFLOW_SPECS}', $id) }}; "
            f"UPSERT counter:{WORKFLOW_COUNTS} SET {status} -= $ok; "
            f"UPSERT counter:{KIND_COUNTS} SET {kind} -= $ok; "
            f"UPSERT counter:{DURATIONS} SET ms -= $ms * $ok, {TOTAL} -= $finished * $ok; "
            f"UPSERT counter:{SNAPSHOT_COUNTS} SET {TOTAL} -= $snaps; "
            f"UPSERT counter:{CHECKPOINT_COUNTS} SET {TOTAL} -= $cps; "
            "IF $ok > 0 { DELETE type::thing('counter', $wfc) }; "
            f"UPSERT counter:{PRUNED} SET workflow += $ok, snapshot += $snaps, checkpoint += $cps; "
            "$ok > 0 }",
            {
                "id": str(row["id"]),
                "status": status,
                "ms": ms,
                "finished": finished,
                "wfc": tasks_of(str(row["id"])),
                "cp": RecordID("checkpoint", str(row.get("checkpoint_id") or "")),
            },
        )

    @staticmethod
    def prune_journal(below_seq: int, chunk: int) -> Write:
        """Forget up to ``chunk`` journal segments whose entries all lie below a position
        (a range scan of record ids); the result is how many went."""
        return Stmt(
            "{ LET $gone = array::len((DELETE (SELECT VALUE id FROM "
            f"journal:..{int(below_seq)} LIMIT $chunk) RETURN BEFORE)); "
            f"UPSERT counter:{PRUNED} SET journal += $gone; $gone }}",
            {"chunk": chunk},
        )

    # -- typed reads (the API's services): frozen records ------------------------------

    async def get_workflow(self, workflow_id: str) -> Workflow | None:
        row = await self.workflow(workflow_id)
        return None if row is None else Workflow.from_row(row)

    async def workflow_tasks(self, workflow_id: str) -> list[Task]:
        """A workflow's tasks in submission order."""
        return [Task.from_row(r) for r in await self.tasks_of(workflow_id)]

    async def get_task(self, task_id: str) -> Task | None:
        row = await self.task(task_id)
        return None if row is None else Task.from_row(row)

    async def get_checkpoint(self, checkpoint_id: str) -> Checkpoint | None:
        row = await self.checkpoint(checkpoint_id)
        return None if row is None else Checkpoint.from_row(row)


# A journal row holds the entries of one commit and is keyed by the last of their
# positions, so the row holding position ``seq`` and every later one is a range
# scan of record ids from ``seq``: no index needed. SurrealQL ranges take no
# parameters; the bound is an integer formatted here, never text from a request.
def _from(seq: int) -> str:
    return f"journal:{int(seq)}.."


_JOURNAL_PAGE = 500  # journal rows read per query when walking forward from a position
_NO_SEQ_BOUND = 2**62  # above every journal position


def _where(filters: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    parts = [f"{name} = ${name}" for name, value in filters.items() if value is not None]
    params = {name: value for name, value in filters.items() if value is not None}
    return " AND ".join(parts), params
