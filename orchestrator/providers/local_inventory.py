"""What the ``local`` provider knows of its inventory, held in memory.

Each operation of the simulated cloud records what stood at its keys before it
changed them, so that a rollback can put that back. Reading it from the store
cost every operation a round trip (shared by the operations of one loop turn,
still ~100 queries and ~60 more commits per 5,000 operations, and the event loop
idle meanwhile). The view holds the rows instead:

* **Loaded on first use**, through the store's write queue: the read is ordered
  after every write queued before it, so it sees them all.
* **Kept exact**: the provider records what it writes (:meth:`InventoryView.wrote`)
  in the same turn of the event loop in which the engine queues those writes (apply
  and rollback return them, and the engine queues the outcome's transition with
  them before it next yields). So the view is always the stored inventory plus the
  writes still queued, in their commit order, and a read never sees less.
* **Bounded**: up to ``limit`` rows (``PROVISIONING_LOCAL_INVENTORY_CACHE``). A
  larger inventory is held in part, least recently used dropped first, and the
  keys it does not hold are read, also through the write queue, by the operations
  of one loop turn together; a key written while that read was in flight keeps the
  value written.
* **Correct after a restart**: it is memory only, loaded from the store, whose
  inventory rows are committed with the transitions they belong to.

If a commit holding an operation's inventory writes fails (the store refused it),
the view still holds what that operation wrote: the next operation on that key
records it as what stood before. Writes are puts (replace or delete), so that
never makes a later write fail.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from orchestrator.repository import InventoryRepository

Row = dict[str, Any]


def _strip(row: Row) -> Row:
    """An inventory row without its id, fit to be written back."""
    return {k: v for k, v in row.items() if k != "id"}


class InventoryView:
    """The inventory rows by key (``<kind>/<name>``), ``None`` for a key known absent."""

    def __init__(self, repo: InventoryRepository, limit: int) -> None:
        self.repo = repo
        self.limit = max(1, limit)
        self._rows: OrderedDict[str, Row | None] = OrderedDict()
        self.complete = False  # every stored row is held: a key not held is absent
        self._loading: asyncio.Task[None] | None = None
        self._loaded = False
        # Reads of keys not held, asked for in one turn of the loop, share one query.
        self._wanted: list[tuple[list[str], asyncio.Future[dict[str, Row | None]]]] = []
        self._reading: asyncio.Task[None] | None = None
        self._written_since: list[set[str]] = []  # per read in flight: keys written since it was queued
        self.reads = 0  # store round trips made (the load included): for tests and benchmarks

    @property
    def held(self) -> int:
        return len(self._rows)

    async def standing(self, keys: list[str]) -> dict[str, Row | None]:
        """What stands at each of ``keys`` now (``None``: nothing), writes still queued
        included."""
        if not self._loaded:
            await self._load()
        read: dict[str, Row | None] = {}
        if not self.complete:
            missing = [k for k in dict.fromkeys(keys) if k not in self._rows]
            if missing:
                read = await self._read(missing)
        out: dict[str, Row | None] = {}
        for key in keys:
            if key in self._rows:
                if not self.complete:
                    self._rows.move_to_end(key)
                out[key] = self._rows[key]
            else:
                out[key] = read.get(key)
        return out

    def wrote(self, changes: Mapping[str, Row | None]) -> None:
        """Record writes handed to the engine now (``None``: the key was removed)."""
        if not self._loaded:
            return  # the load, queued after these writes, will see them
        for reads in self._written_since:
            reads.update(changes)
        for key, row in changes.items():
            if row is None and self.complete:
                self._rows.pop(key, None)  # everything is held: what is not held is absent
            else:
                self._rows[key] = row
                self._rows.move_to_end(key)
        self._trim()

    def removed_made_by(self, task_id: str) -> None:
        """Record the removal of every row one task made (a rollback of an operation
        applied before rows recorded what stood before them)."""
        if not self._loaded:
            return
        gone = [k for k, row in self._rows.items() if row is not None and row.get("task_id") == task_id]
        self.wrote(dict.fromkeys(gone))  # rows not held are read after the removal

    # -- reading the store -------------------------------------------------------------

    async def _load(self) -> None:
        if self._loading is None:
            self._loading = asyncio.create_task(self._load_rows())
        task = self._loading
        try:
            await asyncio.shield(task)
        except Exception:
            if self._loading is task:
                self._loading = None  # the next operation tries again
            raise

    async def _load_rows(self) -> None:
        rows = await self.repo.first_rows(self.limit + 1)
        self.reads += 1
        self.complete = len(rows) <= self.limit
        self._rows = OrderedDict((str(r["id"]), _strip(r)) for r in rows[: self.limit])
        self._loaded = True

    async def _read(self, keys: list[str]) -> dict[str, Row | None]:
        future: asyncio.Future[dict[str, Row | None]] = asyncio.get_running_loop().create_future()
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
            rows = await self.repo.by_keys(keys)
        except Exception as exc:
            for _, future in wanted:
                if not future.done():
                    future.set_exception(exc)
            return
        finally:
            self._written_since.remove(written)
        self.reads += 1
        found: dict[str, Row | None] = {str(r["id"]): _strip(r) for r in rows}
        for key in keys:
            if key in written:  # a write since the read was queued is newer
                found[key] = self._rows.get(key)
            else:
                found.setdefault(key, None)
                self._rows[key] = found[key]
                self._rows.move_to_end(key)
        self._trim()
        for ks, future in wanted:
            if not future.done():  # an operation cancelled meanwhile no longer waits
                future.set_result({k: found[k] for k in ks})

    def _trim(self) -> None:
        if len(self._rows) <= self.limit:
            return
        self.complete = False
        while len(self._rows) > self.limit:
            self._rows.popitem(last=False)
