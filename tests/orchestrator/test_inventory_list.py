"""``GET /state/inventory`` is a paged list: a forward walk of ``inventory_page`` record
ids (pages in order, each page by key), ``X-Total-Count`` from ``counter:inventory``.

Walks by cursor and by offset with resources made, changed and removed between pages
(none that stood throughout is skipped or repeated); the total against a full scan
after creates, deletes, rollbacks and a reload that finds the counter wrong; rows from
before pages listed after the paged ones; hostile parameters refused naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orchestrator.inventory_repository import COUNTS, LEGACY_INVENTORY, InventoryRepository
from orchestrator.providers.local_inventory import InventoryView
from shared.store.counters import read_counter
from shared.store.keyset import encode_cursor
from shared.store.store import Store
from shared.store.writes import Count, Put, Stmt
from tests.helpers.batches import op
from tests.helpers.orchestrator_api import data_of, run
from tests.helpers.pages import next_link, refused_cursor, walk


@dataclass(frozen=True)
class Query:
    limit: int = 50
    offset: int = 0
    cursor: str | None = None
    kind: str | None = None
    provider: str | None = None
    workflow_id: str | None = None


def resource(key: str, task: str = "t1", provider: str = "local", workflow: str = "w1") -> dict[str, Any]:
    kind, name = key.split("/", 1)
    return {
        "kind": kind,
        "name": name,
        "provider": provider,
        "task_id": task,
        "workflow_id": workflow,
        "attributes": {"name": name},
    }


async def loaded(store: Store) -> tuple[InventoryRepository, InventoryView]:
    InventoryRepository.register(store)
    repo = InventoryRepository(store)
    view = InventoryView(repo, 100_000)
    await view.load()
    return repo, view


async def change(view: InventoryView, store: Store, changes: dict[str, Any]) -> None:
    """What the provider does: the view's writes, committed together."""
    await view.standing(list(changes))
    await store.write(*view.writes(changes))


async def scan(repo: InventoryRepository) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in await repo.all()}


async def walk_repo(repo: InventoryRepository, limit: int, between: Any = None, **kw: Any) -> list[str]:
    """Every key the list gives, page by page by cursor."""
    keys: list[str] = []
    cursor = None
    for page in range(10_000):
        listed = await repo.listing(Query(limit=limit, cursor=cursor, **kw))
        keys += [str(r["id"]) for r in listed.page.rows]
        if between is not None:
            await between(page)
        cursor = listed.page.next_cursor
        if cursor is None:
            return keys
    raise AssertionError("the walk did not end")


async def test_a_cursor_walk_with_changes_between_pages_sees_each_standing_row_once(store: Store) -> None:
    repo, view = await loaded(store)
    await change(view, store, {f"server/s{i:03d}": resource(f"server/s{i:03d}") for i in range(250)})
    # some rooms in the first pages, so new keys land behind the walk as well as ahead
    await change(view, store, {f"server/s{i:03d}": None for i in range(0, 250, 25)})
    standing = set(await scan(repo))
    removed_later = {f"server/s{i:03d}" for i in range(3, 250, 37)}

    async def between(page: int) -> None:
        await change(
            view,
            store,
            {
                **{f"cluster/new{page}-{j}": resource(f"cluster/new{page}-{j}") for j in range(7)},
                **{k: resource(k, task=f"t{page}") for k in sorted(standing)[page::40]},  # updated in place
                **({k: None for k in removed_later} if page == 2 else {}),
            },
        )

    keys = await walk_repo(repo, 9, between)
    assert len(keys) == len(set(keys)), "a row was listed twice"
    assert standing - removed_later <= set(keys), "a row standing throughout was skipped"
    # without changes the walk is exactly the scan, in page order
    everything = await walk_repo(repo, 13)
    assert sorted(everything) == sorted(await scan(repo))
    by_offset = []
    for offset in range(0, len(everything), 13):
        by_offset += [str(r["id"]) for r in (await repo.listing(Query(13, offset))).page.rows]
    assert by_offset == everything


async def test_the_total_is_the_counter_exact_after_creates_deletes_and_a_reload(store: Store) -> None:
    repo, view = await loaded(store)
    await change(view, store, {f"server/a{i}": resource(f"server/a{i}") for i in range(120)})
    await change(view, store, {f"taskserv/k{i}": resource(f"taskserv/k{i}") for i in range(30)})
    await change(view, store, {**{f"server/a{i}": None for i in range(10)}, "server/absent": None})
    await change(view, store, {"server/a50": resource("server/a50", "t2")})  # a replace is no new row

    async def check() -> None:
        rows = list((await scan(repo)).values())
        assert (await repo.listing(Query(limit=1))).total == len(rows) == 140
        for kind in ("server", "taskserv", "cluster"):
            listed = await repo.listing(Query(limit=1, kind=kind))
            assert listed.total == sum(1 for r in rows if r["kind"] == kind)
        assert (await repo.listing(Query(limit=1, provider="local"))).total is None  # no counter follows it

    await check()
    # a counter gone wrong (a commit the store refused after the view moved on, say) is
    # set right by the next load
    await store.write(Count(COUNTS, "n", 7), Count(COUNTS, "server", -3))
    _, fresh = await loaded(store)
    await check()
    assert await read_counter(store, COUNTS) == {"n": 140, "server": 110, "taskserv": 30, "counted": 1}
    assert fresh.reads == 1  # the counter came with the pages, in the load's one read


async def test_pages_from_before_the_counter_list_without_a_total_until_a_load(store: Store) -> None:
    repo, view = await loaded(store)
    await change(view, store, {f"server/a{i}": resource(f"server/a{i}") for i in range(5)})
    await store.write(Stmt(f"DELETE counter:{COUNTS}"))
    listed = await repo.listing(Query())
    assert len(listed.page.rows) == 5 and listed.total is None
    await loaded(store)
    assert (await repo.listing(Query())).total == 5


async def test_rows_from_before_pages_are_listed_after_the_pages_until_moved(store: Store) -> None:
    repo, view = await loaded(store)
    await change(view, store, {f"server/p{i}": resource(f"server/p{i}") for i in range(4)})
    old = {f"server/old{i}": resource(f"server/old{i}") for i in range(6)}
    await store.write(*(Put(LEGACY_INVENTORY, k, row) for k, row in old.items()))
    keys = await walk_repo(repo, 3)
    assert keys == [f"server/p{i}" for i in range(4)] + sorted(old)
    assert await walk_repo(repo, 100) == keys
    first = await repo.listing(Query())
    assert first.total is None  # they are not counted until moved
    assert [r["id"] for r in (await repo.listing(Query(limit=2, offset=3))).page.rows] == keys[3:5]
    assert {str(r["id"]) for r in (await repo.listing(Query(limit=50, kind="server"))).page.rows} == set(keys)
    await loaded(store)  # a fresh view moves them into pages
    assert await store.query(f"SELECT * FROM {LEGACY_INVENTORY}") == []
    listed = await repo.listing(Query())
    assert sorted(str(r["id"]) for r in listed.page.rows) == sorted(keys) and listed.total == 10


async def test_long_and_non_ascii_keys_page_by_cursor(store: Store) -> None:
    repo, view = await loaded(store)
    stem = "ü" * 120  # 240 bytes: a cursor holds the first 160 and a hash
    keys = [f"taskserv/{stem}{i}" for i in range(5)] + ["taskserv/ñ", "taskserv/" + "x" * 5000, "taskserv/z"]
    await change(view, store, {k: resource(k) for k in keys})
    assert sorted(await walk_repo(repo, 1)) == sorted(keys)
    assert len(await walk_repo(repo, 1)) == len(keys)


async def test_filters_walk_within_the_scan_budget(store: Store) -> None:
    repo, view = await loaded(store)
    await change(view, store, {f"server/s{i:04d}": resource(f"server/s{i:04d}") for i in range(1000)})
    await change(view, store, {"cluster/c1": resource("cluster/c1", provider="aws", workflow="w9")})
    pages = 0
    cursor = None
    found: list[str] = []
    while True:  # a budget of 200 rows: about two pages walked per request
        listed = await repo.listing(Query(limit=5, cursor=cursor, kind="cluster"), scan_budget=200)
        found += [str(r["id"]) for r in listed.page.rows]
        pages += 1
        assert listed.total == 1
        cursor = listed.page.next_cursor
        if cursor is None:
            break
    assert found == ["cluster/c1"] and 3 <= pages <= 12
    assert await walk_repo(repo, 5, provider="aws") == ["cluster/c1"]
    assert await walk_repo(repo, 5, workflow_id="w9") == ["cluster/c1"]
    assert await walk_repo(repo, 5, kind="cluster", provider="local") == []
    assert len(await walk_repo(repo, 300, provider="local")) == 1000


# -- over HTTP ---------------------------------------------------------------------------


async def test_the_route_pages_by_cursor_and_offset_with_batches_between_pages(orch: Any) -> None:
    await run(orch, op("a", servers=[f"web-{i:03d}" for i in range(130)]), op("b", type="cluster_batch"))
    everything = await data_of(orch, "/state/inventory", limit=1000)
    assert len(everything) == 131

    async def more(page: int) -> None:
        await run(orch, op(f"late{page}", servers=[f"late-{page}-{i}" for i in range(3)]))

    seen = await walk(orch, "/state/inventory", limit=20, between=more)
    ids = [r["id"] for r in seen]
    assert len(ids) == len(set(ids)) and {r["id"] for r in everything} <= set(ids)
    resp = await orch.get("/state/inventory", params={"limit": "7", "offset": "14"})
    assert resp.status == 200
    now = await data_of(orch, "/state/inventory", limit=1000)
    assert [r["id"] for r in (await resp.json())["data"]] == [r["id"] for r in now[14:21]]
    assert resp.headers["X-Total-Count"] == str(len(now)) and resp.headers["X-Offset"] == "14"
    assert 'rel="next"' in resp.headers["Link"] and 'rel="prev"' in resp.headers["Link"]
    clusters = await orch.get("/state/inventory", params={"kind": "cluster", "limit": "1"})
    assert clusters.headers["X-Total-Count"] == "1" and next_link(clusters.headers) is None
    by_provider = await orch.get("/state/inventory", params={"provider": "local"})
    assert "X-Total-Count" not in by_provider.headers  # no counter follows a provider


async def test_the_total_is_exact_after_a_rollback(orch: Any) -> None:
    done = await run(orch, op("a", servers=["keep-1", "keep-2"]), op("b", ["a"], servers=["gone-1"]))
    await run(orch, op("c", servers=["keep-2"], operation="delete"))

    async def total() -> int:
        resp = await orch.get("/state/inventory", params={"limit": "1"})
        return int(resp.headers["X-Total-Count"])

    assert await total() == len(await data_of(orch, "/state/inventory", limit=1000)) == 2
    resp = await orch.post(
        "/rollback/execute", json={"operation_ids": ["b"], "workflow_id": done["batch_id"]}
    )
    assert resp.status == 200, await resp.text()
    names = {r["name"] for r in await data_of(orch, "/state/inventory", limit=1000)}
    assert names == {"keep-1"} and await total() == 1


async def test_hostile_query_strings_are_refused_naming_the_field(orch: Any) -> None:
    await run(orch, op("a"), op("b"))
    resp = await orch.get("/tasks", params={"limit": "1"})
    tasks_cursor = next_link(resp.headers)
    assert tasks_cursor is not None
    other = tasks_cursor.split("cursor=")[1].split("&")[0]
    cases = {
        "limit": ["0", "1001", "-1", "abc", "1e3"],
        "offset": ["-1", "99999999999", "x"],
        "cursor": [other, "", "a" * 601, "bad cursor"],
        "kind": ["vm", "", "server' OR 1=1"],
        "provider": ["", "p" * 65],
        "workflow_id": ["", "w" * 129],
        "nonsense": ["1"],
    }
    for field, values in cases.items():
        for value in values:
            resp = await orch.get("/state/inventory", params={field: value})
            doc = await resp.json()
            assert resp.status in (400, 422), (field, value, doc)
            named = {f["field"] for f in doc.get("details", {}).get("fields", [])}
            assert field in named, (field, value, doc)
    await refused_cursor(orch, "/state/inventory")
    # keys of this list's shape that it never made: a page (or none), never a 500
    for key in ("L.ff", "L.c3", "P0000000000.ff", "P9999999999~", "P0000000000.ab-0123456789abcdef"):
        resp = await orch.get("/state/inventory", params={"cursor": encode_cursor(key)})
        assert resp.status == 200, (key, await resp.text())
    resp = await orch.get("/state/inventory", params={"cursor": encode_cursor("P0000000000.abc")})
    assert resp.status == 422
    for value in ("x\x00y", "ü" * 64, "a/b", "%00"):
        resp = await orch.get("/state/inventory", params={"provider": value, "workflow_id": value})
        assert resp.status in (200, 422), await resp.text()
