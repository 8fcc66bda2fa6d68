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
those into pages when it first loads (:meth:`InventoryRepository.move_legacy`), and
until then :meth:`InventoryRepository.all` lists both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from surrealdb import RecordID

from shared.store.pages import Codes, PagedTable, page_rows
from shared.store.store import Store
from shared.store.writes import Paged, Stmt, Write

INVENTORY_PAGES = "inventory_page"
LEGACY_INVENTORY = "inventory"  # one record per resource, before pages
REMOVED = "_removed"  # a row written with this field set is dropped from its page


def _summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"n": len(rows)}


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


class InventoryRepository:
    """The ``local`` provider's simulated cloud: one row per resource, keyed ``<kind>/<name>``."""

    def __init__(self, store: Store) -> None:
        self.store = store

    @staticmethod
    def register(store: Store) -> None:
        """Declare the page table to the store's writer (before any write to it)."""
        store.register_pages(PAGES)

    async def all(self) -> list[dict[str, Any]]:
        """Every resource, by kind and name."""
        pages, legacy = await self.store.query_each(
            f"SELECT id, rows FROM {INVENTORY_PAGES}; SELECT * FROM {LEGACY_INVENTORY}"
        )
        rows = [row for record in pages or [] for row in page_rows(record)]
        rows.extend(legacy or [])
        return sorted(rows, key=_key_order)

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

    async def legacy_rows(self, limit: int) -> list[dict[str, Any]]:
        """Up to ``limit`` resources still stored one per record."""
        (rows,) = await self.store.write(Stmt(f"SELECT * FROM {LEGACY_INVENTORY} LIMIT $n", {"n": limit}))
        return list(rows or [])

    @staticmethod
    def drop_legacy(keys: list[str]) -> Write:
        """Remove resources stored one per record (moved into pages in the same commit)."""
        return Stmt("DELETE $ids RETURN NONE", {"ids": [RecordID(LEGACY_INVENTORY, k) for k in keys]})

    @staticmethod
    def write(page: str, key: str, row: dict[str, Any] | None) -> Write:
        """Create or replace the resource ``key`` in ``page``, or remove it (``None``)."""
        return Paged(INVENTORY_PAGES, page, key, {REMOVED: True} if row is None else row, create=True)
