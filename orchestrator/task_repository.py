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

import io
import re
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

import cbor2
from surrealdb import RecordID

from orchestrator.ids import locate
from orchestrator.states import FINAL_TASK
from shared.store.keyset import KEY, Page, decode_cursor, part
from shared.store.pages import ROWS, PagedTable, page_rows
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
_MAX_PAGES = 50  # pages one turn of a list reads at most


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
        return [row for record in await self.records_of(seqs) for row in page_rows(record)]

    async def records_of(self, seqs: Iterable[int]) -> list[dict[str, Any]]:
        """The page records of these workflows (``id`` and the ``rows`` blob, not
        decoded), in order: :meth:`of_workflows` decodes them."""
        ranges = [of_workflow(seq) for seq in dict.fromkeys(seqs)]
        if not ranges:
            return []
        records: list[dict[str, Any]] = await self.store.query(f"SELECT id, {ROWS} FROM {', '.join(ranges)}")
        return records

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
        found = {str(row["id"]): row for row in await self.by_ids(list(pages))}
        return [found[tid] for tid in wanted if tid in found]

    async def by_ids(self, pages: list[str]) -> list[dict[str, Any]]:
        """The rows of these pages (by page id) that exist, page by page in the order given."""
        if not pages:
            return []
        records = await self.store.query(
            "SELECT id, rows FROM $ids", {"ids": [RecordID(TASK_PAGES, p) for p in pages]}
        )
        return [row for record in records for row in page_rows(record)]

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
        counter: RecordID | None = None,
        dense: int | None = None,
    ) -> tuple[Page, dict[str, Any] | None]:
        """A page of the task list (newest workflow first, each in index order) within
        ``prefix`` (a workflow's partition, or ``""`` for all), after ``cursor``,
        skipping ``offset``, at most ``limit`` rows; with ``status``, only pages that
        hold it are decoded and at most ``scan_budget`` rows' pages walked. With
        ``counter``, that row is read in the same round trip (the list's total).

        ``dense``: the workflow ``prefix`` names holds exactly this many rows, indexes
        ``0..dense-1`` (none pruned), so the pages wanted are known by number: an offset
        or a cursor starts at its own page and the range ends at the last page wanted (the
        engine reads a whole scan step however small the ``LIMIT``: fifty pages of a
        5,000-operation workflow to return one).

        Each turn is one range read of as many pages as the rows still wanted fill when
        whole (from where a cursor points in its page), doubling when pages turn out
        shorter (single-operation workflows). Rows are decoded only up to the last one
        returned."""
        after = None if cursor is None else decode_cursor(cursor, _TASK_KEY)
        if status is not None and not _STATUS.fullmatch(status):
            return Page([], None), None
        wanted = offset + limit + 1
        low = prefix or "0"  # every page id is digits
        position = 0  # where the first row wanted is in its page (a guess without a cursor)
        if after is not None and after >= prefix:
            low = page_of_key(after)
            position = int(after[_WIDTH : 2 * _WIDTH]) % PAGE_SIZE + 1
        skip = 0  # rows of a dense workflow before ``low``, not read
        bounded = dense is not None and bool(prefix) and status is None
        last_page = prefix + part(max(0, (dense or 0) - 1) // PAGE_SIZE)
        if bounded and (after is None or after < prefix):  # (a cursor before it: the whole of it)
            skip = offset - offset % PAGE_SIZE
            low, position = prefix + part(offset // PAGE_SIZE), offset % PAGE_SIZE
        rows: list[dict[str, Any]] = []
        budget_pages = max(1, (offset + scan_budget) // PAGE_SIZE + 1)
        batch = min(_MAX_PAGES, -(-(position + wanted - skip) // PAGE_SIZE))
        walked, done, last = 0, False, None
        extra = "" if counter is None else "; SELECT * FROM $counter"
        counted: dict[str, Any] | None = None
        while True:
            if status is not None:
                batch = budget_pages - walked
            high = prefix + "~" if prefix else None
            if bounded:
                # Up to that page, inclusive (after a cursor past the workflow's end, a
                # range that ends before it starts: empty).
                high = min(last_page, _plus_pages(low, batch - 1)) + "~"
            # A filtered walk reads the rows only of the pages that hold the status.
            rows_of = "rows" if status is None else "(IF statuses CONTAINS $status { rows }) AS rows"
            results = await self.store.query_each(
                f"SELECT id, n, {rows_of} FROM {between(low, high)} LIMIT $n{extra}",
                {"status": status, "n": batch, "counter": counter},
            )
            records = results[0] or []
            if extra:
                counted, extra = (results[1] or [None])[0], ""
            for record in records:
                for row in _rows(record):
                    key = str(row.get(KEY) or "")
                    if after is not None and key <= after:
                        continue
                    if status is not None and row.get("status") != status:
                        continue
                    rows.append(row)
                    if len(rows) + skip >= wanted:
                        break
                if len(rows) + skip >= wanted:
                    break
            walked += len(records)
            if records:
                last = str(records[-1]["id"])
            if bounded and high is not None:
                done = high[:-1] == last_page
                low = _plus_pages(high[:-1], 1)  # go on after the turn's last page
            else:
                done = len(records) < batch  # the range ended
                low = (last or low) + "0"  # the next page id after the last one read
            if len(rows) + skip >= wanted or done or (status is not None and walked >= budget_pages):
                break
            batch = min(_MAX_PAGES, batch * 2)
        rows = rows[offset - skip :]
        if len(rows) > limit:
            return Page(rows[:limit], str(rows[limit - 1][KEY])), counted
        if status is not None and not done and last is not None:
            # The walk stopped at its budget, not at the end: continue after its last page.
            return Page(rows, end_of_page(last)), counted
        return Page(rows, None), counted

    async def rolling_back(self) -> list[dict[str, Any]]:
        """Task rows left RollingBack (a walk of every page that holds one: start-up only,
        and only when the counters say there is any)."""
        records = await self.store.query(
            f"SELECT id, rows FROM {TASK_PAGES} WHERE statuses CONTAINS 'RollingBack'"
        )
        return [row for record in records for row in page_rows(record) if row.get("status") == "RollingBack"]


def _plus_pages(page: str, n: int) -> str:
    """The id of the page ``n`` pages after ``page`` (a page id) in the same workflow."""
    return page[:_WIDTH] + part(int(page[_WIDTH : 2 * _WIDTH]) + n)


def _rows(record: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """A page record's rows, decoded one at a time (a list takes what it returns and
    stops: half a page decoded costs half). The blob is :func:`shared.store.codec.pack`'s:
    deflated CBOR, one array of rows."""
    blob = record.get(ROWS)
    if not isinstance(blob, bytes) or not blob:
        return
    raw = zlib.decompress(blob) if blob[:1] == b"\x78" else blob
    head = raw[0]
    if head >> 5 != 4 or head & 0x1F > 27:  # not a definite-length array: decode it whole
        yield from page_rows(record)
        return
    size = head & 0x1F
    width = 0 if size < 24 else 1 << (size - 24)  # bytes of the length after the head
    count = int.from_bytes(raw[1 : 1 + width]) if width else size
    stream = io.BytesIO(raw)
    stream.seek(1 + width)
    decoder = cbor2.CBORDecoder(stream)
    for _ in range(count):
        yield decoder.decode()


def end_of_page(page: str) -> str:
    """A list key after every row of ``page`` and before the next page's (a cursor)."""
    last = int(page[_WIDTH:]) * PAGE_SIZE + PAGE_SIZE - 1
    return page[:_WIDTH] + part(last) + ".~"
