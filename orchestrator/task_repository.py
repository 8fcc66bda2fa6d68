"""Where task rows are stored: in pages of a workflow's tasks.

A task row is the same dict it always was (``TaskFactory.row``, patched by the
journal's entries); up to :data:`PAGE_SIZE` of one workflow's rows, by index, share
one record of ``task_page`` (``shared/store/pages.py`` says why: the embedded engine
keeps every key in memory and replays them all at every start). A page's record
id is its workflow's partition (the submission position, inverted: newest first)
then the page's number, all digits, so:

* one workflow's tasks are one range of record ids, and every task, newest
  workflow first, is a forward walk of ``task_page`` from any point: lists need no
  index, and a page of the list reads one or two records;
* a task id made by :mod:`orchestrator.ids` names its page; any other id (a
  single-purpose workflow's, whose task id is the workflow id, or one from before
  pages) is found through its workflow or a ``task_ref`` row.

Beside the rows, each page keeps what queries filter on: ``n`` rows, ``counts`` by
status, ``open`` (rows not in a final status), ``statuses`` and ``workflow_id``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

from surrealdb import RecordID

from orchestrator.ids import locate
from orchestrator.states import FINAL_TASK
from shared.store.keyset import KEY, Page, decode_cursor, part
from shared.store.pages import PagedTable, page_rows
from shared.store.store import Store

PAGE_SIZE = 100
TASK_PAGES = "task_page"
TASK_REFS = "task_ref"  # tasks whose id does not name their page (from before pages)
LEGACY_TASKS = "task"  # the table task rows had before pages (converted at start)
_WIDTH = 19  # digits of one key position (shared/store/keyset.py)
_FINAL = frozenset(str(s) for s in FINAL_TASK)
_BOUND = re.compile(r"[0-9]{1,40}~?")
_STATUS = re.compile(r"[A-Za-z]{1,32}")
_TASK_KEY = re.compile(r"[0-9]{38}\..{1,64}")  # a task's list key: positions, then its id


def partition(submitted_seq: int) -> str:
    """The key prefix of a workflow and of all its tasks: its submission's position."""
    return part(submitted_seq, descending=True)


def page_id(submitted_seq: int, index: int) -> str:
    """The page holding the ``index``-th task of the workflow submitted at ``submitted_seq``."""
    return partition(submitted_seq) + part(index // PAGE_SIZE)


def page_of_key(key: str) -> str:
    """The page of the task whose list key (``lk``) is ``key``."""
    return key[:_WIDTH] + part(int(key[_WIDTH : 2 * _WIDTH]) // PAGE_SIZE)


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    counts = Counter(str(r.get("status")) for r in rows)
    return {
        "workflow_id": rows[0].get("workflow_id") if rows else None,
        "n": len(rows),
        "counts": dict(counts),
        "open": sum(n for status, n in counts.items() if status not in _FINAL),
        "statuses": sorted(counts),
    }


PAGES = PagedTable(TASK_PAGES, summarise)


def between(low: str, high: str | None = None) -> str:
    """A range of page record ids as SurrealQL (ranges take no parameters: the bounds
    are digits this module made, checked before they are pasted)."""
    for bound in (low, high):
        if bound is not None and not _BOUND.fullmatch(bound):
            raise ValueError(f"not a page bound: {bound!r}")
    upper = "" if high is None else f"⟨{high}⟩"
    return f"{TASK_PAGES}:⟨{low}⟩..{upper}"


def of_workflow(submitted_seq: int) -> str:
    """Every page of one workflow, as a SurrealQL range."""
    prefix = partition(submitted_seq)
    return between(prefix, prefix + "~")


class TaskPages:
    """Reads of task rows from their pages (the writer owns every write)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        store.register_pages(PAGES)

    async def of_workflows(self, seqs: Iterable[int]) -> list[dict[str, Any]]:
        """Every task row of these workflows (by submission position), each
        workflow's in index order, workflows in the order given."""
        ranges = [of_workflow(seq) for seq in dict.fromkeys(seqs)]
        if not ranges:
            return []
        records = await self.store.query(f"SELECT id, rows FROM {', '.join(ranges)}")
        return [row for record in records for row in page_rows(record)]

    async def find(self, task_ids: list[str]) -> list[dict[str, Any]]:
        """The rows of these tasks that exist, in the order asked."""
        wanted = dict.fromkeys(task_ids)
        pages: dict[str, None] = {}
        unplaced = []
        for tid in wanted:
            where = locate(tid)
            if where is None:
                unplaced.append(tid)
            else:
                pages[page_id(*where)] = None
        if unplaced:
            for page in await self._placed_elsewhere(unplaced):
                pages[page] = None
        if not pages:
            return []
        records = await self.store.query(
            "SELECT id, rows FROM $ids", {"ids": [RecordID(TASK_PAGES, p) for p in pages]}
        )
        found = {str(row["id"]): row for record in records for row in page_rows(record)}
        return [found[tid] for tid in wanted if tid in found]

    async def _placed_elsewhere(self, task_ids: list[str]) -> list[str]:
        """Pages of tasks whose id does not name them: a single-purpose workflow's one
        task (its id is the workflow's), or a ``task_ref`` kept from before pages."""
        rows = await self.store.query(
            "RETURN array::concat("
            "(SELECT VALUE submitted_seq FROM $workflows WHERE operation_count = 1), "
            "(SELECT VALUE page FROM $refs))",
            {
                "workflows": [RecordID("workflow", t) for t in task_ids],
                "refs": [RecordID(TASK_REFS, t) for t in task_ids],
            },
        )
        pages = []
        for value in rows:
            if isinstance(value, int):
                pages.append(page_id(value, 0))
            elif isinstance(value, str) and _BOUND.fullmatch(value):
                pages.append(value)
        return pages

    async def page(
        self,
        prefix: str,
        *,
        limit: int,
        offset: int,
        cursor: str | None,
        status: str | None,
        scan_budget: int,
    ) -> Page:
        """A page of the task list (newest workflow first, each in index order) within
        ``prefix`` (a workflow's partition, or ``""`` for all), after ``cursor``,
        skipping ``offset``, at most ``limit`` rows; with ``status``, only pages that
        hold it are decoded and at most ``scan_budget`` rows' pages walked."""
        after = None if cursor is None else decode_cursor(cursor, _TASK_KEY)
        start = prefix
        if after is not None and after >= prefix:
            start = page_of_key(after)
        high = prefix + "~" if prefix else None
        if status is not None and not _STATUS.fullmatch(status):
            return Page([], None)
        wanted = offset + limit + 1
        rows: list[dict[str, Any]] = []
        walked = 0
        budget_pages = max(1, (offset + scan_budget) // PAGE_SIZE + 1)
        low = start or "0"  # every page id is digits
        while True:
            # As many pages as the rows wanted fill when whole (a cursor mid-page: one more turn).
            batch = min(50, -(-wanted // PAGE_SIZE)) if status is None else budget_pages - walked
            # A filtered walk decodes only the pages that hold the status.
            rows_if = "(IF $status = NONE OR statuses CONTAINS $status { rows }) AS rows"
            records = await self.store.query(
                f"SELECT id, n, statuses, {rows_if} FROM {between(low, high)} LIMIT $n",
                {"status": status, "n": batch},
            )
            for record in records:
                for row in page_rows(record):
                    key = str(row.get(KEY) or "")
                    if after is not None and key <= after:
                        continue
                    if status is not None and row.get("status") != status:
                        continue
                    rows.append(row)
            walked += len(records)
            done = len(records) < batch  # the range ended
            if len(rows) >= wanted or done or (status is not None and walked >= budget_pages):
                break
            low = str(records[-1]["id"]) + "0"  # the next page id after the last one read
        rows = rows[offset:]
        if len(rows) > limit:
            return Page(rows[:limit], str(rows[limit - 1][KEY]))
        if status is not None and not done and records:
            # The walk stopped at its budget, not at the end: continue after its last page.
            return Page(rows, end_of_page(str(records[-1]["id"])))
        return Page(rows, None)

    async def rolling_back(self) -> list[dict[str, Any]]:
        """Task rows left RollingBack (a walk of every page that holds one: start-up only,
        and only when the counters say there is any)."""
        records = await self.store.query(
            f"SELECT id, rows FROM {TASK_PAGES} WHERE statuses CONTAINS 'RollingBack'"
        )
        return [row for record in records for row in page_rows(record) if row.get("status") == "RollingBack"]


def end_of_page(page: str) -> str:
    """A list key after every row of ``page`` and before the next page's (a cursor)."""
    last = int(page[_WIDTH:]) * PAGE_SIZE + PAGE_SIZE - 1
    return page[:_WIDTH] + part(last) + ".~"
