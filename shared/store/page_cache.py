"""The pages the store's writer last wrote (``shared/store/pages.py``), kept so that a
page rewritten because a few of its rows changed is neither read back from the store
nor encoded whole again.

A page is keyed ``(table, page)``; its rows are a dict by row id whose rows are
replaced, never changed in place, so the cache's own stay as committed. Beside each
page, what its rows encoded to (:data:`~shared.store.pages.Codes`). A page a change
claims is new (``Lazy.fresh``) is not read before its first write, unless this writer
wrote it lately (then the claim is not believed).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from shared.store.pages import Codes, PagedTable
from shared.store.writes import Plan, Put

PageKey = tuple[str, str]  # (table, page)
PageRows = dict[str, dict[str, Any]]  # a page's rows by id
WRITTEN_PAGES_MAX = 4096  # pages remembered as written (far more than the cache holds)


class PageCache:
    """Up to ``max_pages`` pages as last written, least recently used dropped first."""

    def __init__(self, max_pages: int = 64) -> None:
        self.max_pages = max_pages
        self._rows: OrderedDict[PageKey, PageRows] = OrderedDict()
        self._codes: dict[PageKey, Codes] = {}  # what each cached page's rows encoded to
        self._fresh: set[PageKey] = set()  # never written yet: not read
        self._written: OrderedDict[PageKey, None] = OrderedDict()  # written lately

    def claim_fresh(self, key: PageKey) -> None:
        """A change says this page was never written (believed unless it was, lately)."""
        if key not in self._written:
            self._fresh.add(key)

    def lookup(self, keys: Iterable[PageKey]) -> tuple[dict[PageKey, PageRows], list[PageKey]]:
        """The pages known here (each a fresh dict: the caller may change it), and the
        keys that must be read from the store."""
        out: dict[PageKey, PageRows] = {}
        missing: list[PageKey] = []
        for key in keys:
            cached = self._rows.get(key)
            if cached is not None:
                self._rows.move_to_end(key)
                out[key] = dict(cached)
            elif key in self._fresh:
                out[key] = {}
            else:
                missing.append(key)
        return out, missing

    def plan(
        self, plan: Plan, pages: dict[PageKey, PageRows], specs: dict[str, PagedTable]
    ) -> dict[PageKey, Codes]:
        """Plan the put of each page (an empty page is removed); returns what their rows
        encoded to, for :meth:`keep` once the commit lands."""
        planned: dict[PageKey, Codes] = {}
        for key, rows in pages.items():
            record = None
            if rows:
                record, planned[key] = specs[key[0]].record(rows, self._codes.get(key))
            plan.add(Put(key[0], key[1], record), own=False)
        return planned

    def keep(self, pages: dict[PageKey, PageRows], codes: dict[PageKey, Codes]) -> None:
        """These pages were committed as they are, their rows encoded to ``codes``."""
        for key, rows in pages.items():
            self._rows[key] = rows
            self._rows.move_to_end(key)
            if key in codes:
                self._codes[key] = codes[key]
            else:
                self._codes.pop(key, None)
            self._fresh.discard(key)
            self._written[key] = None
            self._written.move_to_end(key)
        while len(self._written) > WRITTEN_PAGES_MAX:
            self._written.popitem(last=False)
        while len(self._rows) > self.max_pages:
            gone, _ = self._rows.popitem(last=False)
            self._codes.pop(gone, None)

    def forget(self, keys: Iterable[PageKey]) -> None:
        """Drop these pages (a commit that wrote them failed)."""
        for key in keys:
            self._rows.pop(key, None)
            self._codes.pop(key, None)

    def forget_tables(self, tables: set[str]) -> None:
        """Drop every page of these tables (a statement may have changed them)."""
        if not tables:
            return
        for key in [k for k in self._rows if k[0] in tables]:
            del self._rows[key]
            self._codes.pop(key, None)
        self._fresh = {k for k in self._fresh if k[0] not in tables}
