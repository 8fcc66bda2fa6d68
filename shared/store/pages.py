"""Rows stored many to a record: a *paged table*.

Measured on the embedded engine (surrealkv 0.9, docs/performance.md "Task pages"):
the store keeps every key it holds in memory and replays its whole log when it
opens, so what a row costs over a year is its *keys*, not its bytes. A task row
with its three index entries cost about 1.2 KB of resident memory and 10 µs of
every later start, for good: 3.5 GB and 45 s at 1,000,000 tasks. Ten thousand
records holding 480 MB open in 0.45 s with 59 MB; 200,000 small rows (45 MB)
take 0.36 s and 133 MB.

So a table that grows with history keeps its rows packed: up to a page's worth
of rows in one record, as one CBOR blob (the engine's cost is per structured
value, not per byte), with a few summary fields the queries need beside it
(how many rows, counts by status, …). A page's record id is chosen by the
owner so that pages sort in list order: a list is a forward range scan of
record ids, no index at all.

The writer (``shared/store/store.py``) applies changes to paged rows by reading
the page (from a small cache of pages it wrote, or the store), changing the
rows, and writing the page whole: :class:`~shared.store.writes.Lazy` changes with a
``page`` coalesce per row as any lazy change does and are applied page by page;
:class:`~shared.store.writes.Paged` changes are applied with their own commit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shared.store.codec import encode, guard_nul, pack_array, unpack

ROWS = "rows"  # the field of a page record that holds its rows, as one CBOR blob
# A page's rows as last encoded, by row id: (the row, its CBOR). Kept beside the writer's
# page cache, so only the rows a change replaced are encoded again.
Codes = dict[str, tuple[dict[str, Any], bytes]]


@dataclass(frozen=True)
class PagedTable:
    """A table of pages: ``table`` holds records ``{<summary fields>, rows: <blob>}``.

    ``summarise`` gives the page's queryable fields from its rows (never ``rows``
    nor ``id``); ``order`` is the row field rows are kept sorted by."""

    table: str
    summarise: Callable[[list[dict[str, Any]]], dict[str, Any]]
    order: str = "index"

    def record(
        self, rows: dict[str, dict[str, Any]], known: Codes | None = None
    ) -> tuple[dict[str, Any], Codes]:
        """The page record holding ``rows`` (by row id), rows in ``order``, and what each
        row encoded to. A row that is the very object ``known`` holds (rows are replaced,
        never changed in place) is not encoded again: a page rewritten because a few of
        its rows changed costs those rows, not all of them. Rows are not NUL-guarded
        here: :func:`apply_change` guards what it merges, and rows read back from the
        store never hold NUL."""
        order = self.order
        ordered = sorted(rows.items(), key=lambda item: item[1].get(order) or 0)
        codes: Codes = {}
        parts: list[bytes] = []
        for rid, row in ordered:
            code = known.get(rid) if known is not None else None
            if code is None or code[0] is not row:
                code = (row, encode(row))
            codes[rid] = code
            parts.append(code[1])
        return {**self.summarise([row for _, row in ordered]), ROWS: pack_array(parts)}, codes


def page_rows(record: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The rows of a page record as read from the store (``[]`` for none)."""
    blob = (record or {}).get(ROWS)
    if not isinstance(blob, bytes):
        return []
    rows: list[dict[str, Any]] = unpack(blob)
    return rows


def apply_change(
    rows: dict[str, dict[str, Any]], rid: str, patch: dict[str, Any], create: bool, table: str = "(page)"
) -> None:
    """Apply one row's change in place: ``create`` replaces the row whole; a patch
    merges into the row if it exists (as ``UPDATE … MERGE`` would: a missing row stays
    missing), ``None`` values removing their fields. What it merges is NUL-guarded (the
    row it merges into already is), so a page's rows never hold NUL."""
    patch = guard_nul(patch, table)
    if create:
        rows[rid] = {"id": rid, **{k: v for k, v in patch.items() if v is not None}}
        return
    row = rows.get(rid)
    if row is None:
        return
    changed = dict(row)
    for key, value in patch.items():
        if value is None:
            changed.pop(key, None)
        else:
            changed[key] = value
    rows[rid] = changed
