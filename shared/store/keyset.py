"""Keyset pages: every list is a range scan of one indexed key, in order.

Measured on the embedded engine (2.x, ``bench/planner.py``, docs/performance.md):

* ``ORDER BY f DESC LIMIT n`` reads and sorts the whole table (1.3 s at 100,000
  rows), even with an index on ``f``; so does any ``ORDER BY id DESC`` over a
  record-id range;
* ``WHERE f >= $x ORDER BY f LIMIT n`` on an indexed ``f`` walks the index forward
  and stops after ``n`` rows: flat (~2 ms) whatever the table's size;
* the same with ``DESC`` is *wrong*, not only slow: the engine stops after the
  first ``n`` index entries and then sorts them, so it returns the oldest rows;
* an open lower bound (``f > $x`` with no row at ``$x``) has lost rows before
  (``shared/security/repositories.py``), so pages start at ``>=`` and drop the
  row the cursor names.

So each listed table carries a string key (``lk``, indexed) that sorts
ascending in the list's order — newest first is a position stored inverted —
and ends with the row's id, so keys are unique. A page is
``WHERE lk >= $from AND lk < $to ORDER BY lk LIMIT n``; its cursor is the last
key it returned. A prefix of the key can name a partition (one workflow's tasks,
one webhook's deliveries), which is then a contiguous range of the same index.

Filters the key cannot express (a status) are applied to a bounded scan: at
most ``scan_budget`` rows (the store's ``list_scan_budget``) are read per page;
a page may then hold fewer than ``limit`` items and still have a next cursor. No page ever costs more than
``offset + scan_budget`` rows, however large the table.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from shared.errors import ValidationFailed

if TYPE_CHECKING:  # the store is passed in; only its type is needed here
    from shared.store.store import Store


class PageFilter(Protocol):
    """What a page of a list is asked for: its size and where it starts (an offset, or
    a cursor from the previous page's ``Link: rel="next"``)."""

    @property
    def limit(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def cursor(self) -> str | None: ...


KEY = "lk"  # the field every listed table is ordered by (index ``<table>_lk``)
# One position: 19 decimal digits, any non-negative 64-bit signed number (decimal so
# that a migration can build the same keys in SurrealQL: 0011_keyset_and_counters).
_WIDTH = 19
_TOP = 2**63 - 1
END = "\x7f"  # sorts after every character a key holds: the end of a partition
MAX_CURSOR_CHARS = 600
_KEY_CHARS = re.compile(r"[\x20-\x7e]{1,400}")
T = TypeVar("T")


def part(position: int, *, descending: bool = False) -> str:
    """One position of a key, fixed width so that strings sort as the numbers do
    (inverted when the list shows the highest first)."""
    value = int(position)
    if not 0 <= value <= _TOP:
        raise ValueError(f"a key position must be in 0..2**63-1, not {value}")
    return f"{_TOP - value if descending else value:0{_WIDTH}d}"


def list_key(*parts: str, tiebreak: str) -> str:
    """A row's key: its positions (``part``), then its id so no two keys are equal."""
    return "".join(parts) + "." + tiebreak


def encode_cursor(key: str) -> str:
    """The opaque ``cursor`` a client sends back for the next page."""
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, shape: re.Pattern[str] | None = None) -> str:
    """The key a ``cursor`` names; a 422 naming ``cursor`` if it is not one we made (or,
    with ``shape``, not a key of this list: a cursor from another list)."""
    problem = None
    key = ""
    if len(cursor) > MAX_CURSOR_CHARS:
        problem = "too long"
    else:
        try:
            key = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        except (binascii.Error, ValueError):
            problem = "not a cursor this service issued"
        else:
            if not _KEY_CHARS.fullmatch(key):
                problem = "not a cursor this service issued"
            elif shape is not None and not shape.fullmatch(key):
                problem = "not a cursor of this list"
    if problem is not None:
        raise ValidationFailed(
            f"invalid cursor: {problem}", details={"fields": [{"field": "cursor", "message": problem}]}
        )
    return key


@dataclass(frozen=True, slots=True)
class Page:
    """Rows in list order and the key to continue after (``None``: the list ends here)."""

    rows: list[dict[str, Any]]
    next_key: str | None

    @property
    def next_cursor(self) -> str | None:
        return None if self.next_key is None else encode_cursor(self.next_key)


@dataclass(frozen=True, slots=True)
class Listing(Generic[T]):
    """What a list's service returns: a page of records, how many match in all (from a
    counter; ``None`` when no counter follows the filter) and the next page's cursor."""

    items: list[T]
    total: int | None
    next_cursor: str | None


async def keyset_page(
    store: Store,
    table: str,
    limit: int,
    offset: int = 0,
    cursor: str | None = None,
    *,
    prefix: str = "",
    where: str = "",
    reads: str = "",
    params: dict[str, Any] | None = None,
    fields: str = "*",
    scan_budget: int | None = None,
) -> Page:
    """One page of ``table`` in ``lk`` order: rows after the ``cursor`` (from an earlier
    page; a 422 naming ``cursor`` if it is not one), within the partition ``prefix``,
    skipping ``offset``, at most ``limit``.

    ``table``, ``where``, ``reads`` (the fields ``where`` reads) and ``fields`` are the
    caller's own SurrealQL (never request text; ``fields`` must keep ``lk``); every
    value goes in ``params``. Without
    ``where`` the page is one forward index walk of ``offset + limit + 1`` entries;
    with it, a walk of at most ``offset + scan_budget`` entries, filtered."""
    after = None if cursor is None else decode_cursor(cursor)
    low = prefix if after is None or after < prefix else after
    # The range starts at the cursor's own key, inclusive (see the module doc), and
    # leaves that row out by name.
    range_clause = f"{KEY} >= $ks_low AND {KEY} < $ks_high AND {KEY} != $ks_after"
    binds = {**(params or {}), "ks_low": low, "ks_high": prefix + END, "ks_after": after}
    if where and not reads:
        raise ValueError("a filtered page names the fields its filter reads")
    if not where:
        rows = await store.query(
            f"SELECT {fields} FROM {table} WHERE {range_clause} ORDER BY {KEY} LIMIT $ks_n START $ks_skip",
            {**binds, "ks_n": limit + 1, "ks_skip": offset},
        )
        more = len(rows) > limit
        rows = rows[:limit]
        return Page(rows, str(rows[-1][KEY]) if more and rows else None)
    budget = (store.list_scan_budget if scan_budget is None else scan_budget) + offset
    # The walk reads only the key and what the filter needs (half the cost of whole
    # rows); the rows of the page are then read by id, in order.
    result = await store.query(
        f"LET $ks_scan = (SELECT id, {KEY}, {reads} FROM {table} WHERE {range_clause} "
        f"ORDER BY {KEY} LIMIT $ks_budget);"
        f"LET $ks_hits = (SELECT VALUE id FROM $ks_scan WHERE {where} LIMIT $ks_n START $ks_skip);"
        f"RETURN {{rows: (SELECT {fields} FROM $ks_hits), "
        "last: array::last($ks_scan).lk, scanned: array::len($ks_scan)}",
        {**binds, "ks_budget": budget, "ks_n": limit + 1, "ks_skip": offset},
    )
    doc = result[0] if result else {}
    rows = list(doc.get("rows") or [])
    if len(rows) > limit:
        rows = rows[:limit]
        return Page(rows, str(rows[-1][KEY]))
    # The walk stopped at its budget, not at the end of the range: continue after it.
    exhausted = int(doc.get("scanned") or 0) >= budget
    return Page(rows, str(doc["last"]) if exhausted and doc.get("last") else None)


# Store URLs whose engine runs in this process: its writer sees every commit.
IN_PROCESS = ("mem://", "memory", "surrealkv://", "file://", "rocksdb://")


class Unchanged:
    """Answers of reads, kept while the store commits nothing: the list pages a
    dashboard asks for again and again cost one lookup until the next commit.

    Every write goes through the store's writer, which counts its commits
    (``Store.commits``) before any writer of that commit is told it is durable; a read
    sees no change a commit of the same count did not. So an answer read while the
    count stood at ``c`` is exact for as long as it stays ``c`` and no lazy change is
    pending (a read that reaches one applies it first: a commit). An answer read while
    a commit landed is returned, not kept. At most ``size`` answers weighing
    ``weight`` (rows, say) in all are kept, the least recently used going first; a
    commit drops them all. Only for a store in this process (embedded: the data
    directory's lock keeps every other process out); a remote server may have other
    writers, so nothing is kept."""

    def __init__(self, store: Store, size: int, weight: int) -> None:
        self.store = store
        self.size = size if store.url.startswith(IN_PROCESS) else 0
        self.weight = weight
        self._at = -1
        self._kept: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._weighs = 0
        self.hits = 0

    async def get(self, key: Hashable, read: Callable[[], Awaitable[T]], weight: int = 1) -> T:
        """The answer of ``read`` for ``key`` (weighing ``weight``), read now unless kept
        since the last commit. Callers must treat the answer as read-only: it is shared."""
        store = self.store
        if self.size <= 0 or weight > self.weight or store.pending_tables:
            return await read()
        commits = store.commits
        if commits != self._at:
            self._kept.clear()
            self._weighs = 0
            self._at = commits
        elif key in self._kept:
            self._kept.move_to_end(key)
            self.hits += 1
            answer: T = self._kept[key][0]
            return answer
        answer = await read()
        if store.commits == commits == self._at and not store.pending_tables and key not in self._kept:
            self._kept[key] = (answer, weight)
            self._weighs += weight
            while len(self._kept) > self.size or self._weighs > self.weight:
                self._weighs -= self._kept.popitem(last=False)[1][1]
        return answer
