"""Documents of big batches (``orchestrator/workflows.py``, ``orchestrator/views.py``):
while a batch runs, ``GET /batch/operations/{id}`` and its progress come from the
engine's memory, captured at one instant and never by applying the batch's pending
rows; once it finishes, from its rows, in the same shape."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

from aiohttp.test_utils import TestClient

from orchestrator.app import create_app
from orchestrator.keys import ENGINE
from orchestrator.views import batch_document
from orchestrator.workflows import BatchCapture
from shared.settings import Settings
from shared.web.keys import STORE
from tests.helpers.batches import submit, wait_batch

N = 1_500  # big enough that a document spans several encoding chunks
LAYER = 100
GATE_S = 1.5  # an operation this slow keeps the batch running while the others settle


def layered(n: int) -> list[dict[str, Any]]:
    """Layers of 100 no-op operations, each depending on two of the layer before, and
    a slow simulated operation with no dependents (the batch runs until it is done)."""
    ops: list[dict[str, Any]] = []
    for i in range(n):
        layer = i // LAYER
        deps = [f"op{(layer - 1) * LAYER + (i * 7 + k) % LAYER}" for k in (0, 1)] if layer else []
        ops.append({"id": f"op{i}", "type": "server_batch", "provider": "noop", "dependencies": deps})
    ops.append(
        {
            "id": "gate",
            "type": "server_batch",
            "provider": "local",
            "simulate": {"latency_s": GATE_S, "progress_steps": 3},
        }
    )
    return ops


def big_batch(n: int = N) -> dict[str, Any]:
    return {"name": "big", "parallel_limit": 20, "operations": layered(n)}


async def app_client(aiohttp_client: Any, settings: Settings, **update: Any) -> TestClient:
    return await aiohttp_client(create_app(settings.model_copy(update=update)))


def check_consistent(doc: dict[str, Any], ops: list[dict[str, Any]]) -> None:
    """Every operation once, counts that add up, and one instant: nothing ran before its
    hard dependencies completed."""
    listed = doc["operations"]
    assert [o["id"] for o in listed] == [o["id"] for o in ops]
    assert doc["total_operations"] == len(ops)
    assert sum(doc["counts"].values()) == len(ops)
    assert {k: v for k, v in doc["counts"].items() if v} == dict(Counter(o["status"] for o in listed))
    status = {o["id"]: o["status"] for o in listed}
    for o in listed:
        if o["status"] in ("Running", "Completed"):
            assert all(status[d] == "Completed" for d in o["dependencies"]), o


async def test_the_document_of_a_running_batch_is_one_consistent_instant(aiohttp_client, settings):
    client = await app_client(aiohttp_client, settings, live_document_max_age_s=0.0)
    body = big_batch()
    bid = (await submit(client, body))["batch_id"]
    live = 0
    while True:
        resp = await client.get(f"/batch/operations/{bid}")
        assert resp.status == 200
        doc = (await resp.json())["data"]
        check_consistent(doc, body["operations"])
        if doc["status"] != "Running":
            break
        counts = doc["counts"]
        if 0 < counts["Completed"] < len(body["operations"]):
            live += 1
        progress = (await (await client.get(f"/state/workflows/{bid}/progress")).json())["data"]
        assert progress["total_steps"] == len(body["operations"])
        assert 0 <= progress["completed_steps"] <= progress["total_steps"]
    assert live > 0, "no document was read while the batch ran"
    assert doc["status"] == "Completed"
    assert doc["counts"]["Completed"] == len(body["operations"])


async def test_reading_a_running_batch_applies_none_of_its_pending_rows(aiohttp_client, settings):
    # Rows are applied only when something reads them: never, here, by the writer itself.
    client = await app_client(aiohttp_client, settings, row_apply_idle_s=3600.0, row_apply_max_age_s=3600.0)
    store = client.app[STORE]
    body = big_batch(300)
    bid = (await submit(client, body))["batch_id"]
    engine = client.app[ENGINE]
    state = engine.live(bid)
    assert state is not None
    # Poll the document (from memory: it reads no row) until every no-op one completed.
    await wait_batch(client, bid, until=lambda b: b["counts"]["Completed"] >= 300)
    pending = store.lazy_pending
    assert pending >= 300  # the task rows, created and settled, all still pending

    for params in ({}, {"view": "summary"}, {"fields": "status,counts"}):
        resp = await client.get(f"/batch/operations/{bid}", params=params)
        assert resp.status == 200
    assert (await client.get(f"/state/workflows/{bid}/progress")).status == 200

    assert engine.live(bid) is not None, "the gate operation should still be running"
    assert store.lazy_pending >= pending
    done = await wait_batch(client, bid)  # once finished: from the rows, applied first
    assert done["status"] == "Completed"
    assert store.lazy_pending == 0


async def test_readers_within_the_maximum_age_share_one_capture(aiohttp_client, settings):
    client = await app_client(aiohttp_client, settings, live_document_max_age_s=3600.0)
    bid = (await submit(client, big_batch(200)))["batch_id"]
    first = await client.get(f"/batch/operations/{bid}")
    docs = await asyncio.gather(*(client.get(f"/batch/operations/{bid}") for _ in range(5)))
    texts = {await r.text() for r in docs}
    assert texts == {await first.text()}  # the same bytes: one capture, encoded once
    assert json.loads(texts.pop())["data"]["status"] == "Running"


async def test_finished_and_live_documents_have_the_same_shape_and_operations(aiohttp_client, settings):
    client = await app_client(aiohttp_client, settings, live_document_max_age_s=0.0)
    body = big_batch(300)
    bid = (await submit(client, body))["batch_id"]
    live_doc = (await (await client.get(f"/batch/operations/{bid}")).json())["data"]
    live_summary = (await (await client.get(f"/batch/operations/{bid}?view=summary")).json())["data"]
    live_progress = (await (await client.get(f"/state/workflows/{bid}/progress")).json())["data"]
    state = client.app[ENGINE].live(bid)
    assert state is not None and live_doc["status"] == "Running"

    done = await wait_batch(client, bid)
    summary = (await (await client.get(f"/batch/operations/{bid}?view=summary")).json())["data"]
    progress = (await (await client.get(f"/state/workflows/{bid}/progress")).json())["data"]

    assert list(done) == list(live_doc)
    assert [list(o) for o in done["operations"]] == [list(o) for o in live_doc["operations"]]
    assert list(summary) == list(live_summary)
    assert list(progress) == list(live_progress)
    # The engine's last state of each operation is exactly what its row now records.
    memory = BatchCapture(state.record(), [t.snapshot(m) for t, m in state.capture()])
    from_memory = json.loads(await batch_document(memory, ("batch_id", "operations")))
    assert from_memory["operations"] == done["operations"]
