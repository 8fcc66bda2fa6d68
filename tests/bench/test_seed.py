"""``bench/seed.py`` leaves what finished workflows leave: rows, journal and checkpoints the
orchestrator reads back over HTTP as completed history, with nothing left to catch up."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from orchestrator.app import create_app
from shared.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS, TASKS = 3, 12


async def test_seeded_history_reads_back_as_finished_workflows(tmp_path: Path, aiohttp_client: Any) -> None:
    data_dir = tmp_path / "data"
    seeding = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "bench" / "seed.py"),
        *("--data-dir", str(data_dir), "--workflows", str(WORKFLOWS), "--tasks", str(TASKS)),
        stdout=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(50):
        stdout, _ = await seeding.communicate()
    assert seeding.returncode == 0
    report = json.loads(stdout.decode().strip().splitlines()[-1])
    # per workflow: its submission, each task's Running and Completed, its Completed
    assert report == report | {"workflows": WORKFLOWS, "tasks": WORKFLOWS * TASKS}
    assert report["journal_seq"] == WORKFLOWS * (1 + 2 * TASKS + 1)

    client = await aiohttp_client(create_app(load_settings(data_dir=data_dir, auth_enabled=False)))
    stats = (await (await client.get("/state/statistics")).json())["data"]
    assert stats["total_workflows"] == WORKFLOWS
    batches = (await (await client.get("/batch/operations", params={"limit": 50})).json())["data"]
    assert len(batches) == WORKFLOWS
    for batch in batches:
        assert batch["status"] == "Completed"
        doc = (await (await client.get(f"/batch/operations/{batch['batch_id']}")).json())["data"]
        assert [op["status"] for op in doc["operations"]] == ["Completed"] * TASKS
        journal = await client.get(f"/state/workflows/{batch['batch_id']}/journal")
        assert journal.status == 200
        entries = (await journal.json())["data"]
        assert len(entries) == 1 + 2 * TASKS + 1
    tasks = await client.get("/tasks", params={"limit": 100})
    assert tasks.headers["X-Total-Count"] == str(WORKFLOWS * TASKS)
    assert {t["status"] for t in (await tasks.json())["data"]} == {"Completed"}
