"""A ``command`` operation's undo argv in the task and operation views
(``orchestrator/views.py``): recorded in its task row at submission, shown by the live
document (from the engine's memory), by the finished one (from the rows), by ``/tasks``,
and again after a restart that resumes the batch from its rows; ``null`` for every
other operation, and for a command with no ``undo``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from orchestrator.app import create_app
from orchestrator.keys import ENGINE
from shared.settings import Settings
from shared.store.secrets import SecretBox
from shared.store.store import Store
from tests.helpers.batches import batch, command, op, submit, wait_batch
from tests.helpers.orchestrator_api import ops_by_id, tasks_by_name

RUN = ["python3", "-c", "print('made')"]
UNDO = ["python3", "-c", "print('undone')"]
GATE_S = 1.0  # the simulated operation keeps the batch running while the documents are read

# operation id -> (command, args, undo) as every view must show it
EXPECTED: dict[str, tuple[str, list[str], list[str] | None]] = {
    "made": ("python3", ["-c", "print('made')"], UNDO),
    "plain": ("python3", ["-c", "print('made')"], None),
}


def body() -> dict[str, Any]:
    return batch(
        command("made", RUN, undo=UNDO),
        command("plain", RUN),
        op("gate", simulate={"latency_s": GATE_S}),
    )


def check_operations(doc: dict[str, Any]) -> None:
    ops = ops_by_id(doc)
    for name, (cmd, args, undo) in EXPECTED.items():
        assert (ops[name]["command"], ops[name]["args"], ops[name]["undo"]) == (cmd, args, undo)
    gate = ops["gate"]
    assert gate["undo"] is None
    assert gate["command"] == "provisioning servers create" and "--simulated" in gate["args"]


async def check_tasks(client: TestClient, workflow_id: str) -> None:
    tasks = await tasks_by_name(client, workflow_id)
    for name, (cmd, args, undo) in EXPECTED.items():
        assert (tasks[name]["command"], tasks[name]["args"], tasks[name]["undo"]) == (cmd, args, undo)
        one = await client.get(f"/tasks/{tasks[name]['id']}")
        assert (await one.json())["data"]["undo"] == undo
    assert tasks["gate"]["undo"] is None


async def document(client: TestClient, batch_id: str) -> dict[str, Any]:
    resp = await client.get(f"/batch/operations/{batch_id}")
    assert resp.status == 200, await resp.text()
    data: dict[str, Any] = (await resp.json())["data"]
    return data


async def test_live_and_finished_views_carry_a_command_operations_undo(
    aiohttp_client: Any, settings: Settings
) -> None:
    client = await aiohttp_client(create_app(settings.model_copy(update={"live_document_max_age_s": 0.0})))
    bid = (await submit(client, body()))["batch_id"]
    live = await document(client, bid)
    assert live["status"] == "Running" and client.app[ENGINE].live(bid) is not None
    check_operations(live)
    await check_tasks(client, bid)
    # catch-up rebuilds the same rows from the recorded operations
    engine = client.app[ENGINE]
    [row] = await engine.repo.workflow_rows([bid])
    rebuilt = {r["name"]: r for r in engine.task_rows_of(row)}
    assert [rebuilt[n]["undo"] for n in ("made", "plain", "gate")] == [UNDO, None, None]

    done = await wait_batch(client, bid)
    assert done["status"] == "Completed"
    check_operations(done)
    await check_tasks(client, bid)
    assert [list(o) for o in done["operations"]] == [list(o) for o in live["operations"]]


async def test_a_batch_resumed_after_a_restart_shows_the_undo_from_its_rows(
    settings: Settings, tmp_path: Path
) -> None:
    url = f"surrealkv://{tmp_path}/db"
    box = SecretBox.ephemeral()
    live_settings = settings.model_copy(update={"live_document_max_age_s": 0.0})
    first = Store(url, secrets=box)
    await first.open()
    async with TestClient(TestServer(create_app(live_settings, store=first))) as client:
        bid = (await submit(client, body()))["batch_id"]
        await wait_batch(
            client,
            bid,
            until=lambda b: all(ops_by_id(b)[name]["status"] == "Completed" for name in ("made", "plain")),
        )
    await first.close()  # stopped mid-batch: the gate is still running (a command cut off would fail)

    again = Store(url, secrets=box)
    await again.open()
    try:
        async with TestClient(TestServer(create_app(live_settings, store=again))) as client:
            resumed = client.app[ENGINE].live(bid)
            assert resumed is not None  # resumed from its rows, documents from memory
            live = await document(client, bid)
            assert live["status"] == "Running"
            check_operations(live)
            done = await wait_batch(client, bid)
            assert done["status"] == "Completed"
            check_operations(done)
            await check_tasks(client, bid)
    finally:
        await again.close()
