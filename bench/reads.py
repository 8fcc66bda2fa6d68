"""List and statistics latency through HTTP at two history sizes (issue 10, "reads").

For each size, a fresh ``surrealkv://`` data directory is seeded with N tasks in
workflows of 100 (finished: Completed, every 50th Failed) through the
orchestrator's repository write builders in bulk — the same builders the engine
uses, so list keys and counters are what a real history would hold — then
``python -m provisioning orchestrator`` is started on it (auth off) and each read
is timed over HTTP (p50 and p99 of ``--requests`` requests, after 10 warm-ups).

    python bench/reads.py                          # 10,000 and 200,000 tasks
    python bench/reads.py --sizes 10000 1000000    # slower to seed

Prints a table and writes bench/results/reads.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from orchestrator.repository import Repository
from shared.store.store import Store
from shared.store.writes import Write

PER_WORKFLOW = 100
WORKFLOWS_PER_COMMIT = 20
RESULTS = Path(__file__).resolve().parent / "results"


def workflow_writes(seq: int, at: datetime) -> tuple[str, list[Write]]:
    wid = str(uuid.uuid4())
    writes: list[Write] = [
        *Repository.insert_workflow(
            {
                "id": wid,
                "name": f"seeded {seq}",
                "kind": "batch",
                "status": "Completed",
                "created_at": at,
                "started_at": at,
                "completed_at": at + timedelta(seconds=5),
                "duration_s": 5.0,
                "submitted_seq": seq,
                "updated_seq": seq,
                "operation_count": PER_WORKFLOW,
                "operations_json": "[]",
                "task_ids_json": "[]",
            }
        )
    ]
    for index in range(PER_WORKFLOW):
        status = "Failed" if index % 50 == 49 else "Completed"
        row = {
            "id": str(uuid.uuid4()),
            "workflow_id": wid,
            "name": f"op{index}",
            "index": index,
            "type": "server_batch",
            "provider": "noop",
            "command": "noop",
            "args": [],
            "dependencies": [],
            "dependency_names": [],
            "status": status,
            "attempt": 1,
            "progress": 100.0,
            "created_at": at,
            "completed_at": at + timedelta(seconds=5),
        }
        writes.append(Repository.create_task(row, seq))
    return wid, writes


async def seed(data_dir: Path, tasks: int) -> str:
    """Seed ``tasks`` tasks; returns the id of the last workflow (the newest)."""
    store = Store(f"surrealkv://{data_dir / 'db'}", lazy_max=50_000)
    await store.open()
    start = datetime.now(UTC) - timedelta(days=1)
    last = ""
    try:
        workflows = tasks // PER_WORKFLOW
        for base in range(0, workflows, WORKFLOWS_PER_COMMIT):
            writes: list[Write] = []
            for n in range(base, min(workflows, base + WORKFLOWS_PER_COMMIT)):
                last, batch = workflow_writes(n + 1, start + timedelta(seconds=n))
                writes += batch
            await store.write(*writes)
        await store.flush_lazy()
        # positions continue after the seeded ones, as if the journal had recorded them
        await store.write(store.mark_write(workflows))
    finally:
        await store.close()
    return last


def start(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update(
        {
            "PROVISIONING_DATA_DIR": str(data_dir),
            "PROVISIONING_ORCHESTRATOR_PORT": str(port),
            "PROVISIONING_AUTH_ENABLED": "false",
            "PROVISIONING_RETENTION_DAYS": "0",
            "PROVISIONING_COMMAND_WORK_ROOT": str(data_dir / "work"),
        }
    )
    return subprocess.Popen(
        [sys.executable, "-m", "provisioning", "orchestrator"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def timed(session: aiohttp.ClientSession, url: str, n: int) -> tuple[float, float, int]:
    for _ in range(10):
        async with session.get(url) as resp:
            await resp.read()
    samples = []
    size = 0
    for _ in range(n):
        t0 = time.perf_counter()
        async with session.get(url) as resp:
            body = await resp.read()
            assert resp.status == 200, body[:300]
        samples.append((time.perf_counter() - t0) * 1000)
        size = len(body)
    samples.sort()
    return statistics.median(samples), samples[max(0, int(len(samples) * 0.99) - 1)], size


async def measure(tasks: int, requests: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        t0 = time.perf_counter()
        newest = await seed(data_dir, tasks)
        seeded_s = time.perf_counter() - t0
        port = 20000 + os.getpid() % 20000
        proc = start(data_dir, port)
        base = f"http://127.0.0.1:{port}"
        out: dict[str, Any] = {"tasks": tasks, "seed_s": round(seeded_s, 1), "reads": {}}
        try:
            async with aiohttp.ClientSession() as session:
                for _ in range(600):
                    try:
                        async with session.get(base + "/health") as resp:
                            if resp.status == 200:
                                break
                    except aiohttp.ClientError:
                        pass
                    await asyncio.sleep(0.05)
                async with session.get(base + "/tasks?limit=50") as resp:
                    link = resp.headers.get("Link", "")
                second = link.split("<", 1)[1].split(">", 1)[0] if "<" in link else "/tasks?limit=50"
                urls = {
                    "GET /tasks?limit=50": "/tasks?limit=50",
                    "GET /tasks (next page by cursor)": second,
                    "GET /tasks?limit=50&offset=5000": "/tasks?limit=50&offset=5000",
                    "GET /tasks?status=Failed&limit=50": "/tasks?status=Failed&limit=50",
                    "GET /tasks?workflow_id=…&limit=50": f"/tasks?workflow_id={newest}&limit=50",
                    "GET /batch/operations?limit=50": "/batch/operations?limit=50",
                    "GET /rollback/checkpoints?limit=50": "/rollback/checkpoints?limit=50",
                    "GET /state/statistics": "/state/statistics",
                    "GET /state/system/metrics": "/state/system/metrics",
                }
                for name, path in urls.items():
                    p50, p99, size = await timed(session, base + path, requests)
                    out["reads"][name] = {"p50_ms": round(p50, 2), "p99_ms": round(p99, 2), "bytes": size}
        finally:
            proc.terminate()
            proc.wait(30)
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 200_000])
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    results = [await measure(n, args.requests) for n in args.sizes]
    header = "| read | " + " | ".join(f"{r['tasks']:,} tasks p50 / p99 (ms)" for r in results) + " |"
    print(header)
    print("|---" * (len(results) + 1) + "|")
    for name in results[0]["reads"]:
        cells = " | ".join(f"{r['reads'][name]['p50_ms']} / {r['reads'][name]['p99_ms']}" for r in results)
        print(f"| {name} | {cells} |")
    print("seeding: " + ", ".join(f"{r['tasks']:,} tasks in {r['seed_s']} s" for r in results))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "reads.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
