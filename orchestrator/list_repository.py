"""The page of ``GET /batch/operations`` in two round trips: the workflows with the list's
total, then their counters with the task pages of the batches the page lists.

Measured at 1,000,000 tasks (docs/performance.md, "Lists at 1,000,000 tasks, round
2"): the page took four or five round trips (the workflows, the list's total, their
counters, the listed batches' positions, their task pages), ~0.3 ms of fixed cost
each. What the embedded engine charges is per record and per value returned (~55 µs
a workflow row, ~15 µs a counter), not per query: reading the counters inside the
workflows' query (a record link per row) cost more than a query of their own (+1.5 ms
against +1.0 ms), and naming the fields of a workflow instead of ``*`` cost more, not
less. So the counters and the task pages share the second query; the pages of a batch
whose rows are all there (its counter adds up to its operations) are ``0..n/100`` of
its partition, read by id with no lookup of its position (it is on the row).
"""

from __future__ import annotations

from typing import Any

from surrealdb import RecordID

from orchestrator.records import Task, Workflow
from orchestrator.task_repository import PAGE_SIZE, TASK_PAGES, TaskPages, page_id
from shared.store.counters import COUNTER_TABLE, counts_of
from shared.store.keyset import END, KEY, Page, decode_cursor
from shared.store.pages import page_rows
from shared.store.store import Store

COUNTER_PREFIX = "workflow/"  # orchestrator.repository.tasks_of: a workflow's tasks by status
Counts = dict[str, dict[str, int]]  # tasks by status, by workflow id


class BatchLists:
    """Reads of the batch list (the writer owns every write)."""

    def __init__(self, store: Store, pages: TaskPages) -> None:
        self.store = store
        self.pages = pages

    async def page(self, *, limit: int, offset: int, cursor: str | None, total_key: str) -> tuple[Page, int]:
        """A page of workflow rows in list order (after ``cursor``, skipping ``offset``, at
        most ``limit``) and the field sum of the counter ``total_key`` (the list's total):
        one query, a forward walk of the ``lk`` index."""
        after = None if cursor is None else decode_cursor(cursor)
        rows, total = await self.store.query_each(
            f"SELECT * OMIT operations_json, task_ids_json FROM workflow WHERE {KEY} >= $low "
            f"AND {KEY} < $high AND {KEY} != $after ORDER BY {KEY} LIMIT $n START $skip; "
            "SELECT * FROM $total",
            {
                "low": after or "",
                "high": END,
                "after": after,
                "n": limit + 1,
                "skip": offset,
                "total": RecordID(COUNTER_TABLE, total_key),
            },
        )
        rows = list(rows or [])
        more = len(rows) > limit
        rows = rows[:limit]
        page = Page(rows, str(rows[-1][KEY]) if more and rows else None)
        return page, sum(counts_of((total or [None])[0]).values())

    async def counts_and_tasks(
        self, workflows: list[Workflow], listed: list[Workflow]
    ) -> tuple[Counts, dict[str, list[Task]]]:
        """Each workflow's tasks by status (by id) and the tasks of the ``listed`` ones
        (each in index order): one query while their rows are all there, else one more."""
        counters, records = await self.store.query_each(
            "SELECT * FROM $counters; SELECT id, rows FROM $pages",
            {
                "counters": [RecordID(COUNTER_TABLE, COUNTER_PREFIX + wf.id) for wf in workflows],
                "pages": [RecordID(TASK_PAGES, p) for p in _pages(listed)],
            },
        )
        counts = {str(c["id"]).removeprefix(COUNTER_PREFIX): counts_of(c) for c in counters or []}
        rows = [row for record in records or [] for row in page_rows(record)]
        return counts, await self.tasks_of(listed, counts, rows)

    async def tasks_of(
        self, workflows: list[Workflow], counts: Counts, found: list[dict[str, Any]] | None = None
    ) -> dict[str, list[Task]]:
        """The tasks of these workflows, each in index order, by workflow id: from the
        rows ``found`` (those of :func:`_pages`) for those whose rows are all there, read
        by page id or by range (rows pruned) for the others."""
        whole = {wf.id for wf in workflows if _whole(wf, counts)}
        if found is None:
            found = await self.pages.by_ids(_pages([wf for wf in workflows if wf.id in whole]))
        others = [int(wf.submitted_seq or 0) for wf in workflows if wf.id not in whole]
        out: dict[str, list[Task]] = {wf.id: [] for wf in workflows}
        for row in [r for r in found if str(r.get("workflow_id")) in whole] + await self.pages.of_workflows(
            others
        ):
            out.setdefault(str(row.get("workflow_id")), []).append(Task.from_row(row))
        return out


def _whole(wf: Workflow, counts: Counts) -> bool:
    """Whether every task of ``wf`` has its row (none pruned): then they fill its pages
    ``0..n/100`` by index."""
    return sum(counts.get(wf.id, {}).values()) == wf.operation_count


def _pages(workflows: list[Workflow]) -> list[str]:
    """The pages the tasks of these workflows fill when all are there."""
    return [
        page_id(int(wf.submitted_seq or 0), index)
        for wf in workflows
        for index in range(0, wf.operation_count or 0, PAGE_SIZE)
    ]
