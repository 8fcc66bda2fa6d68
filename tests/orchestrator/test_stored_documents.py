"""Finished big batches' documents kept in the store (``orchestrator/document_repository.py``):
kept as the batch finishes (or on its first read from the rows), answered after a restart
without decoding a row, and never answered once anything they were built from changed —
a rollback, retention, a change of the rows nobody announced."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp.test_utils import TestClient

from orchestrator.app import create_app
from orchestrator.document_repository import KEPT_DOCUMENTS, DocumentRepository
from orchestrator.keys import WORKFLOWS
from orchestrator.retention import Retention
from shared.settings import Settings
from shared.store.store import Store
from shared.store.writes import Put, Stmt
from tests.helpers.batches import op
from tests.helpers.orchestrator_api import data_of, run

N = 30


def ops(n: int = N) -> list[dict[str, Any]]:
    return [op(f"op{i}", [f"op{i - 1}"] if i % 3 else []) for i in range(n)]


async def start(aiohttp_client: Any, settings: Settings, store: Store, **update: Any) -> TestClient:
    """The orchestrator on ``store``: a second one on the same store is a restart (nothing
    the first kept in memory)."""
    update.setdefault("document_store_min_operations", 10)
    return await aiohttp_client(create_app(settings.model_copy(update=update), store=store))


async def kept_settled(client: TestClient) -> None:
    service = client.app[WORKFLOWS]
    await asyncio.gather(*service._finishing.values())
    while service._storing:
        await asyncio.gather(*service._storing.values(), return_exceptions=True)


async def finished(aiohttp_client: Any, settings: Settings, store: Store) -> tuple[TestClient, str]:
    """A service that ran a big batch and kept its documents, and the batch's id."""
    client = await start(aiohttp_client, settings, store)
    wid = (await run(client, *ops()))["batch_id"]
    await kept_settled(client)
    return client, wid


async def raw(client: TestClient, path: str) -> bytes:
    resp = await client.get(path)
    assert resp.status == 200, await resp.text()
    return await resp.read()


async def test_a_big_batch_is_kept_as_it_finishes_and_read_after_a_restart_from_no_row(
    aiohttp_client: Any, settings: Settings, store: Store
) -> None:
    first, wid = await finished(aiohttp_client, settings, store)
    paths = (f"/batch/operations/{wid}", f"/state/workflows/{wid}/progress")
    before = {p: await raw(first, p) for p in paths}
    stored = await DocumentRepository(store).read(wid)
    assert (
        stored is not None
        and stored.kept is not None
        and set(stored.kept)
        == {
            "document",
            "summary",
            "progress",
        }
    )
    await first.close()

    again = await start(aiohttp_client, settings, store)
    capture = await again.app[WORKFLOWS]._read(wid)
    assert capture.stored is not None and capture.stored._rows is None  # nothing decoded
    for path, body in before.items():
        assert await raw(again, path) == body  # the same bytes as the service that ran it
    assert capture.stored._rows is None
    summary = await data_of(again, f"/batch/operations/{wid}", view="summary")
    assert summary["counts"]["Completed"] == N and "operations" not in summary
    # What memory gave as it finished is what the rows give.
    from_rows = json.loads(await raw(again, f"/batch/operations/{wid}?fields=batch_id,status,operations"))
    assert from_rows["data"]["operations"] == json.loads(before[paths[0]])["data"]["operations"]


async def test_a_rollback_after_it_finished_is_shown_after_a_restart_and_kept_again(
    aiohttp_client: Any, settings: Settings, store: Store
) -> None:
    first, wid = await finished(aiohttp_client, settings, store)
    stale = await DocumentRepository(store).read(wid)
    assert stale is not None and stale.kept is not None
    resp = await first.post("/rollback/execute", json={"operation_ids": ["op0"], "workflow_id": wid})
    assert resp.status == 200, await resp.text()
    await first.close()

    again = await start(aiohttp_client, settings, store)
    after = await DocumentRepository(store).read(wid)
    assert after is not None and after.kept is None and after.fingerprint != stale.fingerprint
    doc = await data_of(again, f"/batch/operations/{wid}")
    statuses = {o["id"]: o["status"] for o in doc["operations"]}
    assert statuses["op0"] == statuses["op1"] == "RolledBack" and statuses["op3"] == "Completed"
    assert doc["rollback"] is not None
    await kept_settled(again)  # read from the rows: kept again, for these rows
    kept = await DocumentRepository(store).read(wid)
    assert kept is not None and kept.kept is not None
    assert json.loads(kept.kept["document"]) == doc


async def test_a_change_nobody_announced_is_never_hidden_by_what_was_kept(
    aiohttp_client: Any, settings: Settings, store: Store
) -> None:
    first, wid = await finished(aiohttp_client, settings, store)
    await first.close()
    # Behind every service's back: the workflow's row, then one of its pages.
    await store.write(Stmt("UPDATE type::thing('workflow', $id) SET name = 'renamed'", {"id": wid}))
    again = await start(aiohttp_client, settings, store)
    assert (await data_of(again, f"/batch/operations/{wid}"))["name"] == "renamed"
    await kept_settled(again)
    await again.close()
    [page] = await store.query(
        "SELECT VALUE id FROM task_page WHERE workflow_id = $id ORDER BY id LIMIT 1", {"id": wid}
    )
    await store.write(Put("task_page", str(page).split(":", 1)[-1], None))
    third = await start(aiohttp_client, settings, store)
    doc = await data_of(third, f"/batch/operations/{wid}")
    assert doc["total_operations"] == len(doc["operations"]) < N


async def test_retention_drops_what_was_kept_with_the_rows(
    aiohttp_client: Any, settings: Settings, store: Store
) -> None:
    first = await start(aiohttp_client, settings, store, retention_days=1)
    wid = (await run(first, *ops()))["batch_id"]
    await kept_settled(first)
    assert await store.query(f"SELECT VALUE id FROM type::thing('{KEPT_DOCUMENTS}', $id)", {"id": wid})
    retention = Retention(first.app[WORKFLOWS].engine.settings, store)
    pruned = await retention.run_once(datetime.now(UTC) + timedelta(days=2))
    assert pruned["task"] == N and pruned["workflow"] == 1
    assert not await store.query(f"SELECT VALUE id FROM type::thing('{KEPT_DOCUMENTS}', $id)", {"id": wid})
    await first.close()
    again = await start(aiohttp_client, settings, store, retention_days=1)
    assert (await again.get(f"/batch/operations/{wid}")).status == 404


async def test_small_batches_are_not_kept_and_a_big_one_with_none_is_kept_on_its_first_read(
    aiohttp_client: Any, settings: Settings, store: Store
) -> None:
    client = await start(aiohttp_client, settings, store)
    small = (await run(client, *ops(5)))["batch_id"]
    big = (await run(client, *ops()))["batch_id"]
    await kept_settled(client)
    await client.close()
    await store.write(DocumentRepository.drop(big))  # as a service before this one left it
    repo = DocumentRepository(store)
    assert (await repo.read(big)).kept is None  # type: ignore[union-attr]
    again = await start(aiohttp_client, settings, store)
    summary = await data_of(again, f"/batch/operations/{big}", view="summary")  # from the rows
    await data_of(again, f"/batch/operations/{small}")
    await kept_settled(again)
    kept = (await repo.read(big)).kept  # type: ignore[union-attr]
    assert kept is not None and json.loads(kept["summary"]) == summary
    assert len(json.loads(kept["document"])["operations"]) == N
    assert (await repo.read(small)).kept is None  # type: ignore[union-attr]
