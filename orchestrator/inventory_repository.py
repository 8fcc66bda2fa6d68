"""Where the ``local`` provider's simulated cloud is stored: its rows in pages.

A resource is one row ``{id: "<kind>/<name>", kind, name, provider, attributes,
task_id, workflow_id, state, simulated, updated_at}``. Rows live many to a record of
``inventory_page`` (``shared/store/pages.py`` says why): writing a record costs
the embedded engine ~100 µs whatever it holds, so one record per resource cost the
provider more than the rest of an operation together. Which page holds a key is
the provider's choice (``orchestrator/providers/local_inventory.py``: new keys fill
the lowest page with room, so the resources of operations finishing together share
a page and a commit rewrites one or two pages). A page's changes are
:class:`~shared.store.writes.Paged` writes, committed with the operation's
outcome; a removed row is written as a marker the page drops when it is encoded.

Before pages each resource was a record of ``inventory``; the provider moves
those into pages when it first loads (``InventoryView``), and until then the list
(:meth:`InventoryRepository.listing`) shows them after the paged ones.

**The list** (``GET /state/inventory``) is a forward walk of page record ids: pages
in the order they were allocated, each page's rows by key. A resource stays in its
page while it stands (an update rewrites it there), so a walk with a cursor never
skips or repeats a resource that stood throughout; one made meanwhile may land in
a page the walk has passed (a page with room) and then shows on the next walk.
It is *not* alphabetical across pages: that would need an index or a sort of every
key, which is what the list must never pay for.

**The total** is ``counter:inventory`` (``shared/store/counters.py``): ``n`` and one
field per kind, moved by the view's writes in the same commit as the rows, and set
right by the view's load (``counted`` marks a counter a load has checked). A filter
by provider or workflow has no counter (the view would have to hold every row's
provider and workflow to move one when a row is replaced or removed), so it answers
no total. Every filtered walk (kind too) reads at most the store's
``list_scan_budget`` rows' worth of pages per page of the list, as ``/tasks``
filtered by status does; pages whose summary (``kinds``, ``providers``) lacks
what is asked for are not decoded.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from surrealdb import RecordID

from shared.store.counters import COUNTER_TABLE, TOTAL, counts_of
from shared.store.keyset import Page, PageFilter, decode_cursor
from shared.store.pages import Codes, PagedTable, page_rows
from shared.store.store import Store
from shared.store.writes import Count, Paged, Stmt, Write

INVENTORY_PAGES = "inventory_page"
LEGACY_INVENTORY = "inventory"  # one record per resource, before pages
REMOVED = "_removed"  # a row written with this field set is dropped from its page
COUNTS = "inventory"  # counter:inventory: ``n``, one field per kind, ``counted``
COUNTED = "counted"  # 1 once a load of the view has checked the counter
_PAGE = re.compile(r"[0-9]{10}")
_KIND = re.compile(r"[a-z][a-z0-9_]{0,31}")  # a kind counted in a field of its own
# A list key: ``P<page>.<key>`` in a page, ``L.<key>`` in the table of before pages,
# ``P<page>~`` after the whole page; ``<key>`` is the resource's key in hex (UTF-8),
# or its first _KEY_BYTES bytes and a hash when it is longer (names have no bound).
PAGE_SIZE = 100  # rows a page holds at most (the view fills them: providers/local_inventory.py)
_LIST_KEY = re.compile(r"(P[0-9]{10}|L)\.([0-9a-f]{2}){1,180}(-[0-9a-f]{16})?|P[0-9]{10}~")
_KEY_BYTES = 160
_MAX_PAGES = 50  # pages one turn of a list reads at most
_SKIP_PAGES = 500  # pages an offset skips per round trip (their ``n`` only)


def _summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """What a filtered list skips pages by: the kinds and providers a page holds."""
    return {
        "n": len(rows),
        "kinds": sorted({str(r.get("kind")) for r in rows}),
        "providers": sorted({str(r.get("provider")) for r in rows}),
    }


@dataclass(frozen=True)
class _InventoryPages(PagedTable):
    """Pages of resources, by key; rows marked :data:`REMOVED` are left out."""

    def record(
        self, rows: dict[str, dict[str, Any]], known: Codes | None = None
    ) -> tuple[dict[str, Any], Codes]:
        return super().record({k: r for k, r in rows.items() if not r.get(REMOVED)}, known)


PAGES = _InventoryPages(INVENTORY_PAGES, _summarise, order="id")


def _key_order(row: dict[str, Any]) -> tuple[str, str]:
    return (str(row.get("kind") or ""), str(row.get("name") or ""))


def kind_of(key: str) -> str | None:
    """The kind a resource key names (``<kind>/<name>``) if it is one counted by kind."""
    kind = key.split("/", 1)[0]
    return kind if _KIND.fullmatch(kind) and kind not in (TOTAL, COUNTED) else None


def counted(key: str, delta: int) -> list[Write]:
    """The counter deltas of the resource ``key`` appearing (``1``) or going (``-1``)."""
    kind = kind_of(key)
    out: list[Write] = [Count(COUNTS, TOTAL, delta)]
    if kind is not None:
        out.append(Count(COUNTS, kind, delta))
    return out


def _tail(key: str) -> str:
    """A resource key as a list key holds it (hex of its UTF-8, which sorts as the key)."""
    raw = key.encode()
    if len(raw) <= _KEY_BYTES:
        return raw.hex()
    head = raw[:_KEY_BYTES].decode(errors="ignore").encode()  # whole characters
    return f"{head.hex()}-{hashlib.sha256(raw).hexdigest()[:16]}"


def _after(rows: list[dict[str, Any]], tail: str) -> Iterator[dict[str, Any]]:
    """The rows (in key order) after the one ``tail`` names. A key cut short names its
    row among those that share the cut by hash; if that row is gone, all of those are
    after it (a row may then show twice, never not at all)."""
    bound, _, digest = tail.partition("-")
    low = bytes.fromhex(bound)
    sharing: list[dict[str, Any]] = []
    for row in rows:
        raw = str(row.get("id")).encode()
        if digest and raw.startswith(low) and raw != low:
            sharing.append(row)
            continue
        if sharing:
            yield from _rest(sharing, digest)
            sharing = []
        if raw > low and not (digest and raw.startswith(low)):
            yield row
    yield from _rest(sharing, digest)


def _rest(sharing: list[dict[str, Any]], digest: str) -> list[dict[str, Any]]:
    for i, row in enumerate(sharing):
        if hashlib.sha256(str(row.get("id")).encode()).hexdigest()[:16] == digest:
            return sharing[i + 1 :]
    return sharing


def _matches(row: dict[str, Any], kind: str | None, provider: str | None, workflow_id: str | None) -> bool:
    return (
        (kind is None or row.get("kind") == kind)
        and (provider is None or row.get("provider") == provider)
        and (workflow_id is None or row.get("workflow_id") == workflow_id)
    )


class InventoryFilter(PageFilter, Protocol):
    """What a page of the inventory is asked for (``orchestrator.api.state.InventoryQuery``)."""

    @property
    def kind(self) -> str | None: ...
    @property
    def provider(self) -> str | None: ...
    @property
    def workflow_id(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Listed:
    """A page of the inventory list and how many match (``None``: not known without a scan)."""

    page: Page
    total: int | None


class InventoryRepository:
    """The ``local`` provider's simulated cloud: one row per resource, keyed ``<kind>/<name>``."""

    def __init__(self, store: Store) -> None:
        self.store = store

    @staticmethod
    def register(store: Store) -> None:
        """Declare the page table to the store's writer (before any write to it)."""
        store.register_pages(PAGES)

    async def all(self) -> list[dict[str, Any]]:
        """Every resource, by kind and name (a scan of everything: tests only)."""
        pages, legacy = await self.store.query_each(
            f"SELECT id, rows FROM {INVENTORY_PAGES}; SELECT * FROM {LEGACY_INVENTORY}"
        )
        rows = [row for record in pages or [] for row in page_rows(record)]
        rows.extend(legacy or [])
        return sorted(rows, key=_key_order)

    async def listing(self, query: InventoryFilter, scan_budget: int | None = None) -> Listed:
        """A page of the inventory (pages in order, each page's rows by key, then rows
        still stored one per record): after ``cursor`` (a 422 naming ``cursor`` if it is
        not one of this list's), skipping ``offset``, at most ``limit``, of the ``kind``,
        ``provider`` and ``workflow_id`` asked for (each ``None``: any).

        Each turn is one range read of as many pages as the rows still wanted fill when
        whole, doubling when they turn out emptier; the counter and whether rows from
        before pages remain are read in the first turn's round trip. With ``provider``
        or ``workflow_id`` or ``kind``, at most ``offset + scan_budget`` rows' worth of
        pages are walked (a shorter page may still have a next cursor); pages that hold
        no row of the kind or provider wanted are not decoded."""
        limit, offset, kind, provider, workflow_id = (
            query.limit,
            query.offset,
            query.kind,
            query.provider,
            query.workflow_id,
        )
        after = None if query.cursor is None else decode_cursor(query.cursor, _LIST_KEY)
        budget = self.store.list_scan_budget if scan_budget is None else scan_budget
        filtered = kind is not None or provider is not None or workflow_id is not None
        rows: list[tuple[str, dict[str, Any]]] = []  # (list key prefix, row)
        budget_pages = max(1, (offset + budget) // PAGE_SIZE + 1)
        low, tail = "0" * 10, ""
        if after is not None and after.startswith("P"):
            low, tail = after[1:11], after[11:]
        if after is None and not filtered and offset >= PAGE_SIZE:
            low, skipped = await self._skip(offset)
            offset -= skipped
        wanted = offset + limit + 1
        # Only the pages that hold the kind or provider asked for have their rows read.
        conditions = [
            f"{name} = NONE OR {name} CONTAINS ${name}"
            for name, value in (("kinds", kind), ("providers", provider))
            if value is not None
        ]
        rows_of = (
            f"(IF {' AND '.join(f'({c})' for c in conditions)} {{ rows }}) AS rows" if conditions else "rows"
        )
        extra = f"; SELECT * FROM {COUNTER_TABLE}:{COUNTS}; SELECT VALUE id FROM {LEGACY_INVENTORY} LIMIT 1"
        counter: dict[str, Any] | None = None
        legacy = False
        walked, done, last = 0, after is not None and after.startswith("L"), None
        batch = min(_MAX_PAGES, -(-wanted // PAGE_SIZE) + 1)
        while not done:
            if filtered:
                batch = min(batch, budget_pages - walked)
            results = await self.store.query_each(
                f"SELECT id, {rows_of} FROM {INVENTORY_PAGES}:⟨{_checked(low)}⟩.. LIMIT $n{extra}",
                {"n": batch, "kinds": kind, "providers": provider},
            )
            records = results[0] or []
            if extra:
                counter, legacy, extra = (results[1] or [None])[0], bool(results[2]), ""
            for record in records:
                page = _page_id(record)
                found = page_rows(record)
                if page == low and tail:  # the cursor's page: the rows after it
                    found = list(_after(found, tail[1:])) if tail != "~" else []
                rows.extend((f"P{page}", r) for r in found if _matches(r, kind, provider, workflow_id))
                last = page
                if len(rows) >= wanted:
                    break
            walked += len(records)
            done = len(records) < batch
            if len(rows) >= wanted or (filtered and walked >= budget_pages):
                break
            if last is not None:
                low, tail = f"{int(last) + 1:010d}", ""
            batch = min(_MAX_PAGES, batch * 2)
        if extra:  # the walk began in the rows of before pages: nothing read yet
            counter, legacy = await self._counter_and_legacy()
        if len(rows) < wanted and done and legacy:
            start = after[2:] if after is not None and after.startswith("L") else ""
            rows.extend(await self._legacy_page(start, wanted - len(rows), kind, provider, workflow_id))
        total = await self._total(counter, legacy, kind, provider is not None or workflow_id is not None)
        rows = rows[offset:]
        if len(rows) > limit:
            prefix, row = rows[limit - 1]
            return Listed(Page([r for _, r in rows[:limit]], f"{prefix}.{_tail(str(row['id']))}"), total)
        if filtered and not done and last is not None:  # stopped at its budget: go on after it
            return Listed(Page([r for _, r in rows], f"P{last}~"), total)
        return Listed(Page([r for _, r in rows], None), total)

    async def _skip(self, offset: int) -> tuple[str, int]:
        """The page an unfiltered ``offset`` lands in, and how many rows the pages before
        it hold: counted by their ``n``, their rows not decoded (a tenth of the cost)."""
        low, skipped = "0" * 10, 0
        while True:
            records = await self.store.query(
                f"SELECT id, n FROM {INVENTORY_PAGES}:⟨{_checked(low)}⟩.. LIMIT $n", {"n": _SKIP_PAGES}
            )
            for record in records:
                page = _page_id(record)
                n = int(record.get("n") or 0)
                if skipped + n > offset:
                    return page, skipped
                skipped += n
                low = f"{int(page) + 1:010d}"
            if len(records) < _SKIP_PAGES:
                return low, skipped

    async def _counter_and_legacy(self) -> tuple[dict[str, Any] | None, bool]:
        counter, legacy = await self.store.query_each(
            f"SELECT * FROM {COUNTER_TABLE}:{COUNTS}; SELECT VALUE id FROM {LEGACY_INVENTORY} LIMIT 1"
        )
        return (counter or [None])[0], bool(legacy)

    async def _legacy_page(
        self, start: str, n: int, kind: str | None, provider: str | None, workflow_id: str | None
    ) -> list[tuple[str, dict[str, Any]]]:
        """Rows still stored one per record, by key, after the list key's ``start``
        (``""``: from the first). They are few and never grow (the provider moves them
        into pages on its first operation): read in key order with a filter, no budget."""
        bound = bytes.fromhex(start.partition("-")[0]).decode(errors="replace") if start else None
        where = "" if bound is None else "WHERE id >= type::thing($table, $low) "
        found = await self.store.query(
            f"SELECT * FROM {LEGACY_INVENTORY} {where}ORDER BY id", {"table": LEGACY_INVENTORY, "low": bound}
        )
        rows = [{**r, "id": str(r["id"].id if isinstance(r["id"], RecordID) else r["id"])} for r in found]
        if start:
            rows = list(_after(rows, start))
        return [("L", r) for r in rows if _matches(r, kind, provider, workflow_id)][:n]

    async def _total(
        self, counter: dict[str, Any] | None, legacy: bool, kind: str | None, uncounted: bool
    ) -> int | None:
        """How many match, from the counter; ``None`` when no counter follows the filter,
        when rows from before pages are still uncounted, or when no load of the view has
        checked the counter yet and there are pages (written before it was kept)."""
        if uncounted or legacy:
            return None
        if not (counter or {}).get(COUNTED):
            if await self.store.query(f"SELECT VALUE id FROM {INVENTORY_PAGES} LIMIT 1"):
                return None
        counts = counts_of(counter)
        return counts.get(kind, 0) if kind is not None else counts.get(TOTAL, 0)

    # Reads for the provider's view: through the write queue, so each sees every write
    # queued before it, as the view does (orchestrator/providers/local_inventory.py).
    async def pages(self, page_ids: list[str] | None = None) -> dict[str, list[dict[str, Any]]]:
        """The rows of these pages (of every page: ``None``), by page."""
        return {page: page_rows(record) for page, record in (await self.page_records(page_ids)).items()}

    async def page_records(self, page_ids: list[str] | None = None) -> dict[str, dict[str, Any]]:
        """These page records (every one: ``None``) as stored, their rows not yet decoded."""
        if page_ids == []:
            return {}
        if page_ids is None:
            read = Stmt(f"SELECT id, rows FROM {INVENTORY_PAGES}")
        else:
            ids = [RecordID(INVENTORY_PAGES, p) for p in page_ids]
            read = Stmt("SELECT id, rows FROM $ids", {"ids": ids})
        (records,) = await self.store.write(read)
        return {str(r["id"]): r for r in records or []}

    async def everything(self) -> tuple[dict[str, dict[str, Any]], dict[str, int]]:
        """Every page record as stored (rows not yet decoded) and the counter, in one read."""
        records, counter = await self.store.write(
            Stmt(f"SELECT id, rows FROM {INVENTORY_PAGES}"), Stmt(f"SELECT * FROM {COUNTER_TABLE}:{COUNTS}")
        )
        return {str(r["id"]): r for r in records or []}, counts_of((counter or [None])[0])

    async def legacy_rows(self, limit: int) -> list[dict[str, Any]]:
        """Up to ``limit`` resources still stored one per record."""
        (rows,) = await self.store.write(Stmt(f"SELECT * FROM {LEGACY_INVENTORY} LIMIT $n", {"n": limit}))
        return list(rows or [])

    @staticmethod
    def drop_legacy(keys: list[str]) -> Write:
        """Remove resources stored one per record (moved into pages in the same commit)."""
        return Stmt("DELETE $ids RETURN NONE", {"ids": [RecordID(LEGACY_INVENTORY, k) for k in keys]})

    @staticmethod
    def write(page: str, key: str, row: dict[str, Any] | None, *, fresh: bool = False) -> Write:
        """Create or replace the resource ``key`` in ``page``, or remove it (``None``);
        ``fresh``: the page is new (the writer does not read it first)."""
        return Paged(
            INVENTORY_PAGES, page, key, {REMOVED: True} if row is None else row, create=True, fresh=fresh
        )


def _page_id(record: dict[str, Any]) -> str:
    rid = record["id"]
    return str(rid.id if isinstance(rid, RecordID) else rid)


def _checked(page: str) -> str:
    """A page id pasted into a range (ranges take no parameters): ten digits, checked."""
    if not _PAGE.fullmatch(page):
        raise ValueError(f"not a page id: {page!r}")
    return page
