"""Keyset pages (shared/store/keyset.py) on the real embedded store: order, cursors,
offsets, filtered walks under a scan budget, and rows inserted between pages."""

from __future__ import annotations

from typing import Any

import pytest

from shared.errors import ValidationFailed
from shared.store.keyset import KEY, decode_cursor, encode_cursor, keyset_page, list_key, part
from shared.store.store import Store
from shared.store.writes import Insert, Stmt


def row(position: int, *, group: str = "", status: str = "ok") -> dict[str, Any]:
    rid = f"{group.strip('|')}r{position:06d}"
    return {
        "id": rid,
        "n": position,
        "status": status,
        KEY: group + list_key(part(position, descending=True), tiebreak=rid),
    }


async def fill(store: Store, positions: range, **kw: Any) -> None:
    await store.write(*(Insert("t", row(p, **kw)) for p in positions))


async def walk(store: Store, limit: int, **kw: Any) -> tuple[list[int], int]:
    """Every page by cursor; the positions seen, in order, and how many pages."""
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        page = await keyset_page(store, "t", limit=limit, cursor=cursor, **kw)
        pages += 1
        seen += [int(r["n"]) for r in page.rows]
        if page.next_cursor is None:
            return seen, pages
        cursor = page.next_cursor


@pytest.fixture
async def table(store: Store) -> Store:
    await store.write(Stmt("DEFINE INDEX t_lk ON t FIELDS lk"))
    return store


def test_parts_sort_as_numbers_and_keys_are_unique() -> None:
    assert part(9) < part(10) < part(2**63 - 1)
    assert part(10, descending=True) < part(9, descending=True)
    assert list_key(part(1), tiebreak="a") != list_key(part(1), tiebreak="b")
    with pytest.raises(ValueError):
        part(-1)
    with pytest.raises(ValueError):
        part(2**63)


@pytest.mark.parametrize(
    "cursor",
    ["!!!", "a" * 601, encode_cursor("\x7f\x01"), "gA", "%%", encode_cursor("é".encode().decode("latin-1"))],
)
def test_a_bad_cursor_is_refused_naming_the_field(cursor: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        decode_cursor(cursor)
    assert caught.value.details["fields"][0]["field"] == "cursor"


def test_a_cursor_round_trips() -> None:
    key = list_key(part(7, descending=True), part(3), tiebreak="abc-1")
    assert decode_cursor(encode_cursor(key)) == key


async def test_a_walk_by_cursor_sees_every_row_once_newest_first(table: Store) -> None:
    await fill(table, range(1, 1201))
    seen, pages = await walk(table, 100)
    assert seen == list(range(1200, 0, -1)) and pages == 12


async def test_rows_inserted_between_pages_are_neither_skipped_nor_repeated(table: Store) -> None:
    await fill(table, range(100, 200))
    page = await keyset_page(table, "t", limit=30)
    first = [int(r["n"]) for r in page.rows]
    # newer rows (they sort before the cursor) and older ones (after it) arrive
    await fill(table, range(200, 260))
    await fill(table, range(50, 100))
    rest, _ = await walk_from(table, page.next_cursor, 30)
    assert first == list(range(199, 169, -1))
    assert rest == list(range(169, 49, -1))  # every older row once; no newer one in this walk


async def walk_from(store: Store, cursor: str | None, limit: int) -> tuple[list[int], int]:
    seen: list[int] = []
    pages = 0
    while cursor is not None:
        page = await keyset_page(store, "t", limit=limit, cursor=cursor)
        seen += [int(r["n"]) for r in page.rows]
        cursor = page.next_cursor
        pages += 1
    return seen, pages


async def test_a_deleted_cursor_row_loses_nothing(table: Store) -> None:
    await fill(table, range(1, 21))
    page = await keyset_page(table, "t", limit=5)
    await table.write(Stmt("DELETE t:r000016"))  # the row the cursor names
    rest, _ = await walk_from(table, page.next_cursor, 5)
    assert rest == list(range(15, 0, -1))


async def test_offsets_count_from_the_cursor(table: Store) -> None:
    await fill(table, range(1, 51))
    page = await keyset_page(table, "t", limit=10, offset=5)
    assert [r["n"] for r in page.rows] == list(range(45, 35, -1))
    after = await keyset_page(table, "t", limit=10, offset=5, cursor=page.next_cursor)
    assert [r["n"] for r in after.rows] == list(range(30, 20, -1))


async def test_a_partition_is_one_range(table: Store) -> None:
    await fill(table, range(1, 31), group="a|")
    await fill(table, range(1, 41), group="b|")
    seen, _ = await walk(table, 7, prefix="a|")
    assert seen == list(range(30, 0, -1))


async def test_a_filter_reads_at_most_the_budget_per_page_and_finds_every_match(table: Store) -> None:
    await fill(table, range(1, 501))
    await table.write(Stmt("UPDATE t SET status = 'rare' WHERE n IN [7, 250, 251, 499]"))
    seen, pages = await walk(
        table, 2, where="status = $s", reads="status", params={"s": "rare"}, scan_budget=40
    )
    assert seen == [499, 251, 250, 7]
    assert pages >= 500 // 40  # walked in budget-sized steps, some pages empty


async def test_an_empty_table_has_one_empty_page(table: Store) -> None:
    page = await keyset_page(table, "t", limit=10)
    assert page.rows == [] and page.next_cursor is None


async def test_the_engine_cannot_walk_an_index_backwards(table: Store) -> None:
    """Why keys are stored inverted: ``WHERE f < $x ORDER BY f DESC LIMIT n`` on an indexed
    ``f`` returns the *oldest* n rows below ``$x`` (the engine stops after n index entries
    and sorts those), not the newest. If this starts failing, the engine learned to walk
    backwards and the inversion could go."""
    await table.write(Stmt("DEFINE INDEX t_n ON t FIELDS n"))
    await fill(table, range(1, 301))
    rows = await table.query("SELECT VALUE n FROM t WHERE n < 200 ORDER BY n DESC LIMIT 3")
    assert rows == [3, 2, 1]  # the right answer would be [199, 198, 197]
