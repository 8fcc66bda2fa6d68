"""The one door to SurrealDB.

Measured facts that shape this package (docs/architecture.md has the whole picture):

* concurrent writes through one embedded connection can lose updates, so every
  write goes through a single writer task that group-commits whatever is queued
  in one ``BEGIN … COMMIT`` query;
* a string record id is pasted into SurrealQL, so every value is bound as a
  ``$param`` (statements name their own params; the writer renames them when it
  concatenates statements);
* ``query()`` hides all but the first statement, so the writer uses
  ``query_raw()`` and checks every statement's status;
* results carry ``RecordID``/``Duration``/``Decimal``: :func:`to_plain` turns them
  into plain Python at this boundary;
* the embedded engine stores a string holding NUL but can never return it (every
  read of that row fails, for good): :func:`guard_nul` replaces NUL in every value
  about to be written, whoever wrote it (input is refused long before, in
  ``shared/web/validation.py``; this is the last line of defence);
* the embedded engine's cost is per structured value, not per byte: 1,000 small
  rows cost ~35 ms to insert, the same 1,000 entries as one CBOR blob ~2 ms. So a
  log (:class:`Append`) is written as one row per commit holding its entries as a
  blob, and rows that are a projection of such a log (:class:`Lazy`) are applied
  coalesced, off the hot path, but always before anything reads or rewrites them:
  any read or statement that names their table, or binds its name or their record
  ids as a parameter (:func:`reaches`). Reads of other tables do not wait for them.

The write model and the transaction plan are ``writes.py``, the book of pending
lazy rows and when each is due ``lazy_rows.py``, values at the
boundary (CBOR, NUL guard, dates) ``codec.py``, the directory lock ``lock.py``
and the migrations ``schema.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from surrealdb import AsyncEmbeddedSurrealConnection, AsyncSurreal, RecordID

from shared.errors import StoreError
from shared.metrics import STORE_COMMITS
from shared.store.codec import embedded_query, nones, to_plain
from shared.store.durability import apply_engine_sync
from shared.store.lazy_rows import TICK, LazyRows
from shared.store.lock import DataDirLock
from shared.store.page_cache import PageCache, PageKey, PageRows
from shared.store.pages import PagedTable, apply_change, page_rows
from shared.store.pending import Applying, Done, Pending
from shared.store.schema import apply_migrations
from shared.store.secrets import SecretBox
from shared.store.writes import Append, Lazy, Merge, Paged, Plan, Put, Stmt, Write, eager

log = logging.getLogger(__name__)

CLOSE_SETTLE_S = 0.05  # the embedded engine aborted at exit without a pause after close()


LAZY_MARK = RecordID("meta", "lazy_mark")


@functools.cache
def _table_word(table: str) -> re.Pattern[str]:
    return re.compile(rf"\b{re.escape(table)}\b")


def reaches(sql: str, params: dict[str, Any] | None, tables: set[str]) -> bool:
    """Whether a statement may read or write rows of ``tables``: it names one of them
    in its text, or binds one's name or one of its record ids (alone or in a list) as a
    parameter. Conservative: a mention anywhere counts, even in a string literal."""
    for table in tables:
        if _table_word(table).search(sql):
            return True
    for value in (params or {}).values():
        items = value if isinstance(value, list | tuple | set | frozenset) else (value,)
        for item in items:
            if isinstance(item, RecordID) and item.table_name in tables:
                return True
            if isinstance(item, str) and item in tables:
                return True
    return False


class Store(LazyRows):
    """SurrealDB connection with concurrent reads and one group-committing writer."""

    def __init__(
        self,
        url: str,
        *,
        namespace: str = "provisioning",
        database: str = "main",
        lock_dir: Path | None = None,
        write_batch_max: int = 2000,
        lazy_delay_s: float = 0.02,
        lazy_max_age_s: float = 1.0,
        lazy_unsettled_max_age_s: float | None = None,
        lazy_chunk: int = 250,
        lazy_max: int = 20_000,
        list_scan_budget: int = 2_000,
        secrets: SecretBox | None = None,
        after_connect: Callable[[], None] | None = None,
        sync_commits: bool = True,
    ) -> None:
        self.url = url
        self.sync_commits = sync_commits  # fsync every commit (shared/store/durability.py)
        # Seals and opens the secret fields of the rows repositories write and read
        # (shared/store/secrets.py); ``open_store`` passes the configured key, a bare store
        # (a test's, a benchmark's) gets a key of its own.
        self.secrets = secrets if secrets is not None else SecretBox.ephemeral()
        self._after_connect = after_connect  # e.g. a check of the files the engine just made
        self.namespace = namespace
        self.database = database
        self.write_batch_max = write_batch_max
        super().__init__(
            lazy_delay_s=lazy_delay_s,
            lazy_max_age_s=lazy_max_age_s,
            lazy_unsettled_max_age_s=lazy_unsettled_max_age_s,
            lazy_chunk=lazy_chunk,
            lazy_max=lazy_max,
        )
        # Rows a filtered list page reads at most (shared/store/keyset.py).
        self.list_scan_budget = list_scan_budget
        self._lock = DataDirLock(lock_dir) if lock_dir is not None else None
        self._db: Any = None
        self._decodes_plain = False
        self._queue: asyncio.Queue[Pending | object | None] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        # Paged tables (shared/store/pages.py), the pending rows of each page, and the
        # pages the writer last wrote (by page, their rows by id; never mutated in place).
        self._paged: dict[str, PagedTable] = {}
        self._pages = PageCache()
        self._last_write = 0.0  # loop time the writer last committed other work
        # Commit writes queued during the previous commit at once (see _write_loop).
        self.pipeline = True
        self.commits = 0
        self.statements_written = 0

    def register_pages(self, spec: PagedTable) -> None:
        """Declare a paged table: its rows are written by :class:`Lazy` changes with a
        ``page`` and by :class:`Paged` changes (``shared/store/pages.py``)."""
        self._paged[spec.table] = spec

    async def open(self) -> None:
        """Take the directory lock, connect, start the writer and apply migrations."""
        if self._lock is not None:
            self._lock.acquire()
        try:
            if self.url.startswith("surrealkv://"):
                Path(self.url.removeprefix("surrealkv://")).parent.mkdir(parents=True, exist_ok=True)
            apply_engine_sync(self.url, self.sync_commits)
            self._db = AsyncSurreal(self.url)
            # query_each has the embedded engine's answers decoded plain (codec.plain_tag_hook).
            self._decodes_plain = isinstance(self._db, AsyncEmbeddedSurrealConnection)
            await self._db.connect()
            if self._after_connect is not None:
                self._after_connect()
            await self._db.use(self.namespace, self.database)
            self._writer = asyncio.create_task(self._write_loop(), name="store-writer")
            await self._migrate()
            self._lazy_applied = self._lazy_high = await self.lazy_mark()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Drain queued writes, stop the writer, close the engine, release the lock."""
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None
        if self._writer is not None:
            await self._queue.put(None)
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None
            while not self._queue.empty():  # queued after the stop: refuse, don't hang
                late = self._queue.get_nowait()
                if isinstance(late, Pending):
                    late.fail(StoreError("the store is closing"))
        if self._db is not None:
            with contextlib.suppress(Exception):
                await self._db.close()
            await asyncio.sleep(CLOSE_SETTLE_S)
            self._db = None
        if self._lock is not None:
            self._lock.release()

    async def _migrate(self) -> None:
        await apply_migrations(self)

    # -- reads ---------------------------------------------------------------

    async def query(self, sql: str, params: dict[str, Any] | None = None) -> list[Any]:
        """Run a read and return the last statement's result as plain Python."""
        results = await self.query_each(sql, params)
        result = results[-1] if results else []
        if result is None:
            return []
        return result if isinstance(result, list) else [result]

    async def query_each(self, sql: str, params: dict[str, Any] | None = None) -> list[Any]:
        """Run statements and return every statement's result, raising on any error.

        Lazy changes already committed are applied first when the statements reach
        their tables (:func:`reaches`): a read never sees less than every write that
        has resolved before it, and a read of other tables never waits for rows it
        cannot see (a submission's thousands of task rows, say)."""
        if self._lazy and reaches(sql, params, self.pending_tables):
            await self.flush_lazy()
        raw = await self._raw(sql, nones(params or {}), plain=True)
        out = []
        for item in raw:
            if item.get("status") != "OK":
                raise StoreError(f"database error: {item.get('result')}")
            result = item.get("result")
            out.append(result if self._decodes_plain else to_plain(result))
        return out

    async def page(
        self,
        table: str,
        *,
        order: str,
        limit: int,
        offset: int,
        where: str = "",
        params: dict[str, Any] | None = None,
        fields: str = "*",
    ) -> tuple[list[dict[str, Any]], int]:
        """One page of rows and how many match in all, in one round trip: a sort and a
        count of every match, so only for tables that stay small (policies, webhook
        subscriptions); lists that grow use ``shared/store/keyset.py``.

        ``table``, ``where``, ``order`` and ``fields`` are the caller's own SurrealQL
        (never request text); every value goes in ``params``."""
        clause = f"WHERE {where}" if where else ""
        rows, count = await self.query_each(
            f"SELECT {fields} FROM {table} {clause} ORDER BY {order} "
            "LIMIT $page_limit START $page_offset;"
            f"SELECT count() AS n FROM {table} {clause} GROUP ALL",
            {**(params or {}), "page_limit": limit, "page_offset": offset},
        )
        return list(rows or []), int(count[0]["n"]) if count else 0

    async def _raw(self, sql: str, params: dict[str, Any], *, plain: bool = False) -> list[dict[str, Any]]:
        if self._db is None:
            raise StoreError("the store is not open")
        try:
            if isinstance(self._db, AsyncEmbeddedSurrealConnection):
                response = await embedded_query(self._db, sql, params, plain=plain)
            else:
                response = await self._db.query_raw(sql, params)
        except Exception as exc:  # driver errors become ours at this boundary
            raise StoreError(f"database unavailable: {exc}") from exc
        if "error" in response:
            raise StoreError(f"database error: {response['error']}")
        result: list[dict[str, Any]] = response.get("result", [])
        return result

    # -- writes --------------------------------------------------------------

    def enqueue(self, *stmts: Write) -> asyncio.Future[list[Any]]:
        """Queue writes without waiting; the future resolves once they are durable.

        Writes are committed in queue order, so a later write never lands before
        an earlier one."""
        return self._enqueue(Pending(tuple(stmts), self._future()))

    def notify(self, done: Done, *stmts: Write) -> None:
        """Queue writes like :meth:`enqueue`, with no future: the writer calls ``done(None)``
        once they are durable, or ``done(error)`` if they failed, itself, in queue order
        (before the futures of the same commit resolve). For the engine's hot path, where a
        future and its callbacks cost more than the rest of a transition's bookkeeping;
        ``done`` must be quick, and is called exactly once."""
        if self._writer is None or self._writer.done():
            raise StoreError("the store is not open")
        self._queue.put_nowait(Pending(stmts, None, done=done))

    def _future(self) -> asyncio.Future[list[Any]]:
        if self._writer is None or self._writer.done():
            raise StoreError("the store is not open")
        return asyncio.get_running_loop().create_future()

    def _enqueue(self, pending: Pending) -> asyncio.Future[list[Any]]:
        self._queue.put_nowait(pending)
        assert pending.future is not None
        return pending.future

    async def flush_lazy(self) -> None:
        """Apply every lazy change committed so far (and whatever is queued before this)."""
        await asyncio.shield(self._enqueue(Pending((), self._future(), flush=True)))

    async def lazy_mark(self) -> int:
        """The log position up to which every lazy change is applied (read as stored)."""
        raw = await self._raw("SELECT VALUE seq FROM ONLY $mark", {"mark": LAZY_MARK})
        value = raw[0].get("result") if raw else None
        return int(value) if isinstance(value, int) else 0

    @staticmethod
    def mark_write(seq: int) -> Stmt:
        """Record that every lazy change up to ``seq`` is applied (for a log's replay)."""
        return Stmt(
            "UPSERT $lazy_mark SET seq = $lazy_seq RETURN NONE", {"lazy_mark": LAZY_MARK, "lazy_seq": seq}
        )

    async def write(self, *stmts: Write) -> list[Any]:
        """Queue writes to commit atomically; return each one's result once durable.

        ``Merge``, ``Insert`` and ``Put`` results are ``None``: they are coalesced with
        their neighbours into one statement per kind, which is what makes the
        group commit cheap (one ``INSERT`` of 1,000 rows costs about as much as
        twenty single-row statements).
        """
        # Shielded: a cancelled caller must not cancel the future of a write that is
        # queued and will commit anyway.
        return await asyncio.shield(self.enqueue(*stmts))

    async def _write_loop(self) -> None:
        stop = False
        while not stop:
            waited = self._queue.empty()
            first = await self._queue.get()
            if first is None:  # stop, after applying what is pending
                await self._apply_all_at_close()
                break
            if waited or not self.pipeline:
                # One turn of the loop lets every coroutine that is ready right now queue
                # its write too, so they share this commit instead of each waiting for the
                # next.
                await asyncio.sleep(0)
            # Else writes queued while the last commit ran: commit them at once. Those
            # whom the last commit woke run while this one is in the engine, and queue
            # theirs for the next: the loop's work and the engine's sync overlap.
            batch: list[Pending] = []
            due = False
            statements = 0
            item: Pending | object | None = first
            while True:
                if isinstance(item, Pending):
                    batch.append(item)
                    statements += len(item.stmts)
                elif item is TICK:
                    self._tick = None
                    due = True
                if statements >= self.write_batch_max or self._queue.empty():
                    break
                item = self._queue.get_nowait()
                if item is None:
                    stop = True
                    break
            try:
                rows = (
                    self._due_rows(bool(batch))
                    if not stop and (due or len(self._lazy) >= self.lazy_max)
                    else []
                )
                if batch:
                    # Rows due ride on the batch's commit when they can (one sync, not two).
                    if await self._commit(batch, rows):
                        rows = []
                    self._last_write = asyncio.get_running_loop().time()
                if stop:
                    await self._apply_all_at_close()
                else:
                    # Chosen before the commit, which may have applied some (a read's flush).
                    rows = [key for key in rows if key in self._lazy]
                    if not rows and len(self._lazy) >= self.lazy_max:  # this batch made too many
                        rows = self._due_rows()
                    await self._apply_lazy(rows)
            except Exception as exc:  # never let one bad batch stop every later write
                log.exception("store writer failed a group commit")
                failure = StoreError(f"database write failed: {exc}")
                for pending in batch:
                    pending.fail(failure)
            self._schedule_lazy()

    async def _apply_all_at_close(self) -> None:
        """Apply every pending row before stopping; if the store refuses, say so and stop
        anyway (the journal holds those changes: the next start re-applies them)."""
        try:
            while self._lazy:
                await self._apply_lazy(list(itertools.islice(self._lazy, self.lazy_chunk)))
        except Exception:
            log.exception(
                "could not apply pending rows at close; the next start will", extra={"rows": len(self._lazy)}
            )

    async def _apply_lazy(self, keys: list[tuple[str, str]]) -> None:
        """Apply the lazy changes of these rows in one commit."""
        if not keys:
            return
        plan = Plan()
        applying = await self._plan_lazy(plan, keys)
        sql, params, _ = plan.build()
        raw = await self._raw(sql, params)
        if len(raw) != len(plan.statements) or any(r.get("status") != "OK" for r in raw):
            self._pages.forget(applying.pages)
            if len(keys) > 1:  # find the row at fault: apply them one by one
                for key in keys:
                    await self._apply_lazy([key])
                return
            self._refuse_lazy(keys[0], raw)
            return
        self.commits += 1
        STORE_COMMITS.inc()
        self._lazy_landed(applying)

    async def _plan_lazy(self, plan: Plan, keys: list[tuple[str, str]]) -> Applying:
        """Plan the application of these rows' lazy changes (and the mark it moves to),
        with the other settled rows of their pages (a page is rewritten whole)."""
        by_page: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for key in keys:
            row = self._lazy[key]
            if row.page is None:
                plan.add(eager(key[0], key[1], row.create, row.patch), own=False)
            else:
                by_page.setdefault((key[0], row.page), []).append(key)
        keys = self._with_settled_page_mates(keys, by_page)
        pages = await self._load_pages(list(by_page))
        for page_key, members in by_page.items():
            for key in members:
                row = self._lazy[key]
                apply_change(pages[page_key], key[1], row.patch, row.create, key[0])
        codes = self._pages.plan(plan, pages, self._paged)
        # Everything before the oldest change still pending is applied once this commits.
        oldest = self._oldest_left(set(keys))
        mark = oldest - 1 if oldest is not None else self._lazy_high
        mark = max(mark, self._lazy_applied)
        plan.add(self.mark_write(mark), own=False)
        return Applying(keys, pages, codes, mark)

    # -- pages (shared/store/pages.py) ------------------------------------------------

    @property
    def page_cache_max(self) -> int:
        """Pages the writer keeps as last written (``shared/store/page_cache.py``)."""
        return self._pages.max_pages

    @page_cache_max.setter
    def page_cache_max(self, n: int) -> None:
        self._pages.max_pages = n

    async def _load_pages(self, keys: list[PageKey]) -> dict[PageKey, PageRows]:
        """The rows of these pages by id, each page a fresh dict: from the cache, else
        read (a page never written is empty)."""
        out, missing = self._pages.lookup(keys)
        if missing:
            raw = await self._raw("SELECT id, rows FROM $ids", {"ids": [RecordID(t, p) for t, p in missing]})
            if not raw or raw[0].get("status") != "OK":
                raise StoreError(f"database error: {raw[0].get('result') if raw else 'no answer'}")
            for record in raw[0].get("result") or []:
                rid = record["id"]
                out[(rid.table_name, str(rid.id))] = {str(r["id"]): r for r in page_rows(record)}
            for key in missing:
                out.setdefault(key, {})
        return out

    def _must_apply(self, batch: list[Pending]) -> tuple[bool, list[tuple[str, str]]]:
        """Which lazy changes this commit must apply first: every one (``True``) when a
        reader asked, a statement reaches a table with lazy changes pending
        (:func:`reaches`; those of this batch count too), or a merge or put targets a
        row lazily changed in this same batch; else the pending rows that a merge or put
        targets (a progress report on a running task), and only those."""
        pending_rows: set[tuple[str, str]] = set()
        stmts: list[Stmt] = []
        targets: dict[tuple[str, str], None] = {}
        for pending in batch:
            if pending.flush:
                return True, []
            for write in pending.stmts:
                if type(write) is Append:  # a log entry (half of every transition): never a target
                    continue
                if type(write) is Lazy:
                    pending_rows.add((write.table, write.id))
                elif isinstance(write, Stmt):
                    stmts.append(write)
                elif isinstance(write, Merge | Put):
                    key = (write.table, write.id)
                    if key in pending_rows:
                        return True, []
                    if key in self._lazy:
                        targets[key] = None
                elif isinstance(write, Paged):
                    # The page is rewritten whole: its pending rows go first.
                    if (write.table, write.id) in pending_rows:
                        return True, []
                    for member in self._page_members.get((write.table, write.page), ()):
                        targets[member] = None
        if stmts:
            tables = self.pending_tables | {table for table, _ in pending_rows}
            if tables and any(reaches(w.sql, w.params, tables) for w in stmts):
                return True, []
        return False, list(targets)

    async def _commit(self, batch: list[Pending], riders: list[tuple[str, str]] | None = None) -> bool:
        """Commit a batch; ``riders``, rows whose lazy changes are due, are applied in the
        same commit when nothing in the batch touches pages or pending rows. Returns
        whether they were (else the caller applies them)."""
        for pending in batch:
            for write in pending.stmts:
                if type(write) is Lazy and write.fresh and write.page is not None:
                    self._pages.claim_fresh((write.table, write.page))
                elif type(write) is Paged and write.fresh:
                    self._pages.claim_fresh((write.table, write.page))
        applying, targets = self._must_apply(batch)
        if applying or targets:
            # In chunks before the batch (their log entries are durable already, so they
            # need not share its transaction): one huge transaction costs the embedded
            # engine far more memory than several small ones.
            try:
                if applying:
                    while self._lazy:
                        await self._apply_lazy(list(itertools.islice(self._lazy, self.lazy_chunk)))
                for start in range(0, len(targets), self.lazy_chunk):
                    await self._apply_lazy(targets[start : start + self.lazy_chunk])
            except StoreError as exc:
                for pending in batch:
                    pending.fail(exc)
                return False
        plan = Plan()
        lazies: list[Lazy] = []
        pages = await self._pages_of(batch, applying)
        reached: set[str] = set()
        for pending in batch:
            for write in pending.stmts:
                if type(write) is Append:  # half of every transition: straight to the plan
                    plan.add(write)
                    continue
                if isinstance(write, Lazy):
                    lazies.append(write)
                    for count in write.counts:  # with the log entry, applied or not
                        plan.add(count, own=False)
                    if applying and write.page is not None:
                        apply_change(
                            pages[(write.table, write.page)], write.id, write.patch, write.create, write.table
                        )
                    if not applying or write.page is not None:
                        plan.slots.append(None)
                        continue
                    write = eager(write.table, write.id, write.create, write.patch)
                elif isinstance(write, Paged):
                    apply_change(
                        pages[(write.table, write.page)], write.id, write.patch, write.create, write.table
                    )
                    plan.slots.append(None)
                    continue
                elif isinstance(write, Stmt) and reaches(write.sql, write.params, set(self._paged)):
                    # It may change the pages of the tables it reaches: the cache is no longer
                    # sure of those (a read of the inventory's pages leaves the tasks' alone).
                    reached.update(t for t in self._paged if reaches(write.sql, write.params, {t}))
                plan.add(write)
        codes = self._pages.plan(plan, pages, self._paged)
        mark = 0
        if applying and lazies:
            mark = max(self._lazy_applied, self._lazy_high, *(w.mark for w in lazies))
            plan.add(self.mark_write(mark), own=False)
        # Their pages are not this batch's, and the mark they move to is below this
        # batch's own lazy changes (folded only once it lands: newer than any pending).
        ride = await self._plan_lazy(plan, riders) if riders and not (applying or targets or pages) else None
        sql, params, slots = plan.build()
        if not plan.statements:  # lazy changes only: nothing to send
            now = asyncio.get_running_loop().time()
            for lazy in lazies:
                self._fold_lazy(lazy, now)
            for pending in batch:
                pending.succeed([None] * len(pending.stmts))
            return False
        try:
            raw = await self._raw(sql, params)
        except StoreError as exc:
            self._pages.forget(pages)
            self._pages.forget_tables(reached)
            if ride is not None:
                self._pages.forget(ride.pages)
            for pending in batch:
                pending.fail(exc)
            return False
        failed = len(raw) != len(plan.statements) or any(r.get("status") != "OK" for r in raw)
        self._pages.forget_tables(reached)
        if failed:
            self._pages.forget(pages)
            if ride is not None:
                self._pages.forget(ride.pages)
        else:
            self._pages.keep(pages, codes)
        if not failed:
            self.commits += 1
            STORE_COMMITS.inc()
            self.statements_written += len(plan.statements)
            # Recorded before any future resolves: whoever wakes up and reads must
            # find these changes applied or pending, never neither.
            if ride is not None:  # first: a row applied here may have a newer change below
                self._lazy_landed(ride)
            if applying:
                self._lazy_applied = max(self._lazy_applied, mark)
                self._lazy_high = max(self._lazy_high, mark)
            else:
                now = asyncio.get_running_loop().time()
                for lazy in lazies:
                    self._fold_lazy(lazy, now)
            i = 0
            for pending in batch:
                n = len(pending.stmts)
                if pending.future is None:  # told by a callback: no results to build
                    pending.succeed([])
                else:
                    own = slots[i : i + n]
                    pending.succeed(
                        [None if slot is None else to_plain(raw[slot].get("result")) for slot in own]
                    )
                i += n
            return ride is not None
        if ride is not None:
            # Without the rows (one of them may be what the store refused), as before.
            await self._commit(batch)
            return False
        if len(batch) == 1:
            reason = next((str(r.get("result")) for r in raw if r.get("status") != "OK"), "unknown error")
            batch[0].fail(StoreError(f"database refused the write: {reason}"))
            return False
        # One bad item must not fail its neighbours: commit each on its own.
        for pending in batch:
            await self._commit([pending])
        return False

    async def _pages_of(self, batch: list[Pending], applying: bool) -> dict[tuple[str, str], PageRows]:
        """The pages this batch rewrites: those of its paged changes, and of its paged
        lazy changes when it applies them too."""
        keys: dict[tuple[str, str], None] = {}
        for pending in batch:
            for write in pending.stmts:
                if isinstance(write, Paged):
                    keys[(write.table, write.page)] = None
                elif applying and isinstance(write, Lazy) and write.page is not None:
                    keys[(write.table, write.page)] = None
        return await self._load_pages(list(keys)) if keys else {}
