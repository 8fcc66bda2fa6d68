"""The store's log writes and lazily applied rows, on the real embedded SurrealDB.

``Append``: one row per table per commit, keyed by its last position, entries as a
CBOR blob. ``Lazy``: changes folded per row and applied later, but before any read,
before a statement or a merge to the same row, when the writer idles, when the oldest
is too old, when too many are pending and at close; every application records the
position up to which every lazy change is applied (``meta:lazy_mark``) and never more.

Waits poll the store's counters with bounded loops; nothing asserts on durations."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from surrealdb import RecordID

from shared.errors import StoreError
from shared.store.codec import log_entries
from shared.store.lazy_rows import TICK
from shared.store.store import Store
from shared.store.writes import Append, Insert, Lazy, Merge, Put, Stmt

NEVER = 3600.0  # a delay or age no test reaches: nothing is applied by the timer
WAIT_S = 20.0  # bound of every poll (the per-test timeout is 60 s)


@contextlib.asynccontextmanager
async def opened(url: str = "mem://", **kw: Any) -> AsyncIterator[Store]:
    """An open store with a schemaless table ``t`` (the table every test writes)."""
    store = Store(url, **kw)
    await store.open()
    try:
        await store.write(Stmt("DEFINE TABLE IF NOT EXISTS t SCHEMALESS"))
        yield store
    finally:
        await store.close()


async def until(cond: Callable[[], bool], what: str, *, step: float = 0.005) -> None:
    """Poll ``cond`` (every ``step`` seconds; 0 means every loop turn) until it holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        await asyncio.sleep(step)


async def row(store: Store, rid: str) -> dict[str, Any] | None:
    rows = await store.query("SELECT * FROM $r", {"r": RecordID("t", rid)})
    return rows[0] if rows else None


# -- Append ---------------------------------------------------------------------


async def test_appends_of_one_write_are_one_row_keyed_by_the_last_position() -> None:
    async with opened() as s:
        await s.write(
            Append("t", 1, "a", {"n": 1}),
            Append("t", 2, "b", {"n": 2}),
            Append("t", 3, "a", {"n": 3}),
        )
        rows = await s.query("SELECT * FROM t")
        assert len(rows) == 1
        (r,) = rows
        assert r["id"] == "3"
        assert (r["first"], r["last"]) == (1, 3)
        assert r["keys"] == ["a", "b"]  # distinct, in order of first appearance
        assert isinstance(r["entries"], bytes)
        assert log_entries(r) == [{"n": 1}, {"n": 2}, {"n": 3}]


async def test_appends_of_separate_writes_are_separate_rows() -> None:
    async with opened() as s:
        await s.write(Append("t", 1, "a", {"n": 1}), Append("t", 2, "a", {"n": 2}))
        await s.write(Append("t", 3, "b", {"n": 3}))
        await s.write(Append("t", 4, "c", {"n": 4}), Append("t", 5, "b", {"n": 5}))
        rows = await s.query("SELECT * FROM t ORDER BY last")
        assert [(r["id"], r["first"], r["last"], r["keys"]) for r in rows] == [
            ("2", 1, 2, ["a"]),
            ("3", 3, 3, ["b"]),
            ("5", 4, 5, ["c", "b"]),
        ]
        assert [e["n"] for r in rows for e in log_entries(r)] == [1, 2, 3, 4, 5]


async def test_appends_to_two_tables_in_one_write_are_one_row_each() -> None:
    async with opened() as s:
        await s.write(Stmt("DEFINE TABLE u SCHEMALESS"))
        await s.write(
            Append("t", 1, "a", {"n": 1}),
            Append("u", 2, "x", {"m": 2}),
            Append("t", 3, "a", {"n": 3}),
        )
        t_rows = await s.query("SELECT * FROM t")
        u_rows = await s.query("SELECT * FROM u")
        assert [(r["id"], r["first"], r["last"]) for r in t_rows] == [("3", 1, 3)]
        assert [(r["id"], r["first"], r["last"]) for r in u_rows] == [("2", 2, 2)]
        assert log_entries(t_rows[0]) == [{"n": 1}, {"n": 3}]
        assert log_entries(u_rows[0]) == [{"m": 2}]


async def test_log_entries_round_trip_nested_values_and_aware_datetimes() -> None:
    plus_two = timezone(timedelta(hours=2))
    at = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=plus_two)
    utc_at = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    entry = {
        "at": at,
        "utc": utc_at,
        "patch": {"status": "Running", "tries": [1, 2]},
        "note": None,
        "ok": True,
        "ratio": 0.5,
    }
    async with opened() as s:
        await s.write(Append("t", 7, "k", entry))
        (r,) = await s.query("SELECT * FROM t")
        (decoded,) = log_entries(r)
        assert decoded == entry  # the same instants (aware datetimes compare so)
        # packed as epoch numbers: every date reads back in UTC, to the microsecond
        assert decoded["at"].utcoffset() == timedelta(0) and decoded["at"].microsecond == 123456
        assert decoded["utc"].utcoffset() == timedelta(0)


def test_log_entries_of_a_legacy_row_is_the_row_itself() -> None:
    legacy = {"id": "5", "seq": 5, "entity": "w1", "patch": {"status": "Done"}}
    assert log_entries(legacy) == [legacy]


# -- Lazy: folded, then applied before reads -----------------------------------


async def test_lazy_changes_are_folded_per_row_and_applied_before_a_read() -> None:
    async with opened(lazy_delay_s=NEVER, lazy_max_age_s=NEVER) as s:
        await s.write(Lazy("t", "r", {"a": 1, "b": 2, "c": "x"}, 10, create=True))
        await s.write(Lazy("t", "r", {"b": 3, "c": None}, 11))
        await s.write(Lazy("t", "r", {"d": 4}, 12, settled=True))
        assert s.lazy_pending == 1
        assert s.lazy_rows_applied == 0
        # lazy_mark() reads the stored value: it neither flushes nor sees pending rows.
        assert await s.lazy_mark() == 0
        assert s.lazy_pending == 1

        rows = await s.query("SELECT * FROM t:r")

        assert rows == [{"id": "r", "a": 1, "b": 3, "d": 4}]  # later wins; None removes
        assert s.lazy_pending == 0
        assert s.lazy_rows_applied == 1
        assert await s.lazy_mark() == 12


async def test_lazy_patch_of_an_existing_row_merges_and_none_removes_a_field() -> None:
    async with opened(lazy_delay_s=NEVER, lazy_max_age_s=NEVER) as s:
        await s.write(Insert("t", {"id": "r", "a": 1, "b": 2, "keep": "k"}))
        await s.write(Lazy("t", "r", {"a": 10, "b": None}, 3))
        await s.write(Lazy("t", "r", {"c": 30}, 4))
        assert s.lazy_pending == 1
        assert await row(s, "r") == {"id": "r", "a": 10, "c": 30, "keep": "k"}
        assert s.lazy_pending == 0
        assert await s.lazy_mark() == 4


async def test_every_read_entry_point_applies_pending_rows_first() -> None:
    async with opened(lazy_delay_s=NEVER, lazy_max_age_s=NEVER) as s:
        await s.write(Lazy("t", "a", {"n": 1}, 1, create=True))
        results = await s.query_each("SELECT * FROM t")
        assert results == [[{"id": "a", "n": 1}]]
        assert s.lazy_pending == 0

        await s.write(Lazy("t", "b", {"n": 2}, 2, create=True))
        assert s.lazy_pending == 1
        rows, total = await s.page("t", order="n", limit=10, offset=0)
        assert (rows, total) == ([{"id": "a", "n": 1}, {"id": "b", "n": 2}], 2)
        assert s.lazy_pending == 0

        await s.write(Lazy("t", "c", {"n": 3}, 3, create=True))
        await s.flush_lazy()
        assert s.lazy_pending == 0
        assert await s.lazy_mark() == 3


async def test_lazy_rows_are_applied_in_their_creation_order_with_the_highest_mark() -> None:
    async with opened(lazy_delay_s=NEVER, lazy_max_age_s=NEVER) as s:
        await s.write(*(Lazy("t", f"r{i}", {"i": i}, 100 + i, create=True) for i in range(5)))
        await s.write(Lazy("t", "r1", {"i": -1}, 200))
        assert s.lazy_pending == 5
        rows = await s.query("SELECT * FROM t ORDER BY id")
        assert [r["i"] for r in rows] == [0, -1, 2, 3, 4]
        assert s.lazy_rows_applied == 5
        assert await s.lazy_mark() == 200


async def _fold_five_rows_then_patch_an_early_one(s: Store) -> None:
    await s.write(*(Lazy("t", f"r{i}", {"i": i}, 100 + i, create=True) for i in range(5)))
    await s.write(Lazy("t", "r1", {"i": -1}, 200))
    assert s.lazy_pending == 5


async def test_a_read_applies_a_backlog_in_chunks_and_never_claims_an_unapplied_row() -> None:
    async with opened(lazy_delay_s=NEVER, lazy_max_age_s=NEVER, lazy_chunk=2) as s:
        await _fold_five_rows_then_patch_an_early_one(s)

        rows = await s.query("SELECT * FROM t ORDER BY id")

        assert [r["i"] for r in rows] == [0, -1, 2, 3, 4]
        assert s.lazy_pending == 0
        assert s.lazy_rows_applied == 5
        assert 104 <= await s.lazy_mark() <= 200


async def test_a_backlog_applied_in_chunks_stores_the_highest_mark() -> None:
    async with opened(lazy_delay_s=NEVER, lazy_max_age_s=NEVER, lazy_chunk=2) as s:
        await _fold_five_rows_then_patch_an_early_one(s)
        await s.flush_lazy()
        assert s.lazy_pending == 0
        assert await s.lazy_mark() == 200


# -- Lazy: applied before other writes that could see or rewrite them -----------


async def test_merge_to_a_pending_row_is_applied_after_its_lazy_create() -> None:
    async with opened(lazy_delay_s=NEVER, lazy_max_age_s=NEVER) as s:
        await s.write(Lazy("t", "r", {"a": 1}, 5, create=True))
        assert s.lazy_pending == 1

        await s.write(Merge("t", "r", {"b": 2}))

        # Applied with that commit, before any read asked for it.
        assert s.lazy_pending == 0
        assert await s.lazy_mark() == 5
        assert await row(s, "r") == {"id": "r", "a": 1, "b": 2}


async def test_merge_to_a_pending_row_applies_that_row_only() -> None:
    """A progress report on a running task must not apply every other pending row."""
    async with opened(lazy_delay_s=NEVER, lazy_max_age_s=NEVER) as s:
        await s.write(*(Lazy("t", f"r{i}", {"i": i}, 10 + i, create=True) for i in range(4)))

        await s.write(Merge("t", "r2", {"progress": 50}))

        assert s.lazy_pending == 3
        assert s.lazy_rows_applied == 1
        assert await s.lazy_mark() == 9  # r0 (position 10) is still pending
        assert await row(s, "r2") == {"id": "r2", "i": 2, "progress": 50}
        assert s.lazy_pending == 0  # that read reached the table: the rest are applied


async def test_merge_to_a_row_lazily_created_in_the_same_write_is_applied_after_it() -> None:
    async with opened(lazy_delay_s=NEVER, lazy_max_age_s=NEVER) as s:
        await s.write(Lazy("t", "r", {"a": 1}, 5, create=True), Merge("t", "r", {"b": 2}))
        assert s.lazy_pending == 0
        assert await s.lazy_mark() == 5
        assert await row(s, "r") == {"id": "r", "a": 1, "b": 2}


async def test_merge_to_an_unrelated_table_does_not_apply_pending_rows() -> None:
    async with opened(lazy_delay_s=NEVER, lazy_max_age_s=NEVER) as s:
        await s.write(Stmt("DEFINE TABLE u SCHEMALESS"), Insert("u", {"id": "z", "n": 0}))
        await s.write(Lazy("t", "r", {"a": 1}, 5, create=True))

        await s.write(Merge("u", "z", {"n": 1}))
        await s.write(Insert("u", {"id": "y", "n": 2}), Append("u", 9, "k", {"e": 1}))

        assert s.lazy_pending == 1
        assert s.lazy_rows_applied == 0
        assert await s.lazy_mark() == 0
        assert await row(s, "r") == {"id": "r", "a": 1}
        assert (await s.query("SELECT n FROM u:z")) == [{"n": 1}]


async def test_a_statement_applies_pending_rows_first_so_it_sees_them() -> None:
    async with opened(lazy_delay_s=NEVER, lazy_max_age_s=NEVER) as s:
        await s.write(Lazy("t", "a", {"n": 1}, 1, create=True))
        await s.write(Lazy("t", "b", {"n": 2}, 2, create=True), Lazy("t", "a", {"m": 1}, 3))
        assert s.lazy_pending == 2

        (updated,) = await s.write(Stmt("UPDATE t SET touched = true RETURN AFTER"))

        assert sorted(r["id"] for r in updated) == ["a", "b"]
        assert s.lazy_pending == 0
        assert await s.lazy_mark() == 3
        assert await s.query("SELECT * FROM t ORDER BY id") == [
            {"id": "a", "n": 1, "m": 1, "touched": True},
            {"id": "b", "n": 2, "touched": True},
        ]


async def test_a_lazy_change_in_the_same_write_as_a_statement_is_applied_before_it() -> None:
    async with opened(lazy_delay_s=NEVER, lazy_max_age_s=NEVER) as s:
        await s.write(
            Lazy("t", "a", {"n": 1}, 1, create=True), Stmt("UPDATE t SET touched = true RETURN NONE")
        )
        assert s.lazy_pending == 0
        assert await s.lazy_mark() == 1
        assert await row(s, "a") == {"id": "a", "n": 1, "touched": True}


async def test_reads_and_statements_of_other_tables_leave_pending_rows_alone() -> None:
    """A read or statement that cannot reach the pending rows' table does not wait for
    them (a submission's thousands of task rows must not be applied in one burst because
    the audit log or a poller touched another table)."""
    async with opened(lazy_delay_s=NEVER, lazy_max_age_s=NEVER) as s:
        await s.write(Stmt("DEFINE TABLE u SCHEMALESS"), Insert("u", {"id": "z", "n": 0}))
        await s.write(Lazy("t", "r", {"a": 1}, 5, create=True))
        assert s.pending_tables == {"t"}

        assert await s.query("SELECT n FROM u:z") == [{"n": 0}]
        assert await s.query("SELECT * FROM $r", {"r": RecordID("u", "z")}) == [{"id": "z", "n": 0}]
        await s.write(Stmt("UPSERT type::thing('u', $id) SET n = 1", {"id": "z"}))

        assert s.lazy_pending == 1
        assert s.lazy_rows_applied == 0
        assert await s.lazy_mark() == 0


@pytest.mark.parametrize(
    ("sql", "params"),
    [
        ("SELECT * FROM t", {}),  # the table named in the text
        ("SELECT * FROM type::thing('t', $id)", {"id": "r"}),
        ("SELECT * FROM $r", {"r": RecordID("t", "r")}),  # a record id bound
        ("SELECT * FROM $ids", {"ids": [RecordID("u", "z"), RecordID("t", "r")]}),  # in a list
        ("SELECT * FROM type::table($tb)", {"tb": "t"}),  # the table's name bound
    ],
)
async def test_a_read_reaching_the_pending_table_applies_its_rows_first(
    sql: str, params: dict[str, Any]
) -> None:
    async with opened(lazy_delay_s=NEVER, lazy_max_age_s=NEVER) as s:
        await s.write(Stmt("DEFINE TABLE u SCHEMALESS"), Insert("u", {"id": "z", "n": 0}))
        await s.write(Lazy("t", "r", {"a": 1}, 5, create=True))

        rows = await s.query(sql, params)

        assert {"id": "r", "a": 1} in rows
        assert s.lazy_pending == 0
        assert s.pending_tables == set()
        assert await s.lazy_mark() == 5


async def test_a_statement_naming_a_table_lazily_written_in_the_same_commit_applies_it() -> None:
    async with opened(lazy_delay_s=NEVER, lazy_max_age_s=NEVER) as s:
        await s.write(Stmt("DEFINE TABLE u SCHEMALESS"))
        await s.write(
            Lazy("t", "a", {"n": 1}, 1, create=True),
            Stmt("UPSERT u:x SET seen = (SELECT VALUE n FROM t:a) RETURN NONE"),
        )
        assert s.lazy_pending == 0
        assert await s.query("SELECT seen FROM u:x") == [{"seen": [1]}]


async def test_puts_create_replace_and_delete_and_the_last_of_a_run_wins() -> None:
    async with opened() as s:
        await s.write(Put("t", "a", {"n": 1, "gone": None}), Put("t", "b", {"n": 2}), Put("t", "c", {"n": 3}))
        assert await s.query("SELECT * FROM t ORDER BY id") == [
            {"id": "a", "n": 1},
            {"id": "b", "n": 2},
            {"id": "c", "n": 3},
        ]
        results = await s.write(
            Put("t", "a", {"m": 10}),  # replaced whole
            Put("t", "b", None),  # deleted
            Put("t", "c", None),
            Put("t", "c", {"n": 30}),  # deleted, then put again: the last wins
            Put("t", "missing", None),  # deleting nothing is no error
        )
        assert results == [None] * 5
        assert await s.query("SELECT * FROM t ORDER BY id") == [{"id": "a", "m": 10}, {"id": "c", "n": 30}]


async def test_a_merge_and_a_put_to_one_record_in_one_run_apply_in_order() -> None:
    async with opened() as s:
        await s.write(Insert("t", {"id": "r", "n": 1}))
        await s.write(Merge("t", "r", {"m": 2}), Put("t", "r", {"p": 3}), Merge("t", "r", {"q": 4}))
        assert await row(s, "r") == {"id": "r", "p": 3, "q": 4}


async def test_puts_leave_pending_rows_of_other_records_alone_but_apply_their_own() -> None:
    async with opened(lazy_delay_s=NEVER, lazy_max_age_s=NEVER) as s:
        await s.write(Lazy("t", "lazy", {"a": 1}, 5, create=True))

        await s.write(Put("t", "other", {"b": 2}), Append("u", 6, "k", {"e": 1}))
        assert s.lazy_pending == 1

        await s.write(Put("t", "lazy", {"c": 3}))  # replaces a row still pending: applied first
        assert s.lazy_pending == 0
        assert await row(s, "lazy") == {"id": "lazy", "c": 3}


# -- Lazy: applied by the writer on its own ---------------------------------------


async def test_idle_writer_applies_a_settled_row_without_any_read() -> None:
    async with opened(lazy_delay_s=0.01, lazy_max_age_s=60) as s:
        await s.write(Lazy("t", "r", {"a": 1}, 42, create=True, settled=True))

        await until(lambda: s.lazy_pending == 0, "the idle writer applied the row")

        assert s.lazy_rows_applied == 1
        assert await s.lazy_mark() == 42  # stored before any read of the row
        assert await row(s, "r") == {"id": "r", "a": 1}


async def test_idle_writer_also_applies_unsettled_rows() -> None:
    async with opened(lazy_delay_s=0.01, lazy_max_age_s=60) as s:
        await s.write(Lazy("t", "r", {"a": 1}, 8, create=True))
        await until(lambda: s.lazy_pending == 0, "the idle writer applied the row")
        assert await s.lazy_mark() == 8


async def test_a_row_reaching_the_maximum_age_is_applied_although_never_idle_long_enough() -> None:
    async with opened(lazy_delay_s=NEVER, lazy_max_age_s=0.02) as s:
        await s.write(Lazy("t", "r", {"a": 1}, 3, create=True))
        await until(lambda: s.lazy_pending == 0, "the old row was applied")
        assert await s.lazy_mark() == 3
        assert await row(s, "r") == {"id": "r", "a": 1}


async def test_no_row_is_applied_while_a_foreground_write_is_prepared_and_they_go_right_after() -> None:
    async with opened(lazy_delay_s=0.01, lazy_max_age_s=0.02) as s:
        await s.write(Lazy("t", "old", {"a": 1}, 1, create=True, settled=True))
        with s.foreground():
            # idle and past the maximum age: due twice over, yet neither applied alone
            await asyncio.sleep(0.1)
            assert s.lazy_pending == 1 and s.lazy_rows_applied == 0
            # nor ridden on the foreground write's commit
            await s.write(Insert("t", {"id": "fg", "b": 2}))
            assert s.lazy_pending == 1 and s.lazy_rows_applied == 0
        await until(lambda: s.lazy_pending == 0, "the rows were applied once the foreground ended")
        assert await row(s, "old") == {"id": "old", "a": 1}
        assert await s.lazy_mark() == 1


async def test_a_foreground_write_does_not_hold_back_a_backlog_past_the_maximum() -> None:
    async with opened(lazy_delay_s=NEVER, lazy_max_age_s=NEVER, lazy_max=3) as s:
        with s.foreground():
            await s.write(*(Lazy("t", f"r{i}", {"i": i}, i, create=True) for i in range(1, 5)))
            await until(lambda: s.lazy_pending == 0, "the backlog was applied")


async def test_a_busy_writer_keeps_a_row_that_will_change_again_until_it_settles() -> None:
    """While the writer is busy, a row whose last change is not settled (a task pending or
    running) waits for ``lazy_unsettled_max_age_s``, not ``lazy_max_age_s``: it is written
    once as it ends, not also as it was. Once settled it is due ``lazy_max_age_s`` later."""
    async with opened(lazy_delay_s=NEVER, lazy_max_age_s=0.02, lazy_unsettled_max_age_s=NEVER) as s:
        await s.write(Stmt("DEFINE TABLE u SCHEMALESS"))
        await s.write(Lazy("t", "r", {"a": 1}, 3, create=True))
        await asyncio.sleep(0.1)  # past lazy_max_age_s: an unsettled row is not due yet
        await s.write(Insert("u", {"id": "busy"}))  # a commit the due rows would ride on
        assert s.lazy_pending == 1
        assert s.lazy_rows_applied == 0

        await s.write(Lazy("t", "r", {"b": 2}, 4, settled=True))
        await until(lambda: s.lazy_pending == 0, "the settled row was applied")
        assert s.lazy_rows_applied == 1  # once, with both changes
        assert await s.lazy_mark() == 4
        assert await row(s, "r") == {"id": "r", "a": 1, "b": 2}


async def test_an_unsettled_row_is_applied_at_its_own_maximum_age() -> None:
    async with opened(lazy_delay_s=NEVER, lazy_max_age_s=0.01, lazy_unsettled_max_age_s=0.05) as s:
        await s.write(Lazy("t", "r", {"a": 1}, 3, create=True))
        await until(lambda: s.lazy_pending == 0, "the unsettled row reached its age")
        assert await s.lazy_mark() == 3


async def test_too_many_pending_rows_are_applied_at_once() -> None:
    async with opened(lazy_delay_s=NEVER, lazy_max_age_s=NEVER, lazy_max=3) as s:
        await s.write(*(Lazy("t", f"r{i}", {"i": i}, i, create=True) for i in range(1, 5)))
        # Applied by the writer right after the commit that made the backlog too large.
        await until(lambda: s.lazy_pending == 0, "the backlog was applied")
        assert s.lazy_rows_applied == 4
        assert await s.lazy_mark() == 4


async def _partially_applied(s: Store) -> None:
    """Fold row A (unsettled, mark 5) then row B (settled, mark 7); let the idle writer
    apply one chunk of one row; check it applied B and stored 4, not 7."""
    await s.write(Stmt("DEFINE TABLE u SCHEMALESS"))
    # Two writes queued back to back: they share one commit, so no timer can apply A
    # before B is folded, and A is the older row.
    first = s.enqueue(Lazy("t", "a", {"n": 5}, 5, create=True))
    second = s.enqueue(Lazy("t", "b", {"n": 7}, 7, create=True, settled=True))
    await first
    await second
    assert s.lazy_pending == 2
    assert s.lazy_rows_applied == 0

    # Polled every loop turn, so the first application is seen before the writer can
    # take its next tick; a write queued right then keeps the writer busy (not idle)
    # for another lazy_delay_s, so A stays pending while the stored mark is read.
    await until(lambda: s.lazy_rows_applied >= 1, "the first idle application", step=0)
    assert s.lazy_rows_applied == 1
    assert s.lazy_pending == 1
    await s.enqueue(Insert("u", {"id": "hold"}))
    assert s.lazy_pending == 1

    mark = await s.lazy_mark()

    # 4: B (settled) went first; A (mark 5) is still pending, so nothing at or after 5
    # may be claimed. (6 would mean A went first; 7 would skip A on a replay.)
    assert mark == 4
    assert s.lazy_pending == 1


async def test_partial_application_stores_the_mark_before_the_oldest_pending_row() -> None:
    async with opened(lazy_delay_s=0.05, lazy_max_age_s=60, lazy_chunk=1) as s:
        await _partially_applied(s)

        await until(lambda: s.lazy_pending == 0, "the idle writer applied the other row")
        assert s.lazy_rows_applied == 2
        assert await s.lazy_mark() >= 5  # never behind a row that is applied
        assert await s.query("SELECT * FROM t ORDER BY id") == [
            {"id": "a", "n": 5},
            {"id": "b", "n": 7},
        ]


async def test_once_every_row_is_applied_the_mark_is_the_highest_of_them() -> None:
    async with opened(lazy_delay_s=0.05, lazy_max_age_s=60, lazy_chunk=1) as s:
        await _partially_applied(s)

        await until(lambda: s.lazy_pending == 0, "the idle writer applied the other row")
        assert await s.lazy_mark() == 7


async def test_a_read_after_a_partial_application_stores_the_highest_mark() -> None:
    async with opened(lazy_delay_s=0.05, lazy_max_age_s=60, lazy_chunk=1) as s:
        await _partially_applied(s)

        await s.flush_lazy()
        assert s.lazy_pending == 0
        assert await s.lazy_mark() == 7


# -- Lazy: close, restart and failures ---------------------------------------------


async def test_close_applies_pending_rows_and_a_restart_finds_them(tmp_path: Path) -> None:
    url = f"surrealkv://{tmp_path}/db"
    async with opened(url, lazy_delay_s=NEVER, lazy_max_age_s=NEVER) as s:
        await s.write(Lazy("t", "r", {"a": 1}, 9, create=True))
        assert s.lazy_pending == 1

    async with opened(url, lazy_delay_s=NEVER, lazy_max_age_s=NEVER) as again:
        assert await again.lazy_mark() == 9
        assert await row(again, "r") == {"id": "r", "a": 1}


async def test_close_releases_the_directory_even_if_a_pending_row_cannot_be_applied(
    tmp_path: Path,
) -> None:
    url = f"surrealkv://{tmp_path}/db"
    s = Store(url, lock_dir=tmp_path, lazy_delay_s=NEVER, lazy_max_age_s=NEVER)
    await s.open()
    try:
        await s.write(Stmt("DEFINE TABLE t SCHEMALESS"), Insert("t", {"id": "r", "a": 0}))
        # A lazy create of a row that exists: the database refuses to apply it.
        await s.write(Lazy("t", "r", {"a": 1}, 4, create=True))
        assert s.lazy_pending == 1
    finally:
        with contextlib.suppress(StoreError):
            await s.close()

    async with opened(url, lock_dir=tmp_path) as again:
        assert await again.lazy_mark() == 0  # the refused change is not claimed
        assert await row(again, "r") == {"id": "r", "a": 0}


async def test_close_with_the_lazy_write_still_queued_applies_it(tmp_path: Path) -> None:
    url = f"surrealkv://{tmp_path}/db"
    async with opened(url, lazy_delay_s=NEVER, lazy_max_age_s=NEVER) as s:
        queued = s.enqueue(Lazy("t", "r", {"a": 1}, 9, create=True))
        await s.close()  # the writer takes the write and the stop in one batch
        assert await queued == [None]
        assert s.lazy_pending == 0

    async with opened(url, lazy_delay_s=NEVER, lazy_max_age_s=NEVER) as again:
        assert await again.lazy_mark() == 9
        assert await row(again, "r") == {"id": "r", "a": 1}


async def test_applied_rows_and_the_mark_survive_a_restart(tmp_path: Path) -> None:
    url = f"surrealkv://{tmp_path}/db"
    async with opened(url, lazy_delay_s=NEVER, lazy_max_age_s=NEVER) as s:
        await s.write(Lazy("t", "r", {"a": 1}, 9, create=True))
        await s.flush_lazy()

    async with opened(url, lazy_delay_s=NEVER, lazy_max_age_s=NEVER) as again:
        assert await again.lazy_mark() == 9
        # A later application never moves the mark below the one it found.
        await again.write(Lazy("t", "r", {"b": 2}, 3))
        await again.flush_lazy()
        assert await again.lazy_mark() == 9
        assert await row(again, "r") == {"id": "r", "a": 1, "b": 2}


async def test_a_failed_write_neither_applies_nor_keeps_its_lazy_change() -> None:
    async with opened(lazy_delay_s=NEVER, lazy_max_age_s=NEVER) as s:
        with pytest.raises(StoreError):
            await s.write(Lazy("t", "r", {"a": 1}, 5, create=True), Stmt('THROW "boom"'))

        assert s.lazy_pending == 0
        assert s.lazy_rows_applied == 0
        assert await s.lazy_mark() == 0
        assert await s.query("SELECT * FROM t") == []
        assert await s.lazy_mark() == 0


async def test_a_failed_write_does_not_lose_earlier_pending_rows() -> None:
    async with opened(lazy_delay_s=NEVER, lazy_max_age_s=NEVER) as s:
        await s.write(Lazy("t", "kept", {"a": 1}, 4, create=True))
        with pytest.raises(StoreError):
            await s.write(Lazy("t", "lost", {"a": 2}, 5, create=True), Stmt('THROW "boom"'))

        # The earlier row was either applied ahead of the failed statement (its own
        # commit) or is still pending; the failed write's own change is neither.
        assert s.lazy_pending + s.lazy_rows_applied == 1
        assert await s.lazy_mark() in (0, 4)
        assert await s.query("SELECT * FROM t") == [{"id": "kept", "a": 1}]
        assert await s.lazy_mark() == 4


async def test_a_failed_write_does_not_lose_a_lazy_change_queued_in_the_same_commit() -> None:
    async with opened(lazy_delay_s=NEVER, lazy_max_age_s=NEVER) as s:
        good = s.enqueue(Lazy("t", "good", {"a": 1}, 6, create=True))
        bad = s.enqueue(Lazy("t", "bad", {"a": 2}, 7, create=True), Stmt('THROW "boom"'))
        assert await good == [None]
        with pytest.raises(StoreError):
            await bad

        assert await s.query("SELECT * FROM t") == [{"id": "good", "a": 1}]
        assert await s.lazy_mark() == 6


async def test_a_row_the_store_refuses_is_dropped_and_does_not_block_reads_or_neighbours() -> None:
    async with opened(lazy_delay_s=NEVER, lazy_max_age_s=NEVER) as s:
        await s.write(Insert("t", {"id": "taken", "a": 0}))
        await s.write(
            Lazy("t", "fine", {"a": 1}, 4, create=True), Lazy("t", "taken", {"a": 2}, 5, create=True)
        )  # exists: refused
        assert s.lazy_pending == 2

        rows = await s.query("SELECT * FROM t ORDER BY id")
        assert rows == [{"id": "fine", "a": 1}, {"id": "taken", "a": 0}]
        assert s.lazy_pending == 0
        assert await s.query("SELECT VALUE a FROM t:fine") == [1]  # and reads keep working


async def test_notify_tells_each_callback_once_in_queue_order_and_a_refused_write_its_error() -> None:
    async with opened() as store:
        told: list[tuple[str, BaseException | None]] = []
        store.notify(lambda e: told.append(("first", e)), Stmt("CREATE t:1 SET v = 1 RETURN NONE"))
        store.notify(lambda e: told.append(("refused", e)), Stmt("CREATE t:1 SET v = 2 RETURN NONE"))
        after = store.enqueue(Stmt("CREATE t:2 SET v = 3 RETURN NONE"))
        await after  # the refused write does not fail its neighbours
        assert [name for name, _ in told] == ["first", "refused"]  # told before the later future
        assert told[0][1] is None and isinstance(told[1][1], StoreError)
        assert await store.query("SELECT VALUE v FROM t ORDER BY v") == [1, 3]


async def test_the_mark_stays_below_a_pending_row_that_came_in_out_of_order() -> None:
    async with opened(lazy_delay_s=NEVER, lazy_max_age_s=NEVER) as store:
        await store.write(Lazy("t", "a", {"v": 1}, 5, create=True))
        await store.write(Lazy("t", "c", {"v": 3}, 7, create=True))
        await store.write(Lazy("t", "b", {"v": 2}, 3, create=True))  # an older position, later
        await store.write(Merge("t", "a", {"w": 1}))  # applies row a alone
        assert store.lazy_pending == 2
        assert await store.lazy_mark() == 2  # b (3) is not applied yet, however late it came


async def test_rows_due_ride_on_a_group_commit_and_a_newer_change_to_one_stays_pending() -> None:
    async with opened(lazy_delay_s=NEVER, lazy_max_age_s=NEVER) as s:
        await s.write(Lazy("t", "a", {"v": 1}, 1, create=True))
        assert s.lazy_pending == 1
        s.lazy_max_age_s = 0.0  # row a is due from now on
        commits = s.commits
        # A tick and a batch reach the writer together: the batch holds row b and a newer
        # change to row a.
        s._queue.put_nowait(TICK)
        await s.write(Lazy("t", "b", {"v": 2}, 2, create=True), Lazy("t", "a", {"v": 5}, 3))
        s.lazy_max_age_s = NEVER
        assert s.commits == commits + 1  # row a applied with the batch: one commit, one sync
        assert s.lazy_rows_applied == 1 and s.lazy_pending == 2  # b, and a's change at 3
        assert await s.lazy_mark() == 1  # not 3: that change of a is not applied yet
        # A read applies the rest, a's newer change over the one the batch carried.
        assert await s.query("SELECT VALUE v FROM t ORDER BY v") == [2, 5]


async def test_rows_due_that_the_batch_applied_itself_are_not_applied_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with opened(lazy_delay_s=NEVER, lazy_max_age_s=NEVER) as s:
        await s.write(Lazy("t", "a", {"v": 1}, 1, create=True))
        s.lazy_max_age_s = 0.0  # row a is due from now on
        s._queue.put_nowait(TICK)
        # A statement reaching t applies every pending row before it commits.
        await s.write(Stmt("UPDATE t SET w = 2 RETURN NONE"))
        s.lazy_max_age_s = NEVER
        await s.write(Stmt("CREATE t:z SET v = 0 RETURN NONE"))  # the writer went on
        assert "store writer failed" not in caplog.text
        assert s.lazy_pending == 0 and s.lazy_rows_applied == 1
        assert await s.query("SELECT v, w FROM t:a") == [{"v": 1, "w": 2}]
