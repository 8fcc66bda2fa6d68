"""Seed a stopped service's data directory with finished workflows, fast, through the store API.

Each workflow is what a finished batch leaves behind: its row, its task rows, its
automatic checkpoint and its journal (the submission, each task's ``Running`` and
``Completed``, the workflow's ``Completed``), built with the orchestrator's own write
builders (``Repository.insert_workflow`` / ``create_tasks`` / ``insert_checkpoint``,
``Journal.submission`` / ``writes_for``; task rows by ``Engine.task_rows_of``, as
catch-up rebuilds them) and committed through ``Store.write`` one workflow per
commit, the task rows applied by the store's lazy writer in big chunks. Nothing runs
through the engine's scheduler and no SurrealQL is written here, so every counter
or index the write path maintains is maintained for seeded rows too.

The service must be stopped (the data directory's lock says so otherwise); its
environment (``PROVISIONING_*``: data directory, secret key) must be the one the
service runs with. Commits are not synced one by one (closing the store syncs them).

    python3 bench/seed.py --data-dir ./data --workflows 10000 --tasks 100
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from orchestrator.engine import Engine
from orchestrator.ids import task_id
from orchestrator.journal import Change, Journal
from orchestrator.models import OperationSpec
from orchestrator.repository import Repository
from orchestrator.rollback import RollbackService
from orchestrator.task_repository import page_id
from shared.events.bus import EventBus
from shared.settings import load_settings
from shared.store.writes import Write
from shared.web.app import open_store

LAYER = 10  # operations of a seeded workflow: layers of 10, each depends on one of the layer before
APPLY_EVERY = 20  # workflows between two applications of the pending task rows
ROWS_PER_COMMIT = 2_000  # task rows the lazy writer applies per commit while seeding


def operations(tasks: int) -> list[dict[str, Any]]:
    return [
        {
            "id": f"op{i}",
            "type": "server_batch",
            "provider": "noop",
            "dependencies": [f"op{i - LAYER}"] if i >= LAYER else [],
        }
        for i in range(tasks)
    ]


def workflow_writes(
    engine: Engine, journal: Journal, specs: list[dict[str, Any]], name: str, at: datetime
) -> list[Write]:
    """Every write a finished workflow of these operations left behind, as of ``at``."""
    wid = str(uuid.uuid4())
    seq = journal.next_seq()
    task_ids = [task_id(seq, index) or str(uuid.uuid4()) for index in range(len(specs))]
    finished = at + timedelta(seconds=1)
    row: dict[str, Any] = {
        "id": wid,
        "name": name,
        "version": "1.0.0",
        "kind": "batch",
        "description": None,
        "environment": None,
        "storage_backend": "surrealdb",
        "parallel_limit": 50,
        "rollback_enabled": True,
        "status": "Running",
        "created_at": at,
        "started_at": at,
        "completed_at": None,
        "error": None,
        "rollback": None,
        "checkpoint_id": str(uuid.uuid4()),
        "submitted_by": "seed",
        "operation_count": len(specs),
        "updated_seq": seq,
        "submitted_seq": seq,
        "operations_json": json.dumps(
            [OperationSpec.model_validate(op).model_dump(mode="json", exclude_none=True) for op in specs]
        ),
        "task_ids_json": json.dumps(task_ids),
    }
    writes: list[Write] = [*Repository.insert_workflow(row)]
    tasks = engine.task_rows_of(row)
    writes += Repository.create_tasks([dict(task) for task in tasks], seq)
    writes.append(Journal.submission(seq, wid, name, "Running", at))
    writes.append(
        Repository.insert_checkpoint(
            {
                "id": row["checkpoint_id"],
                "name": f"before batch {name}",
                "description": f"automatic checkpoint before workflow {wid}",
                "workflow_id": wid,
                "seq": seq - 1,
                "auto": True,
                "created_at": at,
            }
        )
    )
    for index, task in enumerate(tasks):
        tid, op, page = str(task["id"]), str(task["name"]), page_id(seq, index)
        running = {"attempt": 1, "started_at": at, "completed_at": None, "error": None, "progress": 0.0}
        done = {"output": "", "results": {}, "completed_at": finished, "progress": 100.0}
        writes += journal.writes_for(Change("task", tid, wid, op, "Pending", "Running", running, page=page))
        writes += journal.writes_for(Change("task", tid, wid, op, "Running", "Completed", done, page=page))
    patch = {"completed_at": finished, "duration_s": 1.0}
    writes += journal.writes_for(Change("workflow", wid, wid, name, "Running", "Completed", patch))
    return writes


async def seed(data_dir: Path, workflows: int, tasks: int, *, quiet: bool = False) -> dict[str, Any]:
    """Add ``workflows`` finished workflows of ``tasks`` operations each to the (stopped)
    service's data directory; returns what was written and how long it took."""
    settings = load_settings(data_dir=data_dir, sync_commits=False)
    store = open_store(settings)
    await store.open()
    started = time.perf_counter()
    try:
        store.lazy_chunk = ROWS_PER_COMMIT
        engine = Engine(settings, store, EventBus(), rollbacks=RollbackService)
        journal = Journal(store)
        await journal.load()
        specs = operations(tasks)
        # Recent history (the last seconds before now, one workflow a millisecond), so no
        # retention age prunes it while the benchmark reads it.
        first = datetime.now(UTC) - timedelta(milliseconds=workflows + 1000)
        for w in range(workflows):
            at = first + timedelta(milliseconds=w)
            await store.write(*workflow_writes(engine, journal, specs, f"seeded-{w}", at))
            if (w + 1) % APPLY_EVERY == 0:
                await store.flush_lazy()
                if not quiet and (w + 1) % 1000 == 0:
                    rate = (w + 1) * tasks / (time.perf_counter() - started)
                    print(f"seeded {w + 1:,} workflows ({rate:,.0f} tasks/s)", file=sys.stderr, flush=True)
        await store.flush_lazy()
        return {
            "workflows": workflows,
            "tasks": workflows * tasks,
            "journal_seq": journal.last_seq,
            "seconds": round(time.perf_counter() - started, 2),
        }
    finally:
        await store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--workflows", type=int, default=10_000)
    ap.add_argument("--tasks", type=int, default=100, help="operations per workflow")
    args = ap.parse_args()
    print(json.dumps(asyncio.run(seed(args.data_dir, args.workflows, args.tasks))))


if __name__ == "__main__":
    main()
