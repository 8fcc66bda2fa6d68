"""What the ``local`` provider knows of its inventory, held in memory.

Each operation of the simulated cloud records what stood at its keys before it
changed them, so that a rollback can put that back. Reading that from the store
cost every operation a round trip (shared by the operations of one loop turn,
still ~100 queries and ~60 more commits per 5,000 operations, the event loop idle
meanwhile), and writing one record per resource cost the embedded engine ~100 µs
each. The view holds the inventory instead, and places its rows in pages
(``orchestrator/inventory_repository.py``):

* **Loaded on first use**, through the store's write queue: the read is ordered
  after every write queued before it, so it sees them all. Resources still stored
  one per record (before pages) are moved into pages then.
* **Kept exact**: every write of the provider is made here (:meth:`InventoryView.writes`)
  in the same turn of the event loop in which the engine queues it (apply and
  rollback return their writes, and the engine queues them with the outcome's
  transition before it next yields). So the view is always the stored inventory
  plus the writes still queued, in their commit order.
* **Bounded**: the page of every key is known; the rows themselves are held up to
  ``limit`` (``PROVISIONING_LOCAL_INVENTORY_CACHE``), least recently used dropped
  first. A row not held is read from its page, also through the write queue, by
  the operations of one loop turn together; a key written while that read was in
  flight keeps the value written.
* **Correct after a restart**: it is memory only, loaded from the store, whose
  pages are committed with the transitions they belong to.

New keys fill the lowest page with room, so the resources of operations that finish
together share a page. If a commit holding an operation's writes fails (the store
refused it), the view still holds what that operation wrote: the next operation on
that key records it as what stood before, and writes it to the same page, so a write
never fails because of it.
"""

from __future__ import annotations

import asyncio
import heapq
from collections import Counter, OrderedDict
from collections.abc import Mapping
from typing import Any

from orchestrator.inventory_repository import COUNTED, COUNTS, InventoryRepository, counted, kind_of
from shared.store.counters import TOTAL
from shared.store.pages import page_rows
from shared.store.writes import Count, Write

Row = dict[str, Any]
PAGE_ROWS = 100  # resources per page
_MOVE_CHUNK = 1_000  # resources stored one per record, moved into pages per commit
_LOAD_PAGES_PER_TURN = 20  # pages decoded per event-loop turn while loading


def _strip(row: Row) -> Row:
    """An inventory row without its id, fit to be written back."""
    return {k: v for k, v in row.items() if k != "id"}


def _page_name(number: int) -> str:
    return f"{number:010d}"


class InventoryView:
    """The inventory by key (``<kind>/<name>``): the page of each, and rows up to a bound."""

    def __init__(self, repo: InventoryRepository, limit: int) -> None:
        self.repo = repo
        self.limit = max(1, limit)
        self._page_of: dict[str, str] = {}  # every key seen, present or removed: its page
        self._present: set[str] = set()
        self._rows: OrderedDict[str, Row] = OrderedDict()  # rows held, least recently used first
        self._count: Counter[str] = Counter()  # present rows by page
        self._room: list[int] = []  # every page with room, and some that filled since (checked when taken)
        self._next_page = 0
        self._loading: asyncio.Task[None] | None = None
        self._paged = False  # the pages are read: writes can be placed
        self._loaded = False  # and the resources stored one per record moved into them
        # Reads of rows not held, asked for in one turn of the loop, share one query.
        self._wanted: list[tuple[list[str], asyncio.Future[dict[str, Row]]]] = []
        self._reading: asyncio.Task[None] | None = None
        self._written_since: list[set[str]] = []  # per read in flight: keys written since it was queued
        self.reads = 0  # store round trips made (the load included): for tests and benchmarks

    @property
    def held(self) -> int:
        return len(self._rows)

    async def load(self) -> None:
        """Load the view if it is not yet (once; a failed load is tried again)."""
        if self._loaded:
            return
        if self._loading is None:
            self._loading = asyncio.create_task(self._load())
        task = self._loading
        try:
            await asyncio.shield(task)
        except Exception:
            if self._loading is task:
                self._loading = None
            raise

    def known(self, keys: list[str]) -> dict[str, Row | None] | None:
        """What stands at each of ``keys`` if the view knows it without a read (it is
        loaded and holds every row of them that stands), else ``None``:
        :meth:`standing` then."""
        if not self._loaded:
            return None
        rows, present = self._rows, self._present
        out: dict[str, Row | None] = {}
        for key in keys:
            if key in rows:
                rows.move_to_end(key)
                out[key] = rows[key]
            elif key in present:
                return None
            else:
                out[key] = None
        return out

    async def standing(self, keys: list[str]) -> dict[str, Row | None]:
        """What stands at each of ``keys`` now (``None``: nothing), writes still queued
        included."""
        await self.load()
        if all(k in self._rows or k not in self._present for k in keys):
            read: dict[str, Row] = {}
        else:  # the rows held now are answered with the read, which may push them out
            read = await self._read([k for k in dict.fromkeys(keys) if k in self._present])
        out: dict[str, Row | None] = {}
        for key in keys:  # a key written while the read was in flight: as written
            if key not in self._present:
                out[key] = None
            elif key in self._rows:
                self._rows.move_to_end(key)
                out[key] = self._rows[key]
            else:
                out[key] = read.get(key)
        return out

    async def made_by(self, task_id: str) -> list[str]:
        """The keys of the resources one task made (that still stand)."""
        await self.load()
        if len(self._rows) == len(self._present):
            return [k for k, row in self._rows.items() if row.get("task_id") == task_id]
        pages = await self.repo.pages()
        self.reads += 1
        return [str(r["id"]) for rows in pages.values() for r in rows if r.get("task_id") == task_id]

    def writes(self, changes: Mapping[str, Row | None]) -> list[Write]:
        """The writes that make ``changes`` (``None``: remove the key), recorded here as
        the engine queues them; the view must be loaded."""
        if not self._paged:
            raise RuntimeError("the inventory view is not loaded")
        for reads in self._written_since:
            reads.update(changes)
        out: list[Write] = []
        for key, row in changes.items():
            page = self._page_of.get(key)
            if row is None:
                self._rows.pop(key, None)
                if key in self._present:
                    self._present.discard(key)
                    out.extend(counted(key, -1))  # the list's total, in the same commit
                    self._count[str(page)] -= 1
                    if self._count[str(page)] == PAGE_ROWS - 1:  # it was full: it has room again
                        heapq.heappush(self._room, int(str(page)))
                if page is not None:  # removed where it stood (or, after a failed commit, may stand)
                    out.append(InventoryRepository.write(page, key, None))
                continue
            fresh = False
            if page is None:
                page, fresh = self._allocate()
                self._page_of[key] = page
            if key not in self._present:
                self._present.add(key)
                out.extend(counted(key, 1))
                self._count[page] += 1
            self._hold(key, row)
            out.append(InventoryRepository.write(page, key, row, fresh=fresh))
        return out

    # -- pages ---------------------------------------------------------------------------

    def _allocate(self) -> tuple[str, bool]:
        """The page for a new key: the lowest with room; and whether it is a new page
        (never written: the store's writer need not read it before its first write)."""
        while self._room and self._count[_page_name(self._room[0])] >= PAGE_ROWS:
            heapq.heappop(self._room)
        if self._room:
            return _page_name(self._room[0]), False
        heapq.heappush(self._room, self._next_page)
        self._next_page += 1
        return _page_name(self._room[0]), True

    def _place(self, page: str, row: Row) -> None:
        key = str(row["id"])
        self._page_of[key] = page
        self._present.add(key)
        self._count[page] += 1
        if len(self._rows) < self.limit:
            self._rows[key] = _strip(row)

    def _hold(self, key: str, row: Row) -> None:
        self._rows[key] = row
        self._rows.move_to_end(key)
        while len(self._rows) > self.limit:
            self._rows.popitem(last=False)

    # -- reading the store -------------------------------------------------------------

    async def _load(self) -> None:
        pages, stored = await self.repo.everything()
        self.reads += 1
        # From nothing: a load that failed (moving old rows, say) may have placed some.
        self._page_of, self._present, self._rows, self._count = {}, set(), OrderedDict(), Counter()
        self._paged = False
        for i, (page, record) in enumerate(pages.items()):
            if i and not i % _LOAD_PAGES_PER_TURN:
                await asyncio.sleep(0)  # a big inventory is decoded without stalling the loop
            for row in page_rows(record):
                self._place(page, row)
        numbers = [int(p) for p in pages if p.isdigit()]
        self._next_page = max(numbers, default=-1) + 1
        self._room = [n for n in numbers if self._count[_page_name(n)] < PAGE_ROWS]
        heapq.heapify(self._room)
        await self._count_right(stored)
        self._paged = True
        await self._move_legacy()
        self._loaded = True

    async def _count_right(self, stored: dict[str, int]) -> None:
        """Set the list's counter (``counter:inventory``) to what the pages hold, if it
        is not (pages written before it was kept, a commit the store refused). No write of
        the view can be queued before the load ends, so the deltas are exact."""
        right: Counter[str] = Counter({TOTAL: len(self._present), COUNTED: 1})
        right.update(kind for key in self._present if (kind := kind_of(key)) is not None)
        fields = set(right) | set(stored)
        fixes = [
            Count(COUNTS, f, right[f] - stored.get(f, 0))
            for f in sorted(fields)
            if right[f] != stored.get(f, 0)
        ]
        if fixes:
            await self.repo.store.write(*fixes)

    async def _move_legacy(self) -> None:
        """Move resources stored one per record into pages, a chunk per commit."""
        while legacy := await self.repo.legacy_rows(_MOVE_CHUNK):
            self.reads += 1
            changes = {str(r["id"]): _strip(r) for r in legacy}
            await self.repo.store.write(*self.writes(changes), InventoryRepository.drop_legacy(list(changes)))

    async def _read(self, keys: list[str]) -> dict[str, Row]:
        future: asyncio.Future[dict[str, Row]] = asyncio.get_running_loop().create_future()
        self._wanted.append((keys, future))
        if self._reading is None:
            self._reading = asyncio.create_task(self._read_wanted())
        return await future

    async def _read_wanted(self) -> None:
        await asyncio.sleep(0)  # let the others of this turn ask too
        wanted, self._wanted, self._reading = self._wanted, [], None
        keys = list(dict.fromkeys(k for ks, _ in wanted for k in ks))
        written: set[str] = set()
        self._written_since.append(written)
        try:
            held = {k: self._rows[k] for k in keys if k in self._rows}
            pages = await self.repo.pages(sorted({self._page_of[k] for k in keys if k not in held}))
        except Exception as exc:
            for _, future in wanted:
                if not future.done():
                    future.set_exception(exc)
            return
        finally:
            self._written_since.remove(written)
        self.reads += 1
        stored = {str(r["id"]): _strip(r) for rows in pages.values() for r in rows}
        found: dict[str, Row] = {}
        for key in keys:  # as written since the read was queued, else as held or read then
            row = self._rows.get(key) if key in written else stored.get(key, held.get(key))
            if row is not None:
                found[key] = row
        for key in keys:
            if key in stored and key not in written:
                self._hold(key, stored[key])
        for ks, future in wanted:
            if not future.done():  # an operation cancelled meanwhile no longer waits
                future.set_result({k: found[k] for k in ks if k in found})
