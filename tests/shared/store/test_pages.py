"""Paged tables (``shared/store/pages.py``) on the real embedded SurrealDB: rows many to
a record, written by the store's writer only — lazily (``Lazy`` with a ``page``) or
with their commit (``Paged``) — and read back whole from the page's blob."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from surrealdb import RecordID

from shared.store.codec import pack
from shared.store.pages import Codes, PagedTable, apply_change, page_rows
from shared.store.store import Store
from shared.store.writes import Lazy, Paged, Stmt

NEVER = 3600.0


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"n": len(rows), "statuses": sorted({str(r.get("status")) for r in rows})}


@contextlib.asynccontextmanager
async def opened(**kw: Any) -> AsyncIterator[Store]:
    store = Store("mem://", lazy_delay_s=NEVER, lazy_max_age_s=NEVER, **kw)
    await store.open()
    store.register_pages(PagedTable("pg", summarise))
    try:
        yield store
    finally:
        await store.close()


async def page(store: Store, pid: str) -> dict[str, Any] | None:
    rows = await store.query("SELECT * FROM $p", {"p": RecordID("pg", pid)})
    return rows[0] if rows else None


def created(rid: str, index: int, status: str = "Pending", mark: int = 1) -> Lazy:
    row = {"index": index, "status": status, "at": datetime(2026, 1, 1, tzinfo=UTC)}
    return Lazy("pg", rid, row, mark, create=True, page="p1")


async def test_lazy_rows_are_coalesced_into_one_page_record_read_back_whole() -> None:
    async with opened() as store:
        await store.write(created("b", 1), created("a", 0))
        await store.write(Lazy("pg", "a", {"status": "Completed"}, 2, page="p1"))
        assert store.lazy_pending == 2  # nothing applied yet
        record = await page(store, "p1")  # a read of the page table applies them first
        assert record is not None
        assert record["n"] == 2 and record["statuses"] == ["Completed", "Pending"]
        rows = page_rows(record)
        assert [r["id"] for r in rows] == ["a", "b"]  # in index order
        assert rows[0]["status"] == "Completed" and rows[0]["at"] == datetime(2026, 1, 1, tzinfo=UTC)
        assert await store.lazy_mark() == 2
        assert await store.query("SELECT VALUE id FROM pg") == ["p1"]  # one record for both


async def test_a_paged_change_applies_the_pages_pending_rows_first() -> None:
    """A progress report on a task whose row is still a pending lazy create."""
    async with opened() as store:
        await store.write(created("a", 0))
        await store.write(Paged("pg", "p1", "a", {"progress": 50.0, "status": None}))
        rows = page_rows(await page(store, "p1"))
        assert rows == [{"id": "a", "index": 0, "progress": 50.0, "at": datetime(2026, 1, 1, tzinfo=UTC)}]
        assert store.lazy_pending == 0


async def test_a_patch_of_a_missing_row_creates_nothing() -> None:
    async with opened() as store:
        await store.write(Paged("pg", "p1", "ghost", {"status": "Running"}))
        assert await page(store, "p1") is None
        await store.write(Paged("pg", "p1", "a", {"index": 0}, create=True))
        await store.write(Paged("pg", "p1", "ghost", {"status": "Running"}))
        assert [r["id"] for r in page_rows(await page(store, "p1"))] == ["a"]


async def test_a_statement_that_reaches_pages_makes_the_writer_read_them_again() -> None:
    """The writer's cache of pages never outlives a statement that may change them."""
    async with opened() as store:
        await store.write(Paged("pg", "p1", "a", {"index": 0, "status": "Pending"}, create=True))
        await store.write(Stmt("DELETE pg"))
        await store.write(Paged("pg", "p1", "b", {"index": 1}, create=True))
        assert [r["id"] for r in page_rows(await page(store, "p1"))] == ["b"]  # "a" is gone


async def test_nul_in_a_paged_row_is_replaced_and_the_page_reads_back() -> None:
    async with opened() as store:
        await store.write(Paged("pg", "p1", "a", {"index": 0, "output": "x\x00y"}, create=True))
        [row] = page_rows(await page(store, "p1"))
        assert row["output"] == "x\ufffdy"


async def test_pages_survive_a_restart_and_catch_up_keeps_going(tmp_path: Any) -> None:
    url = f"surrealkv://{tmp_path}/db"
    first = Store(url)
    await first.open()
    first.register_pages(PagedTable("pg", summarise))
    await first.write(Paged("pg", "p1", "a", {"index": 0, "status": "Pending"}, create=True))
    await first.close()
    second = Store(url)
    await second.open()
    second.register_pages(PagedTable("pg", summarise))
    try:
        await second.write(Paged("pg", "p1", "a", {"status": "Completed"}))  # read from the store
        [row] = page_rows(await page(second, "p1"))
        assert row["status"] == "Completed" and row["index"] == 0
    finally:
        await second.close()


def test_a_page_record_encodes_only_the_rows_a_change_replaced() -> None:
    table = PagedTable("pg", summarise)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    rows = {f"r{i}": {"id": f"r{i}", "index": i, "status": "Pending", "at": at} for i in range(30)}
    first, codes = table.record(rows)
    # Byte for byte what packing the rows as one list gives, read back the same.
    assert first["rows"] == pack(sorted(rows.values(), key=lambda r: r["index"]))
    assert page_rows(first) == sorted(rows.values(), key=lambda r: r["index"])
    changed = dict(rows)
    changed["r7"] = {**rows["r7"], "status": "Completed"}
    second, again = table.record(changed, codes)
    kept = [rid for rid in changed if again[rid][1] is codes[rid][1]]
    assert kept == [rid for rid in changed if rid != "r7"]  # one row encoded again, not thirty
    statuses = [r["status"] for r in page_rows(second)]
    assert statuses == ["Completed" if i == 7 else "Pending" for i in range(30)]
    assert second["statuses"] == ["Completed", "Pending"]
    # What a change merges is NUL-guarded, so the page never holds NUL.
    apply_change(changed, "r3", {"status": "bad\x00"}, create=False)
    third, _ = table.record(changed, again)
    assert page_rows(third)[3]["status"] == "bad\ufffd"


async def test_a_fresh_page_is_read_from_the_store_once_written_even_when_the_cache_forgot_it() -> None:
    """A new page (``fresh``) is not read before its first write; once written it is read
    as stored, even when later rows claim it is new (they are not believed)."""
    async with opened() as store:
        store.page_cache_max = 0  # every page leaves the cache as soon as it is written
        rows = [Lazy("pg", "r0", {"index": 0, "status": "Pending"}, 1, create=True, page="p1", fresh=True)]
        rows += [
            Lazy("pg", f"r{i}", {"index": i, "status": "Pending"}, 1, create=True, page="p1", fresh=True)
            for i in (1, 2)
        ]
        await store.write(rows[0])
        await store.flush_lazy()  # the first write of p1: nothing read, nothing lost
        await store.write(*rows[1:])
        await store.write(Lazy("pg", "r0", {"status": "Completed"}, 2, page="p1"))
        record = await page(store, "p1")  # applies the rest onto p1 as stored
        assert record is not None
        assert [(r["id"], r["status"]) for r in page_rows(record)] == [
            ("r0", "Completed"),
            ("r1", "Pending"),
            ("r2", "Pending"),
        ]


class CountingPages(PagedTable):
    """Pages that count the rows each record encodes from scratch."""

    encoded: list[int]

    def record(
        self, rows: dict[str, dict[str, Any]], known: Codes | None = None
    ) -> tuple[dict[str, Any], Codes]:
        known = known or {}
        self.encoded.append(sum(1 for rid, row in rows.items() if known.get(rid, (None,))[0] is not row))
        return super().record(rows, known)


async def test_the_writer_keeps_what_a_page_encoded_to_so_a_rewrite_encodes_only_what_changed() -> None:
    """A page written again by the writer encodes the rows a change replaced, not all of
    them: what each row encoded to is kept with the cached page."""
    table = CountingPages("cp", summarise)
    table.encoded = []
    store = Store("mem://", lazy_delay_s=NEVER, lazy_max_age_s=NEVER)
    await store.open()
    store.register_pages(table)
    try:
        await store.write(
            *(Paged("cp", "p1", f"r{i}", {"index": i, "status": "Pending"}, create=True) for i in range(30))
        )
        await store.write(Paged("cp", "p1", "r7", {"status": "Completed"}))
        await store.write(Paged("cp", "p1", "r8", {"status": "Completed"}))
    finally:
        await store.close()
    assert table.encoded == [30, 1, 1]


async def test_applying_a_row_takes_its_pages_other_settled_rows_along() -> None:
    """A page is rewritten whole: applying one of its rows applies its other settled rows
    too (one write of the page, not one per chunk), never its unsettled ones, and the
    mark stays below the oldest row left."""
    async with opened(lazy_chunk=1) as store:
        first = Lazy("pg", "a", {"index": 0, "status": "Completed"}, 1, create=True, settled=True, page="p1")
        await store.write(first, created("b", 1, mark=2))
        third = Lazy("pg", "c", {"index": 2, "status": "Failed"}, 3, create=True, settled=True, page="p1")
        await store.write(third)
        assert store.lazy_pending == 3

        await store._apply_lazy([("pg", "a")])  # one row chosen; c goes with it, b stays

        assert store.lazy_rows_applied == 2 and store.lazy_pending == 1
        assert await store.lazy_mark() == 1  # b (mark 2) is still pending
        record = await page(store, "p1")  # the read applies b first
        assert record is not None
        assert [(r["id"], r["status"]) for r in page_rows(record)] == [
            ("a", "Completed"),
            ("b", "Pending"),
            ("c", "Failed"),
        ]


async def test_a_statement_reaching_one_paged_table_leaves_the_cache_of_another_alone() -> None:
    """A read of one paged table through the writer's queue (the ``local`` provider
    loading its inventory) forgets that table's cached pages, not those of another: a
    page of the other is not read and encoded whole again."""
    table = CountingPages("cp", summarise)
    table.encoded = []
    store = Store("mem://", lazy_delay_s=NEVER, lazy_max_age_s=NEVER)
    await store.open()
    store.register_pages(table)
    store.register_pages(PagedTable("inv", summarise))
    try:
        await store.write(
            *(Paged("cp", "p1", f"r{i}", {"index": i, "status": "Pending"}, create=True) for i in range(30))
        )
        await store.write(Stmt("SELECT id, rows FROM inv"))
        await store.write(Paged("cp", "p1", "r7", {"status": "Completed"}))
        await store.write(Stmt("SELECT id, rows FROM cp"))  # may have changed p1: read again
        await store.write(Paged("cp", "p1", "r8", {"status": "Completed"}))
    finally:
        await store.close()
    assert table.encoded == [30, 1, 30]
