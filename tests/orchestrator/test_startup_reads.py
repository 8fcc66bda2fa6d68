"""What the engine reads at start costs the same at any history size, and answers what
the old scans answered: the journal position numbering continues from (a walk of record
ids from the lazy mark instead of a sort of the whole journal), and whether any undo was
cut off by a stop (the status counter instead of a scan of every task row).

Each test compares the new read with the scan it replaced, on a real data directory,
after many commits, after retention pruned journal segments, and after a crash (the
pending row changes dropped, as a SIGKILL would: see ``test_catch_up.py``)."""

from __future__ import annotations

import asyncio
import contextlib
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from orchestrator.engine import Engine
from orchestrator.journal import JOURNAL
from orchestrator.keys import ENGINE
from orchestrator.models import BatchRequest, RollbackRequest
from orchestrator.providers import OperationContext, OperationResult
from orchestrator.repository import Repository
from orchestrator.retention import Retention
from orchestrator.rollback import RollbackService
from orchestrator.runtime import WorkflowState
from orchestrator.states import WorkflowStatus
from shared.events.bus import EventBus
from shared.store.counters import read_counter
from shared.store.store import Store
from shared.store.writes import Append, Insert
from tests.helpers.counters import counter_mismatches
from tests.helpers.services import cc_settings, running_apps
from tests.orchestrator.test_catch_up import NEVER, crash, settings_for

SORTED = "SELECT VALUE last FROM journal ORDER BY last DESC LIMIT 1"


async def scanned_last(store: Store) -> int:
    """What ``last_journal_seq`` answered before: a sort of the whole journal."""
    rows = await store.query(SORTED)
    return int(rows[0]) if rows else 0


async def counted_rolling_back(store: Store) -> int:
    """What the task status counter says is RollingBack (one lookup: what the sweep of
    interrupted undos reads before any task row)."""
    return (await read_counter(store, "task")).get("RollingBack", 0)


async def scanned_rolling_back(store: Store) -> bool:
    """What the sweep of interrupted undos found before: a scan of every task row."""
    return bool(await store.query("SELECT VALUE id FROM task WHERE status = 'RollingBack'"))


def open_store(path: Path, *, lazy: bool = True) -> Store:
    """A data directory's store; ``lazy=False``: row changes are never applied on their
    own, so a crash leaves the journal ahead of the lazy mark."""
    if lazy:
        return Store(f"surrealkv://{path}/db")
    return Store(f"surrealkv://{path}/db", lazy_delay_s=NEVER, lazy_max_age_s=NEVER)


class SlowUndo:
    """Runs at once; its undo takes its time (so a stop can cut it off)."""

    name = "slow_undo"

    def __init__(self) -> None:
        self.undoing = asyncio.Event()

    def describe(self, spec: Any, provider: str) -> tuple[str, list[str]]:
        return "slow_undo", []

    def check(self, spec: Any, provider: str) -> str:
        return "nothing"

    async def apply(self, ctx: OperationContext) -> OperationResult:
        return OperationResult(output="done")

    async def rollback(self, ctx: OperationContext) -> OperationResult:
        self.undoing.set()
        await asyncio.sleep(30)
        return OperationResult()


async def start(path: Path, *, lazy: bool = True) -> tuple[Engine, Store, SlowUndo]:
    store = open_store(path, lazy=lazy)
    await store.open()
    engine = Engine(settings_for(path), store, EventBus(), rollbacks=RollbackService)
    undo = SlowUndo()
    engine.registry.providers["slow_undo"] = undo
    await engine.start()
    return engine, store, undo


async def stop(engine: Engine, store: Store) -> None:
    await engine.stop()
    await store.close()


def batch(n: int, provider: str = "noop") -> BatchRequest:
    ops = [{"id": f"op{i}", "type": "server_batch", "provider": provider} for i in range(n)]
    return BatchRequest.model_validate({"name": "b", "parallel_limit": 4, "operations": ops})


async def finished(engine: Engine, wf: WorkflowState) -> None:
    driver = engine.runs[wf.id].driver if wf.id in engine.runs else None
    if driver is not None:
        await asyncio.wait_for(asyncio.shield(driver), 30)


async def test_an_empty_store_starts_at_position_zero(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    await store.open()
    try:
        assert await Repository(store).last_journal_seq() == 0 == await scanned_last(store)
    finally:
        await store.close()


async def test_the_last_position_after_many_commits_and_restarts(tmp_path: Path) -> None:
    for _ in range(3):
        engine, store, _ = await start(tmp_path)
        try:
            assert engine.transitions.last_seq == await scanned_last(store)
            for _ in range(3):
                await finished(engine, await engine.submit(batch(5)))
            await store.flush_lazy()
            assert await Repository(store).last_journal_seq() == await scanned_last(store)
            assert await store.lazy_mark() == await scanned_last(store)  # where the walk starts
        finally:
            await stop(engine, store)
    store = open_store(tmp_path)
    await store.open()
    try:
        last = await Repository(store).last_journal_seq()
        assert last == await scanned_last(store) >= 3 * 3 * (5 * 2 + 2)
    finally:
        await store.close()


async def test_the_last_position_after_a_crash_left_the_rows_behind(tmp_path: Path) -> None:
    engine, store, _ = await start(tmp_path, lazy=False)
    for _ in range(3):
        await finished(engine, await engine.submit(batch(4)))
    last = engine.transitions.last_seq
    assert await crash(engine, store) > 0  # the rows' changes never reached the store

    store = open_store(tmp_path)
    await store.open()
    try:
        assert await store.lazy_mark() < last  # the walk starts behind the end
        assert await Repository(store).last_journal_seq() == last == await scanned_last(store)
    finally:
        await store.close()
    engine, store, _ = await start(tmp_path)  # catch-up, then numbering goes on after it
    try:
        assert engine.transitions.last_seq == last
        await finished(engine, await engine.submit(batch(1)))
        assert engine.transitions.last_seq > last
        assert await Repository(store).last_journal_seq() == engine.transitions.last_seq
    finally:
        await stop(engine, store)


async def test_a_crash_backlog_longer_than_a_page_is_walked_to_its_end(tmp_path: Path) -> None:
    store = open_store(tmp_path, lazy=False)
    await store.open()
    # The journal rows of 1,234 commits after the mark (as their Append writes shape
    # them: keyed by their last position), none of their row changes applied.
    rows = [
        Insert(JOURNAL, {"id": seq, "first": seq, "last": seq, "keys": ["w"], "entries": b""})
        for seq in range(7, 7 + 1_234)
    ]
    await store.write(store.mark_write(7), *rows)
    await store.close()

    store = open_store(tmp_path)
    await store.open()
    try:
        assert await store.lazy_mark() == 7
        assert await Repository(store).last_journal_seq() == 7 + 1_233 == await scanned_last(store)
    finally:
        await store.close()


async def test_a_store_that_never_recorded_a_mark_falls_back_to_the_scan(tmp_path: Path) -> None:
    store = open_store(tmp_path, lazy=False)
    await store.open()
    try:
        for seq in (3, 9, 12):
            await store.write(Append(JOURNAL, seq, "w", {"entity_kind": "task"}))
        assert await store.lazy_mark() == 0
        assert await Repository(store).last_journal_seq() == 12 == await scanned_last(store)
    finally:
        await store.close()


async def test_the_last_position_after_retention_pruned_the_journal(tmp_path: Path) -> None:
    engine, store, _ = await start(tmp_path)
    try:
        for _ in range(4):
            await finished(engine, await engine.submit(batch(3)))
        settings = settings_for(tmp_path).model_copy(update={"retention_days": 30, "retention_chunk": 2})
        pruned = await Retention(settings, store).run_once(datetime.now(UTC) + timedelta(days=40))
        assert pruned["journal"] > 0 and pruned["workflow"] == 4
        last = engine.transitions.last_seq
        assert await Repository(store).last_journal_seq() == last == await scanned_last(store)
    finally:
        await stop(engine, store)
    engine, store, _ = await start(tmp_path)
    try:
        assert engine.transitions.last_seq == last
    finally:
        await stop(engine, store)


async def test_an_undo_cut_off_by_a_crash_is_found_by_its_counter(tmp_path: Path) -> None:
    engine, store, undo = await start(tmp_path, lazy=False)
    wf = await engine.submit(batch(2, "slow_undo"))
    await finished(engine, wf)
    assert await counted_rolling_back(store) == 0
    request = RollbackRequest(operation_ids=["op0", "op1"], workflow_id=wf.id)
    rolling = asyncio.create_task(engine.rollbacks.execute(request))
    await asyncio.wait_for(undo.undoing.wait(), 10)
    assert await counted_rolling_back(store) == 1  # (a scan here would apply the rows)
    rolling.cancel()  # the process dies: the undo never finishes
    with contextlib.suppress(asyncio.CancelledError):
        await rolling
    assert await crash(engine, store) > 0  # and the task rows never heard of it

    engine, store, _ = await start(tmp_path)  # catch-up, then the sweep
    try:
        rows = await engine.repo.tasks_of(wf.id)
        statuses = sorted(r["status"] for r in rows)
        assert statuses == ["Completed", "Failed"]
        failed = next(r for r in rows if r["status"] == "Failed")
        assert "rollback interrupted" in failed["error"]
        assert await counted_rolling_back(store) == 0 and not await scanned_rolling_back(store)
        assert await counter_mismatches(store) == []
        row = await engine.repo.workflow(wf.id)
        assert row is not None and row["status"] == WorkflowStatus.COMPLETED
    finally:
        await stop(engine, store)


# Tables that grow with history: a start may look rows of them up, or walk an index or
# a record-id range, but never read one whole.
HISTORY = {
    "task",
    "journal",
    "workflow",
    "snapshot",
    "checkpoint",
    "rollback",
    "counter",
    "inventory",
    "audit",
    "session",
    "refresh_token",
    "token_revocation",
    "webhook_delivery",
    "webhook_attempt",
    "ext_event",
    "task_page",
    "task_ref",
    "workflow_spec",
}
# A table read with no condition and a LIMIT stops after that many rows: bounded.
_FIRST_ROWS = re.compile(r"^SELECT [^;]*? FROM \w+ LIMIT \d+$", re.IGNORECASE)


class RecordingStore(Store):
    """A real store that also keeps the reads it ran while ``recording``."""

    recording = False

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.reads: list[tuple[str, dict[str, Any]]] = []

    async def _raw(self, sql: str, params: dict[str, Any], *, plain: bool = False) -> list[dict[str, Any]]:
        if self.recording and sql.lstrip().upper().startswith("SELECT"):
            self.reads.append((sql, dict(params)))
        return await super()._raw(sql, params, plain=plain)


def whole_tables(sql: str, plan: list[dict[str, Any]]) -> set[str]:
    if _FIRST_ROWS.match(sql.strip()) and " WHERE " not in sql.upper():
        return set()
    return {
        str(step["detail"].get("table"))
        for step in plan
        if step.get("operation") == "Iterate Table" and step["detail"].get("table") in HISTORY
    }


async def test_a_start_of_both_services_reads_no_history_table_whole(tmp_path: Path) -> None:
    """Every read both services make as they start (``provisioning up``'s composition),
    explained by the embedded planner: none iterates a table that grows with history.
    The planner decides by rules, not by sizes, so a small store shows the plan a big
    one gets."""
    settings = cc_settings(tmp_path, db_url=f"surrealkv://{tmp_path}/db", auth_sync_s=0.05)
    store = RecordingStore(settings.resolved_db_url)
    await store.open()
    try:
        async with running_apps(settings, store) as (_, orch):
            engine = orch.app[ENGINE]
            await finished(engine, await engine.submit(batch(3)))
        await store.flush_lazy()
        store.recording = True
        async with running_apps(settings, store):
            await asyncio.sleep(0.2)  # the background loops' first rounds too
        store.recording = False
        assert len(store.reads) > 10
        scans = {}
        for sql, params in store.reads:
            # (ONLY asks for one result; EXPLAIN answers with the plan's steps)
            [plan] = await store.query_each(f"{sql.replace(' ONLY ', ' ')} EXPLAIN", params)
            if tables := whole_tables(sql, plan or []):
                scans[sql] = tables
        assert scans == {}
    finally:
        await store.close()
