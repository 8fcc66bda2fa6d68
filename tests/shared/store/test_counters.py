"""Counters (shared/store/counters.py): deltas commit with the writes they travel with,
coalesce per commit, and a lazy row's counts are not counted again when it is applied."""

from __future__ import annotations

import asyncio

import pytest

from shared.store.counters import moved, read_counter, read_counters
from shared.store.store import Store
from shared.store.writes import Count, Insert, Lazy, Plan, Stmt


async def test_deltas_add_up_and_a_missing_counter_reads_empty(store: Store) -> None:
    assert await read_counter(store, "things") == {}
    await store.write(Count("things", "Pending", 3), Count("things", "Pending", -1), Count("things", "n", 1))
    await store.write(*moved("things", "Pending", "Done", 2))
    assert await read_counter(store, "things") == {"Done": 2, "n": 1}
    both = await read_counters(store, ["things", "other"])
    assert both == {"things": {"Done": 2, "n": 1}, "other": {}}


def test_a_commit_writes_each_counter_row_once() -> None:
    plan = Plan()
    for _ in range(5000):
        plan.add(Count("task", "Pending", 1), own=False)
    plan.add(Count("task", "Running", 0), own=False)
    sql, params, _ = plan.build()
    assert sql.count("UPSERT") == 1 and "Running" not in sql
    assert 5000 in params.values()


def test_a_field_name_is_never_request_text() -> None:
    with pytest.raises(ValueError):
        Plan().add(Count("task", "x = 1; DELETE task", 1))


async def test_a_refused_commit_counts_nothing(store: Store) -> None:
    await store.write(Insert("t", {"id": "a"}))
    with pytest.raises(Exception, match="already exists"):
        await store.write(Insert("t", {"id": "a"}, counts=(Count("t", "n", 1),)))
    assert await read_counter(store, "t") == {}


async def test_lazy_counts_commit_with_the_log_not_with_the_row(store: Store) -> None:
    store.lazy_delay_s = 30.0  # keep the row pending: only a read applies it
    store.lazy_max_age_s = 30.0
    await store.write(
        Lazy("t", "x", {"status": "Pending"}, 1, create=True, counts=(Count("t", "Pending", 1),))
    )
    await store.write(
        Lazy("t", "x", {"status": "Done"}, 2, counts=tuple(moved("t", "Pending", "Done"))),
        Stmt("UPSERT meta:probe SET at = 1"),
    )
    await asyncio.sleep(0)
    assert await store.query("SELECT VALUE status FROM t") == ["Done"]
    assert await read_counter(store, "t") == {"Done": 1}
