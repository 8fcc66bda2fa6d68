"""List answers kept while the store commits nothing (shared/store/keyset.py,
``Unchanged``): kept until any commit, never while a lazy change is pending, never
when a commit landed while they were read."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from shared.store.keyset import Unchanged
from shared.store.store import Store
from shared.store.writes import Insert, Lazy, Merge

NEVER = 3600.0


def recorder(reads: list[str]) -> Callable[[str], Callable[[], Awaitable[str]]]:
    """A reader per key that answers the key and records that it was read."""

    def reader(key: str) -> Callable[[], Awaitable[str]]:
        async def read() -> str:
            reads.append(key)
            return key

        return read

    return reader


async def rows(store: Store) -> list[int]:
    return [int(n) for n in await store.query("SELECT VALUE n FROM t ORDER BY n")]


async def test_an_answer_is_kept_until_the_next_commit(store: Store) -> None:
    kept = Unchanged(store, 8, 100)
    reads = 0

    async def read() -> list[int]:
        nonlocal reads
        reads += 1
        return await rows(store)

    await store.write(Insert("t", {"id": "a", "n": 1}))
    assert await kept.get("k", read) == [1]
    assert await kept.get("k", read) == [1]
    assert reads == 1 and kept.hits == 1
    await store.write(Insert("t", {"id": "b", "n": 2}))
    assert await kept.get("k", read) == [1, 2]
    assert reads == 2
    await store.write(Merge("t", "a", {"n": 0}))
    assert await kept.get("k", read) == [0, 2]


async def test_only_size_answers_are_kept_the_least_recently_used_going_first(store: Store) -> None:
    kept = Unchanged(store, 2, 100)
    reads: list[str] = []
    reader = recorder(reads)

    for key in ("a", "b", "a", "c", "a", "b"):
        assert await kept.get(key, reader(key)) == key
    assert reads == ["a", "b", "c", "b"]  # "b" went when "c" came; "a" was used since


async def test_nothing_is_kept_while_a_lazy_change_is_pending() -> None:
    store = Store("mem://", lazy_delay_s=NEVER, lazy_max_age_s=NEVER)
    await store.open()
    try:
        kept = Unchanged(store, 8, 100)
        await store.write(Insert("t", {"id": "a", "n": 1}))
        assert await kept.get("k", lambda: rows(store)) == [1]
        # A lazy change alone commits nothing: it is pending, and the read applies it.
        await store.write(Lazy("t", "a", {"n": 5}, 10))
        assert store.pending_tables == {"t"}
        assert await kept.get("k", lambda: rows(store)) == [5]
        await store.write(Lazy("t", "a", {"n": 6}, 11))
        assert await kept.get("k", lambda: rows(store)) == [6]
    finally:
        await store.close()


async def test_an_answer_read_while_a_commit_landed_is_returned_not_kept(store: Store) -> None:
    kept = Unchanged(store, 8, 100)
    await store.write(Insert("t", {"id": "a", "n": 1}))

    async def slow_read() -> list[int]:
        before = await rows(store)
        await store.write(Insert("t", {"id": "b", "n": 2}))  # lands meanwhile
        return before

    assert await kept.get("k", slow_read) == [1]
    assert await kept.get("k", lambda: rows(store)) == [1, 2]


async def test_size_zero_keeps_nothing(store: Store) -> None:
    kept = Unchanged(store, 0, 100)
    calls = 0

    async def read() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        return calls

    assert [await kept.get("k", read) for _ in range(3)] == [1, 2, 3]


async def test_answers_weigh_no_more_than_the_weight_kept(store: Store) -> None:
    kept = Unchanged(store, 8, 100)
    reads: list[str] = []
    reader = recorder(reads)

    assert await kept.get("heavy", reader("heavy"), 101) == "heavy"  # alone over the weight
    assert await kept.get("heavy", reader("heavy"), 101) == "heavy"
    for key in ("a", "b", "a", "c"):  # 60 + 30 + 20: "b", the least recently used, goes
        assert await kept.get(key, reader(key), {"a": 60, "b": 30, "c": 20}[key]) == key
    assert await kept.get("a", reader("a"), 60) == "a"
    assert await kept.get("b", reader("b"), 30) == "b"
    assert reads == ["heavy", "heavy", "a", "b", "c", "b"]


def test_nothing_is_kept_for_a_remote_store_other_processes_may_write() -> None:
    assert Unchanged(Store("ws://db.example:8000"), 8, 100).size == 0
    assert Unchanged(Store("surrealkv:///srv/data/db"), 8, 100).size == 8
