"""The book of rows whose lazy changes are committed but not yet applied, and when
each is due (see :class:`shared.store.store.Store`, which keeps it).

A :class:`~shared.store.writes.Lazy` change is committed with the log; its row is
written later, coalesced with the row's other changes. This book holds each pending
row's patch and age, which rows have settled (their last change is final), the
pending rows of each page, and decides which rows a commit takes: while the writer
is idle, settled rows first; while it is busy, only rows past their maximum age;
none while a foreground write is being prepared.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import Counter
from collections.abc import Iterator
from typing import Any

from shared.store.page_cache import PageCache
from shared.store.pending import Applying, LazyRow, Pending
from shared.store.writes import Lazy

log = logging.getLogger("shared.store.store")

TICK = object()  # queued by a timer: lazy changes are due


class LazyRows:
    """The pending lazy rows of a store and the policy of when they are applied."""

    # Kept by the store itself (shared/store/store.py).
    _queue: asyncio.Queue[Pending | object | None]
    _writer: asyncio.Task[None] | None
    _last_write: float
    _pages: PageCache

    def __init__(
        self,
        *,
        lazy_delay_s: float,
        lazy_max_age_s: float,
        lazy_unsettled_max_age_s: float | None,
        lazy_chunk: int,
        lazy_max: int,
    ) -> None:
        # Settled lazy rows are applied ``lazy_delay_s`` after the writer last looked,
        # ``lazy_chunk`` rows per commit so the log's commits interleave with them;
        # unsettled ones once ``lazy_max_age_s`` old; past ``lazy_max`` rows, at once.
        # While the writer is busy, a row whose last change is not settled (a task still
        # pending or running: it will change again) waits until ``lazy_unsettled_max_age_s``
        # (default: ``lazy_max_age_s``) instead, so that it is written once, not once as
        # it was and again as it ends.
        self.lazy_delay_s = lazy_delay_s
        self.lazy_max_age_s = lazy_max_age_s
        self._lazy_unsettled_max_age_s = lazy_unsettled_max_age_s
        self.lazy_chunk = lazy_chunk
        self.lazy_max = lazy_max
        self._lazy: dict[tuple[str, str], LazyRow] = {}  # by row, oldest first
        # Rows whose last change settled, and the loop time it did (in about that order).
        self._settled: dict[tuple[str, str], float] = {}
        self._lazy_tables: Counter[str] = Counter()  # rows pending, by table
        # Whether the pending rows' first marks grow in their order (see _oldest_left).
        self._lazy_in_order = True
        self._lazy_last_first = 0
        self._lazy_applied = 0  # every lazy change up to this mark is in the store
        self._lazy_high = 0  # the highest mark of any lazy change taken in
        self._tick: asyncio.TimerHandle | None = None
        self._page_members: dict[tuple[str, str], set[tuple[str, str]]] = {}  # pending rows by page
        self._foreground = 0  # foreground writes being prepared (see foreground())
        self.lazy_rows_applied = 0

    @property
    def lazy_unsettled_max_age_s(self) -> float:
        """The age at which a busy writer applies a row whose last change is not settled
        (never below ``lazy_max_age_s``)."""
        age = self._lazy_unsettled_max_age_s
        return self.lazy_max_age_s if age is None else max(age, self.lazy_max_age_s)

    @lazy_unsettled_max_age_s.setter
    def lazy_unsettled_max_age_s(self, age: float | None) -> None:
        self._lazy_unsettled_max_age_s = age

    @property
    def pending_tables(self) -> set[str]:
        """The tables with lazy changes not yet applied."""
        return {table for table, n in self._lazy_tables.items() if n > 0}

    @property
    def lazy_pending(self) -> int:
        """Rows with lazy changes not yet applied."""
        return len(self._lazy)

    @contextlib.contextmanager
    def foreground(self) -> Iterator[None]:
        """A foreground write is being prepared (a big submission, while its request is
        parsed, checked and built): until it ends the writer starts no chunk of lazy rows
        and adds none to other commits (unless more than ``lazy_max`` are pending), so the
        write is neither queued behind a chunk nor made bigger by one, and the chunks'
        encoding stays off the event loop meanwhile. Rows due meanwhile go right after."""
        self._foreground += 1
        try:
            yield
        finally:
            self._foreground -= 1
            if not self._foreground and self._writer is not None:
                self._schedule_lazy()

    def _schedule_lazy(self) -> None:
        """Queue a tick for when lazy rows are due: once the writer has had no other work
        for ``lazy_delay_s`` (at once for a backlog beyond a chunk while idle), or when
        the oldest row reaches ``lazy_unsettled_max_age_s`` or the first settled one
        ``lazy_max_age_s``; none while a foreground write is being prepared (its end
        schedules one)."""
        if not self._lazy or self._foreground:
            return
        loop = asyncio.get_running_loop()
        oldest = next(iter(self._lazy.values())).since + self.lazy_unsettled_max_age_s
        if self._settled:  # the first row to settle
            oldest = min(oldest, next(iter(self._settled.values())) + self.lazy_max_age_s)
        when = min(self._last_write + self.lazy_delay_s, oldest)
        if self._tick is not None:
            if self._tick.when() <= when:
                return
            self._tick.cancel()
        self._tick = loop.call_at(when, self._queue.put_nowait, TICK)

    def _due_rows(self, busy: bool = False) -> list[tuple[str, str]]:
        """Up to a chunk of rows to apply: while the writer is idle, settled rows first,
        then the oldest; while it is busy (``busy``: it is about to commit other work),
        only rows past their maximum age, settled ones first (or the oldest, when there
        are too many)."""
        now = asyncio.get_running_loop().time()
        idle = not busy and now - self._last_write >= self.lazy_delay_s
        crowded = len(self._lazy) >= self.lazy_max
        if self._foreground and not crowded:
            return []
        chunk = self.lazy_chunk
        rows: list[tuple[str, str]] = []
        if idle:
            rows = list(itertools.islice(self._settled, chunk))
        elif not crowded:
            # Rows settled ``lazy_max_age_s`` ago, in the order they settled: most rows of
            # a page settle together, so a page is rewritten about once, when its rows are
            # final, not at every commit as each of them ends.
            cutoff = now - self.lazy_max_age_s
            for key, settled_at in self._settled.items():
                if len(rows) >= chunk or settled_at > cutoff:
                    break
                rows.append(key)
        taken = set(rows)
        cutoff = now - self.lazy_unsettled_max_age_s
        for key, row in self._lazy.items():
            if len(rows) >= chunk or not (idle or crowded or row.since <= cutoff):
                break
            if key not in taken:
                rows.append(key)
        return rows

    def _with_settled_page_mates(
        self, keys: list[tuple[str, str]], by_page: dict[tuple[str, str], list[tuple[str, str]]]
    ) -> list[tuple[str, str]]:
        """``keys`` and the other settled rows of the pages in ``by_page`` (added to their
        page's list there too): a page is rewritten whole, so its settled rows, which would
        be due soon, go with it and the page is written once, not once per chunk."""
        if not by_page or not self._settled:
            return keys
        chosen = set(keys)
        keys = list(keys)
        for page_key, members in by_page.items():
            for other in self._page_members.get(page_key, ()):
                if other not in chosen and other in self._settled:
                    chosen.add(other)
                    members.append(other)
                    keys.append(other)
        return keys

    def _lazy_landed(self, applying: Applying) -> None:
        """The application of rows planned by :meth:`_plan_lazy` committed."""
        self._pages.keep(applying.pages, applying.codes)
        for key in applying.keys:
            self._drop_lazy(key)
        self._lazy_applied = applying.mark
        self.lazy_rows_applied += len(applying.keys)

    def _refuse_lazy(self, key: tuple[str, str], raw: list[dict[str, Any]]) -> None:
        """Drop a row change the store will never take (it would otherwise block every
        later read). The journal still records it; the error says which row."""
        reason = next(
            (
                str(r.get("result"))
                for r in raw
                if r.get("status") != "OK" and "not executed" not in str(r.get("result"))
            ),
            "unknown error",
        )
        log.error(
            "the store refused a lazily applied row; its change stays in the log only",
            extra={"table": key[0], "row": key[1], "reason": reason},
        )
        self._drop_lazy(key)

    def _oldest_left(self, applied: set[tuple[str, str]]) -> int | None:
        """The first mark of the pending rows not in ``applied`` (None: there are none).
        Rows are kept in the order they came, which is their first marks' order unless
        :meth:`_fold_lazy` saw otherwise: then the first row left is the oldest, and
        only the rows being applied are passed over (not thousands still pending)."""
        oldest: int | None = None
        for key, row in self._lazy.items():
            if key in applied:
                continue
            if self._lazy_in_order:
                return row.first_mark
            oldest = row.first_mark if oldest is None else min(oldest, row.first_mark)
        return oldest

    def _drop_lazy(self, key: tuple[str, str]) -> None:
        row = self._lazy.pop(key)
        self._settled.pop(key, None)
        self._lazy_tables[key[0]] -= 1
        if row.page is not None:
            members = self._page_members.get((key[0], row.page))
            if members is not None:
                members.discard(key)
                if not members:
                    del self._page_members[(key[0], row.page)]
        if not self._lazy:
            self._lazy_in_order, self._lazy_last_first = True, 0

    def _fold_lazy(self, lazy: Lazy, now: float) -> None:
        """Take in a committed lazy change (``now``: the loop's time, for its row's age)."""
        mark = lazy.mark
        if mark > self._lazy_high:
            self._lazy_high = mark
        key = (lazy.table, lazy.id)
        row = self._lazy.get(key)
        if row is None:
            if mark < self._lazy_last_first:
                self._lazy_in_order = False
            else:
                self._lazy_last_first = mark
            self._lazy[key] = LazyRow(lazy.create, dict(lazy.patch), mark, mark, now, lazy.page)
            self._lazy_tables[key[0]] += 1
            if lazy.page is not None:
                self._page_members.setdefault((lazy.table, lazy.page), set()).add(key)
        else:
            row.patch.update(lazy.patch)
            row.last_mark = mark
        if lazy.settled:
            if key not in self._settled:
                self._settled[key] = now
        else:
            self._settled.pop(key, None)
