"""Documents of big batches (``orchestrator/workflows.py``, ``orchestrator/views.py``):
while a batch runs, ``GET /batch/operations/{id}`` and its progress come from the
engine's memory, captured at one instant and never by applying the batch's pending
rows; once it finishes, from its rows, in the same shape."""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from orchestrator.app import create_app
from orchestrator.keys import ENGINE, WORKFLOWS
from orchestrator.models import BATCH_DOCUMENT_FIELDS, BATCH_SUMMARY_FIELDS
from orchestrator.records import Task
from orchestrator.runtime import TaskSnapshot
from orchestrator.states import TaskStatus
from orchestrator.views import (
    Tally,
    batch_document,
    operation_entry,
    operation_facts,
    operation_json,
    operation_row_view,
    operation_view,
    progress_document,
    progress_of,
    status_counts,
    summarise,
    summarise_rows,
    workflow_progress,
)
from orchestrator.workflows import FINISHED_PRODUCTS, BatchCapture
from shared.settings import Settings
from shared.web.envelope import encode_json
from shared.web.keys import STORE
from tests.helpers.batches import command, submit, wait_batch

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
    # Once finished, its documents are built from memory as it finishes: still no row applied.
    done = await wait_batch(client, bid)
    assert done["status"] == "Completed"
    assert store.lazy_pending > 0
    from_rows = await client.app[WORKFLOWS]._read(bid)  # reads its rows: applies them first
    assert store.lazy_pending == 0
    assert json.loads(await batch_document(from_rows, BATCH_DOCUMENT_FIELDS)) == done


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


# -- a running batch's document is kept between reads, and equals one built whole --------


def _whole_fields(doc: dict[str, Any]) -> tuple[dict[str, Any], float]:
    """A document without its progress (summed in another order when built whole: it may
    differ in the last place before rounding), and that progress."""
    rest = dict(doc)
    return rest, float(rest.pop("progress"))


async def test_every_live_document_equals_one_encoded_whole_from_its_capture(aiohttp_client, settings):
    client = await app_client(aiohttp_client, settings, live_document_max_age_s=0.0)
    body = big_batch()
    bid = (await submit(client, body))["batch_id"]
    service = client.app[WORKFLOWS]
    fields = BATCH_DOCUMENT_FIELDS
    reads = 0
    while client.app[ENGINE].live(bid) is not None:
        # Two captures a turn apart, their documents encoded at the same time: each
        # shows its own instant, entries kept from one never leak into the other's.
        first = await service.capture(bid)
        await asyncio.sleep(0)
        second = await service.capture(bid)
        if not second.live:
            break
        docs = await asyncio.gather(batch_document(first, fields), batch_document(second, fields))
        for capture, encoded in zip((first, second), docs, strict=True):
            whole = await batch_document(BatchCapture(capture.workflow, capture.tasks), fields)
            (doc, progress), (expected, expected_progress) = map(
                _whole_fields, (json.loads(encoded), json.loads(whole))
            )
            assert doc == expected
            assert progress == pytest.approx(expected_progress, abs=0.011)
            check_consistent(json.loads(encoded), body["operations"])
            summary = json.loads(await batch_document(capture, BATCH_SUMMARY_FIELDS))
            assert summary["counts"] == expected["counts"]
            progress_doc = json.loads(await progress_document(capture))
            assert progress_doc == {
                **workflow_progress(capture.workflow, capture.tasks),
                "progress": progress,
            }
        reads += 1
        await asyncio.sleep(0.05)
    assert reads > 0, "no document was read while the batch ran"
    await wait_batch(client, bid)
    await client.get(f"/batch/operations/{bid}?view=summary")
    assert service._live == {}, "a finished batch's live document is let go"


async def test_concurrent_polls_of_a_running_batch_are_each_consistent(aiohttp_client, settings):
    client = await app_client(aiohttp_client, settings, live_document_max_age_s=0.0)
    body = big_batch(600)
    bid = (await submit(client, body))["batch_id"]
    seen_running = False
    while True:
        resps = await asyncio.gather(*(client.get(f"/batch/operations/{bid}") for _ in range(4)))
        docs = [(await r.json())["data"] for r in resps]
        for doc in docs:
            check_consistent(doc, body["operations"])
        seen_running |= any(d["status"] == "Running" and 0 < d["counts"]["Completed"] for d in docs)
        if all(d["status"] != "Running" for d in docs):
            break
    assert seen_running


# -- summaries kept by changes, and rows shown without records ---------------------------

STATUSES = list(TaskStatus)
T0 = datetime(2030, 1, 1, tzinfo=UTC)


def _random_task(rng: random.Random, i: int) -> Task:
    status = rng.choice(STATUSES)
    started = T0 + timedelta(seconds=rng.randint(0, 50)) if rng.random() < 0.8 else None
    completed = (
        started + timedelta(milliseconds=rng.randint(0, 9_000)) if started and rng.random() < 0.7 else None
    )
    return Task.from_row(
        {
            "id": f"t{i}",
            "workflow_id": "w",
            "name": f"op{i}",
            "status": status.value,
            "progress": rng.choice([0.0, 0.0, 12.5, 33.33, 100.0]),
            "message": rng.choice([None, "", "step 2 of 3"]),
            "started_at": started,
            "completed_at": completed,
        }
    )


def test_a_tally_kept_by_changes_agrees_with_counting_again() -> None:
    rng = random.Random(7)
    tasks = [_random_task(rng, i) for i in range(200)]
    tally = Tally()
    for i, t in enumerate(tasks):
        tally.count(i, t.name, t.status, t.progress, t.message, t.started_at, t.completed_at)
    for _ in range(60):
        for i in rng.sample(range(len(tasks)), 25):
            old, new = tasks[i], _random_task(rng, i)
            tally.count(
                i, old.name, old.status, old.progress, old.message, old.started_at, old.completed_at, -1
            )
            tally.count(i, new.name, new.status, new.progress, new.message, new.started_at, new.completed_at)
            tasks[i] = new
        kept, again = tally.summary(), summarise(tasks)
        assert kept._replace(mean_s=None) == again._replace(mean_s=None)
        assert kept.mean_s == pytest.approx(again.mean_s)
        # and against the plain definitions
        assert kept.counts == status_counts(tasks)
        assert kept.progress == pytest.approx(progress_of(tasks), abs=0.011)
        running = [t for t in tasks if t.status in (TaskStatus.RUNNING, TaskStatus.ROLLING_BACK)]
        assert kept.running == len(running)
        assert kept.step == (running[0].message or f"running {running[0].name}" if running else None)
        durations = [d for t in tasks if t.final and (d := t.duration_s) is not None]
        assert kept.mean_s == (pytest.approx(sum(durations) / len(durations)) if durations else None)


def test_a_task_row_shows_as_its_record_does() -> None:
    rows: list[dict[str, Any]] = [
        {"id": "t1", "name": "a", "status": "Pending"},
        {
            "id": "t2",
            "workflow_id": "w",
            "name": "b",
            "status": "Completed",
            "type": "server_batch",
            "provider": "local",
            "progress": 100,
            "attempt": 2,
            "dependency_names": ["a"],
            "args": ["x", "y"],
            "undo": ["rm", "-f"],
            "command": "noop",
            "results": {"ip": "10.0.0.1"},
            "output": "ok",
            "error": None,
            "started_at": T0,
            "completed_at": T0 + timedelta(seconds=2),
        },
        {"id": "t3", "name": "c", "status": "Running", "progress": None, "args": None, "undo": []},
    ]
    for row in rows:
        assert encode_json(operation_row_view(row)) == encode_json(operation_view(Task.from_row(row)))
    assert summarise_rows(rows) == summarise([Task.from_row(r) for r in rows])
    with pytest.raises(ValueError):
        operation_row_view({"id": "t", "name": "n", "status": "Done"})


def test_an_entry_from_its_facts_and_moment_is_the_entry_encoded_whole() -> None:
    facts = ("t1", "w", "op1", "server_batch", "local", ("a", "b"), 3, T0, "noop", ("x",), ("rm", "x"))
    moments = [
        (TaskStatus.PENDING, 0.0, 0, None, None, None, None, None, None),
        (TaskStatus.RUNNING, 33.33, 1, "step 1", None, None, None, T0, None),
        (TaskStatus.COMPLETED, 100.0, 2, None, "out", None, {"a": ',"started_at":'}, T0, T0),
        (TaskStatus.FAILED, 50.0, 3, None, None, "boom", {"big": 2**70}, T0, T0),  # the fallback encoder
    ]
    for moment in moments:
        snapshot = TaskSnapshot._make(facts + moment)
        encoded = operation_entry(operation_facts(snapshot), moment)
        assert encoded == operation_json(snapshot)
        assert json.loads(encoded) == json.loads(encode_json(operation_view(snapshot)))


async def test_a_batch_s_documents_are_built_from_memory_as_it_finishes(aiohttp_client, settings):
    """Read while it ran or never, completed or failed: what is kept as it finishes is
    what its rows say once applied, and the first read finds it."""
    client = await app_client(aiohttp_client, settings, live_document_max_age_s=0.0)
    service, engine = client.app[WORKFLOWS], client.app[ENGINE]
    failing = command("bad", ["false"], dependencies=["op5"])
    for polled, extra in ((False, []), (True, []), (False, [failing]), (True, [failing])):
        body = {"name": "b", "parallel_limit": 20, "operations": layered(300)[:-1] + extra}
        bid = (await submit(client, body))["batch_id"]
        while engine.live(bid) is not None:
            if polled:
                check_consistent(
                    (await (await client.get(f"/batch/operations/{bid}")).json())["data"], body["operations"]
                )
            await asyncio.sleep(0.01)
        await asyncio.gather(*service._finishing.values())
        kept = {key: service.finished.get(bid, key) for _, key, _ in FINISHED_PRODUCTS}
        assert all(kept.values()), kept
        rows = await service._read(bid)
        assert json.loads(kept[("document", BATCH_DOCUMENT_FIELDS)]) == json.loads(
            await batch_document(rows, BATCH_DOCUMENT_FIELDS)
        )
        assert json.loads(kept[("document", BATCH_SUMMARY_FIELDS)]) == json.loads(
            await batch_document(rows, BATCH_SUMMARY_FIELDS)
        )
        assert json.loads(kept["progress"]) == json.loads(await progress_document(rows))
        doc = (await (await client.get(f"/batch/operations/{bid}")).json())["data"]
        assert doc["status"] == ("Failed" if extra else "Completed") and doc["completed_at"] is not None
        assert bid not in service._live
