"""The ``local`` provider's inventory: held in memory by its view, stored in pages.

The view's writes are committed here as the engine would (in queue order); what a
fresh view loads from the same store, and what ``GET /state/inventory`` lists, must
be exactly what was written. Through the API: rollbacks restore rows whole, and a
``kill -9`` then a restart shows the same inventory."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp

from orchestrator.inventory_repository import INVENTORY_PAGES, LEGACY_INVENTORY, InventoryRepository
from orchestrator.providers.local_inventory import PAGE_ROWS, InventoryView
from shared.store.store import Store
from shared.store.writes import Paged, Put
from tests.helpers.batches import op
from tests.helpers.orchestrator_api import data_of, run
from tests.helpers.processes import free_port, get_data, poll_until, start_orchestrator, wait_up


def server(name: str, task: str = "t1", **attributes: Any) -> dict[str, Any]:
    return {"kind": "server", "name": name, "task_id": task, "attributes": {"name": name, **attributes}}


async def apply(view: InventoryView, store: Store, changes: dict[str, Any]) -> None:
    """What the provider does: learn what stood, make the writes, commit them."""
    await view.standing(list(changes))
    await store.write(*view.writes(changes))


def stored(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["id"]: {k: v for k, v in r.items() if k != "id"} for r in rows}


async def page_ids(store: Store) -> list[str]:
    return sorted(str(r["id"]) for r in await store.query(f"SELECT id FROM {INVENTORY_PAGES}"))


async def test_rows_fill_pages_in_order_and_a_fresh_view_loads_the_same(store: Store) -> None:
    InventoryRepository.register(store)
    repo = InventoryRepository(store)
    view = InventoryView(repo, 10_000)
    n = PAGE_ROWS + 30
    await apply(view, store, {f"server/s{i:03d}": server(f"s{i:03d}") for i in range(n)})
    assert await page_ids(store) == ["0000000000", "0000000001"]  # 130 resources, two records
    # an update replaces the row whole; a removal drops it; a key removed and made again
    await apply(view, store, {"server/s001": server("s001", "t2", size="big")})
    await apply(view, store, {"server/s002": None, "server/s003": None})
    await apply(view, store, {"server/s003": server("s003", "t3")})
    expected = {f"server/s{i:03d}": server(f"s{i:03d}") for i in range(n)}
    expected["server/s001"] = server("s001", "t2", size="big")
    del expected["server/s002"]
    expected["server/s003"] = server("s003", "t3")

    assert stored(await repo.all()) == expected
    fresh = InventoryView(repo, 10_000)
    standing = await fresh.standing([*expected, "server/s002", "server/nothing"])
    assert {k: v for k, v in standing.items() if v is not None} == expected
    assert standing["server/s002"] is None and standing["server/nothing"] is None
    assert fresh.reads == 1  # one read of the pages, none per operation
    # a new key takes the room the removal left in the first page
    await apply(fresh, store, {"server/new": server("new")})
    assert await page_ids(store) == ["0000000000", "0000000001"]
    assert (await repo.all())[-1]["name"] == "s129"


async def test_only_the_first_row_of_a_new_page_says_it_is_new(store: Store) -> None:
    """The writer does not read a page the view has just allocated (``Paged.fresh``);
    every later row of that page is written onto the page as stored, even with the
    writer's page cache off, so no row is lost."""
    InventoryRepository.register(store)
    store.page_cache_max = 0
    repo = InventoryRepository(store)
    view = InventoryView(repo, 10_000)
    await view.load()
    fresh: list[str] = []
    for i in range(PAGE_ROWS + 30):  # one commit per operation, as the engine may
        writes = view.writes({f"server/f{i:03d}": server(f"f{i:03d}")})
        fresh += [w.page for w in writes if isinstance(w, Paged) and w.fresh]
        await store.write(*writes)
    assert fresh == ["0000000000", "0000000001"]
    await store.write(*view.writes({"server/f000": None, "server/f001": server("f001", "t2")}))
    again = InventoryView(repo, 10_000)
    expected = {f"server/f{i:03d}": server(f"f{i:03d}") for i in range(2, PAGE_ROWS + 30)}
    expected["server/f001"] = server("f001", "t2")
    assert stored(await repo.all()) == expected
    assert {k: v for k, v in (await again.standing(list(expected))).items()} == expected
    writes = again.writes({"server/f000": server("f000")})  # the room in page 0: not new
    assert [w.page for w in writes if isinstance(w, Paged) and w.fresh] == []


async def test_a_bounded_view_reads_the_rows_it_does_not_hold(store: Store) -> None:
    InventoryRepository.register(store)
    repo = InventoryRepository(store)
    await apply(InventoryView(repo, 100), store, {f"server/b{i}": server(f"b{i}") for i in range(10)})
    view = InventoryView(repo, 3)
    keys = [f"server/b{i}" for i in range(10)]
    assert await view.standing(keys) == {k: server(k.split("/")[1]) for k in keys}
    assert view.held == 3 and view.reads == 2  # the load, then one read of the rest
    # a key written while a read of it is in flight keeps the value written
    reading = asyncio.ensure_future(view.standing(["server/b0"]))
    await asyncio.sleep(0)
    await asyncio.sleep(0)  # the read is queued
    writes = view.writes({"server/b0": server("b0", "t9")})
    assert (await reading)["server/b0"] == server("b0", "t9")
    await store.write(*writes)
    assert stored(await repo.all())["server/b0"] == server("b0", "t9")
    assert sorted(await view.made_by("t9")) == ["server/b0"]


async def test_rows_stored_one_per_record_move_into_pages(store: Store) -> None:
    """Inventories written before pages (one ``inventory`` record per resource)."""
    InventoryRepository.register(store)
    repo = InventoryRepository(store)
    old = {f"server/old{i}": server(f"old{i}", "t0") for i in range(5)}
    await store.write(*(Put(LEGACY_INVENTORY, k, row) for k, row in old.items()))
    assert stored(await repo.all()) == old  # listed before the move
    view = InventoryView(repo, 100)
    assert (await view.standing(["server/old1"]))["server/old1"] == old["server/old1"]
    assert await store.query(f"SELECT * FROM {LEGACY_INVENTORY}") == []
    assert stored(await repo.all()) == old
    assert sorted(await view.made_by("t0")) == sorted(old)


async def test_rollback_restores_rows_whole(orch: Any) -> None:
    """A create, an update with other attributes and a delete, rolled back: the
    inventory is exactly what it was before, row for row."""
    await run(orch, op("base", servers=["keep", "gone"]))
    before = await data_of(orch, "/state/inventory")
    configs = [{"name": "keep", "plan": "2xCPU"}]
    done = await run(
        orch,
        op("upd", operation="update", server_configs=configs),
        op("del", operation="delete", servers=["gone"]),
        op("new", servers=["fresh"]),
    )
    during = {r["name"]: r for r in await data_of(orch, "/state/inventory")}
    assert set(during) == {"keep", "fresh"} and during["keep"]["attributes"]["plan"] == "2xCPU"
    resp = await orch.post("/rollback/execute", json={"checkpoint_id": done["checkpoint_id"]})
    assert resp.status == 200, await resp.text()
    assert await data_of(orch, "/state/inventory") == before


@contextlib.asynccontextmanager
async def orchestrator(
    session: aiohttp.ClientSession, tmp: Path, work_root: Path, port: int, stop: signal.Signals
) -> AsyncIterator[str]:
    """The orchestrator as a process on ``tmp/data``, up; ``stop`` is sent on the way out."""
    proc = start_orchestrator(tmp / "data", work_root, port, tmp / "server.log")
    try:
        base = f"http://127.0.0.1:{port}"
        await wait_up(session, base)
        yield base
    finally:
        proc.send_signal(stop)
        proc.wait(20)


def completed(at_least: int) -> Callable[[dict[str, Any]], bool]:
    return lambda b: sum(o["status"] == "Completed" for o in b["operations"]) >= at_least


async def test_sigkill_then_restart_shows_the_same_inventory(tmp_path: Path, work_root: Path) -> None:
    """The inventory a batch made before ``kill -9`` is there after the restart, row for
    row; the resumed batch then adds exactly the rest."""
    ops = [op(f"k{i:02d}", simulate={"latency_s": 0.1, "progress_steps": 1}) for i in range(40)]
    port = free_port()
    async with aiohttp.ClientSession() as session:
        async with orchestrator(session, tmp_path, work_root, port, signal.SIGKILL) as base:
            resp = await session.post(f"{base}/batch/execute", json={"name": "killed", "operations": ops})
            url = f"{base}/batch/operations/{(await resp.json())['data']['batch_id']}"
            await poll_until(session, url, completed(10))
            inventory = await get_data(session, f"{base}/state/inventory")
        async with orchestrator(session, tmp_path, work_root, port, signal.SIGTERM) as base:
            after = await get_data(session, f"{base}/state/inventory")
            batch = await poll_until(session, url, lambda b: b["status"] != "Running")
            final = await get_data(session, f"{base}/state/inventory")
    # What was listed before the kill was committed: it is all there, unchanged (rows
    # committed between that read and the kill may be there too).
    assert len(inventory) >= 10
    assert {r["id"]: r for r in after}.items() >= {r["id"]: r for r in inventory}.items()
    assert batch["status"] == "Completed", (tmp_path / "server.log").read_text()[-3000:]
    assert sorted(r["name"] for r in final) == sorted(f"k{i:02d}-server-01" for i in range(40))
    assert {r["task_id"] for r in final} <= {o["task_id"] for o in batch["operations"]}
    rows_before = {r["id"]: r for r in after}
    assert all(rows_before[r["id"]] == r for r in final if r["id"] in rows_before)


async def test_operations_on_one_key_at_once_chain_what_stood(orch: Any) -> None:
    """Operations changing one resource concurrently each record what the one before
    it (in commit order) left, so the last one's row stands and undoing them all, in
    reverse, leaves what stood before the batch."""
    await run(orch, op("first", server_configs=[{"name": "shared", "plan": "start"}]))
    before = await data_of(orch, "/state/inventory")
    plans = [f"p{i}" for i in range(8)]
    done = await run(
        orch,
        *(
            op(f"u{i}", operation="update", server_configs=[{"name": "shared", "plan": p}])
            for i, p in enumerate(plans)
        ),
        parallel_limit=8,
    )
    # one chain: each saw a different row before it, and only the last one's row stands
    previous = {
        o["id"]: o["results"]["previous"]["server/shared"]["attributes"]["plan"] for o in done["operations"]
    }
    assert len(set(previous.values())) == len(plans)
    (last_plan,) = {"start", *plans} - set(previous.values())
    (row,) = await data_of(orch, "/state/inventory")
    assert row["attributes"]["plan"] == last_plan
    assert row["task_id"] == next(
        o["task_id"] for o in done["operations"] if o["id"] == f"u{plans.index(last_plan)}"
    )
    resp = await orch.post("/rollback/execute", json={"checkpoint_id": done["checkpoint_id"]})
    assert resp.status == 200, await resp.text()
    assert await data_of(orch, "/state/inventory") == before
