"""Finished batches' documents kept in the store, beside the rows they are built from.

The first read of a finished 5,000-operation batch after a restart decoded its 50
task pages (3 MB of CBOR rows) and built the document again: 130-200 ms of CPU. Now a
big batch's encoded products (the document, its summary, the progress) are kept in one
``batch_document`` record, compressed, with the *fingerprint* of what they were built
from: a hash of the workflow's row and of its task pages' blobs as stored. A read takes
the row, the record and the pages' blobs (no row decoded: hashing 300 KB of blobs costs
well under a millisecond) and answers the kept products only if the fingerprint is
still the one they were built from. Anything that changes the batch after it finished
(a rollback, a restore, retention pruning its tasks, a change nobody announced) changes
its row or a page, so a stale product is never answered: the products are built again
from the rows just read and kept under the new fingerprint.

Retention drops a workflow's record in the commit that prunes its first pages (its
workflow row goes later, ``orchestrator/retention.py``); nothing else ever needs to
delete one (a stale one is overwritten by the next read)."""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import cbor2

from orchestrator.task_repository import TaskPages
from shared.store.codec import encode
from shared.store.pages import ROWS, page_rows
from shared.store.store import Store
from shared.store.writes import Put

KEPT_DOCUMENTS = "batch_document"
PRODUCTS = "products"  # the record's field holding the products: deflated CBOR, by name
FINGERPRINT = "fp"
COMPRESSION = 6  # ~110 KB for a 1.8 MB document (level 1: ~133 KB); 3 ms to inflate


def fingerprint(workflow_row: Mapping[str, Any], pages: list[dict[str, Any]]) -> bytes:
    """What a finished workflow's documents are built from, hashed: its row (the engine
    returns a record's fields in one order) and its task pages' ids and blobs as stored."""
    h = hashlib.blake2b(encode(dict(workflow_row)), digest_size=16)
    for page in pages:
        rid = str(page.get("id")).encode()
        blob = page.get(ROWS)
        blob = blob if isinstance(blob, bytes) else b""
        h.update(len(rid).to_bytes(4, "big"))
        h.update(rid)
        h.update(len(blob).to_bytes(8, "big"))
        h.update(blob)
    return h.digest()


def pack_products(products: Mapping[str, bytes]) -> bytes:
    """The products as one blob (run it in a thread: deflating 1.8 MB is ~25 ms)."""
    return zlib.compress(cbor2.dumps(dict(products)), COMPRESSION)


def unpack_products(blob: bytes) -> dict[str, bytes]:
    value = cbor2.loads(zlib.decompress(blob))
    if not isinstance(value, dict):
        return {}
    return {str(k): v for k, v in value.items() if isinstance(v, bytes)}


@dataclass
class StoredBatch:
    """A finished workflow as stored: its row, its task pages (blobs, not decoded) and
    the products kept for it, if they were built from exactly these."""

    row: dict[str, Any]
    pages: list[dict[str, Any]]
    fingerprint: bytes
    kept: dict[str, bytes] | None  # None: none kept, or kept for other rows
    _rows: list[dict[str, Any]] | None = field(default=None, repr=False)

    def rows(self) -> list[dict[str, Any]]:
        """The task rows in index order, decoded once (the costly part: ~60 ms for 5,000)."""
        if self._rows is None:
            self._rows = [row for page in self.pages for row in page_rows(page)]
        return self._rows


class DocumentRepository:
    """Reads of a finished workflow with its kept products; the write that keeps them."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.pages = TaskPages(store)

    async def read(self, workflow_id: str, *, kept: bool = True) -> StoredBatch | None:
        """The workflow's row, pages and (``kept``) the products kept for exactly these
        (None: no workflow). Two round trips: the row with the kept record, then the
        pages' range."""
        sql = "SELECT * OMIT operations_json FROM type::thing('workflow', $id)"
        if kept:
            sql += f"; SELECT {FINGERPRINT}, {PRODUCTS} FROM type::thing('{KEPT_DOCUMENTS}', $id)"
        rows, *records = await self.store.query_each(sql, {"id": workflow_id})
        if not rows:
            return None
        row = rows[0]
        seq = int(row.get("submitted_seq") or 0)
        pages = await self.pages.records_of([seq])
        fp = fingerprint(row, pages)
        products = None
        record = records[0][0] if records and records[0] else None
        if record is not None and record.get(FINGERPRINT) == fp and isinstance(record.get(PRODUCTS), bytes):
            products = unpack_products(record[PRODUCTS])
        return StoredBatch(row, pages, fp, products)

    @staticmethod
    def keep(workflow_id: str, fp: bytes, packed: bytes) -> Put:
        """Keep products (:func:`pack_products`) built from what ``fp`` fingerprints."""
        return Put(KEPT_DOCUMENTS, workflow_id, {FINGERPRINT: fp, PRODUCTS: packed})

    @staticmethod
    def drop(workflow_id: str) -> Put:
        """Forget the workflow's kept products (retention prunes its rows)."""
        return Put(KEPT_DOCUMENTS, workflow_id, None)
