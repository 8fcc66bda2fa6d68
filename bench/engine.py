"""Engine throughput on layered DAGs of no-op operations, durable on embedded SurrealDB.

For N = 1,000 and 5,000 operations in layers of 100 (each depends on 2 operations
of the previous layer, fixed seed), at parallel_limit 5 and 50:
  * the real engine with durable state on ``surrealkv://`` in a temporary directory;
  * a bare in-memory asyncio ready-set scheduler on the same DAG (the lower bound).
Each configuration runs in its own process so peak RSS is its own. ``ops/s`` counts
from the submission call to the workflow's final transition being durable (in the
journal, announced); ``rows ops/s`` until every task row, which the store applies
lazily from the journal, has caught up as well. Also prints the latency from
``POST /batch/execute`` to the first operation starting.

    python bench/engine.py                    # full table, writes bench/results/engine.json
    python bench/engine.py --quick            # N = 1,000 only
    python bench/engine.py --provider local   # the simulated cloud (no latency) instead of
                                              # no-ops: writes engine-local.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any

LAYER = 100
DEPS_PER_OP = 2
SEED = 42
RESULTS = Path(__file__).resolve().parent / "results"


def layered_dag(n: int) -> list[tuple[str, list[str]]]:
    rng = random.Random(SEED)
    ops: list[tuple[str, list[str]]] = []
    for i in range(n):
        layer = i // LAYER
        deps: list[str] = []
        if layer > 0:
            prev = range((layer - 1) * LAYER, layer * LAYER)
            deps = [f"op{j}" for j in rng.sample(prev, DEPS_PER_OP)]
        ops.append((f"op{i}", deps))
    return ops


async def run_memory(n: int, limit: int) -> float:
    """A bare ready-set scheduler: the same DAG, asyncio tasks, no persistence."""
    ops = layered_dag(n)
    dependents: dict[str, list[str]] = {name: [] for name, _ in ops}
    waiting = {name: len(deps) for name, deps in ops}
    for name, deps in ops:
        for d in deps:
            dependents[d].append(name)
    ready = deque(name for name, deps in ops if not deps)
    done: asyncio.Queue[str] = asyncio.Queue()
    running = 0

    async def work(name: str) -> None:
        await asyncio.sleep(0)
        done.put_nowait(name)

    started = time.perf_counter()
    finished = 0
    while finished < n:
        while ready and running < limit:
            asyncio.get_running_loop().create_task(work(ready.popleft()))
            running += 1
        name = await done.get()
        running -= 1
        finished += 1
        for d in dependents[name]:
            waiting[d] -= 1
            if waiting[d] == 0:
                ready.append(d)
    return time.perf_counter() - started


def operation(name: str, deps: list[str], provider: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"id": name, "type": "server_batch", "provider": provider, "dependencies": deps}
    if provider == "local":  # the simulated cloud's own cost, without its simulated latency
        spec["simulate"] = {"latency_s": 0}
    return spec


async def run_engine(n: int, limit: int, provider: str = "noop") -> dict[str, Any]:
    from orchestrator.engine import Engine
    from orchestrator.models import BatchRequest, OperationSpec
    from orchestrator.rollback import RollbackService
    from shared.events.bus import EventBus
    from shared.settings import load_settings
    from shared.store.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"surrealkv://{tmp}/db", lock_dir=Path(tmp))
        await store.open()
        engine = Engine(load_settings(data_dir=tmp), store, EventBus(), rollbacks=RollbackService)
        await engine.start()
        batch = BatchRequest(
            name="bench",
            parallel_limit=limit,
            operations=[
                OperationSpec.model_validate(operation(name, deps, provider)) for name, deps in layered_dag(n)
            ],
        )
        started = time.perf_counter()
        wf = await engine.submit(batch)
        submitted = time.perf_counter()
        run = engine.runs[wf.id]
        assert run.driver is not None
        await run.driver
        elapsed = time.perf_counter() - started
        # The journal is the record; task rows are applied lazily from it. Time until
        # they have all caught up too (a read would wait for the same).
        pending = store.lazy_pending
        await store.flush_lazy()
        applied = time.perf_counter() - started
        row = await engine.repo.workflow(wf.id)
        assert row is not None and row["status"] == "Completed", row
        journal = await store.query("SELECT count() AS n FROM journal GROUP ALL")
        commits = store.commits
        await engine.stop()
        await store.close()
        # What the embedded engine replays at every later start (its log is append-only).
        log_bytes = sum(f.stat().st_size for f in Path(tmp, "db").rglob("*") if f.is_file())
    return {
        "log_mb": round(log_bytes / 1e6, 1),
        "seconds": elapsed,
        "submit_s": submitted - started,
        "commits": commits,
        "journal_rows": journal[0]["n"] if journal else 0,
        "applied_s": applied,
        "rows_pending_at_end": pending,
    }


async def first_start_latency(samples: int) -> list[float]:
    """ms from the POST response arriving to the first operation's Running being announced.

    Negative values mean the operation was already running (durably) before the
    response reached the client."""
    import aiohttp
    from aiohttp import web

    from orchestrator.app import create_app
    from orchestrator.events import EventType
    from shared.events.bus import Event, EventBus
    from shared.settings import load_settings

    first_running: dict[str, float] = {}
    arrived = asyncio.Event()

    def listener(event: Event) -> None:
        wid = event.data.get("workflow_id")
        if event.event_type == EventType.TASK_STATUS_CHANGED and event.data.get("status") == "Running":
            first_running.setdefault(str(wid), time.perf_counter())
            arrived.set()

    with tempfile.TemporaryDirectory() as tmp:
        bus = EventBus()
        bus.add_listener(listener)
        app = create_app(load_settings(data_dir=tmp, auth_enabled=False), bus=bus)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        out: list[float] = []
        body = {
            "name": "latency",
            "parallel_limit": 5,
            "operations": [{"id": f"op{i}", "type": "server_batch", "provider": "noop"} for i in range(10)],
        }
        async with aiohttp.ClientSession() as session:
            for _ in range(samples):
                async with session.post(f"http://127.0.0.1:{port}/batch/execute", json=body) as r:
                    doc = await r.json()
                    returned = time.perf_counter()
                wid = doc["data"]["batch_id"]
                while wid not in first_running:
                    arrived.clear()
                    await arrived.wait()
                out.append((first_running[wid] - returned) * 1000)
                await asyncio.sleep(0.05)
        await runner.cleanup()
    return out


def child(kind: str, n: int, limit: int, provider: str) -> None:
    if kind == "memory":
        seconds = asyncio.run(run_memory(n, limit))
        doc: dict[str, Any] = {"seconds": seconds}
    else:
        doc = asyncio.run(run_engine(n, limit, provider))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    doc["peak_rss_mb"] = usage.ru_maxrss / 1024
    # CPU of the whole child (start-up included): steadier than wall time on a busy machine.
    doc["cpu_s"] = usage.ru_utime + usage.ru_stime
    print(json.dumps(doc))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--provider", choices=("noop", "local"), default="noop")
    ap.add_argument("--child", nargs=3, metavar=("KIND", "N", "LIMIT"))
    args = ap.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), int(args.child[2]), args.provider)
        return
    sizes = [1000] if args.quick else [1000, 5000]
    rows = []
    print(
        f"{'scheduler':<10} {'N':>6} {'limit':>6} {'ops/s':>10} {'seconds':>8} "
        f"{'submit s':>9} {'run ops/s':>10} {'commits':>8} {'rows ops/s':>11} "
        f"{'peak RSS MB':>12}"
    )
    for n in sizes:
        for limit in (5, 50):
            for kind in ("memory", "durable"):
                res = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--provider",
                        args.provider,
                        "--child",
                        kind,
                        str(n),
                        str(limit),
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                doc = json.loads(res.stdout.strip().splitlines()[-1])
                ops_s = n / doc["seconds"]
                # Throughput once recorded: from submission returning to the last operation.
                run_s = n / (doc["seconds"] - doc.get("submit_s", 0.0))
                # Until every task row is applied too (the journal had it all earlier).
                rows_s = n / doc.get("applied_s", doc["seconds"])
                row = {
                    "scheduler": kind,
                    "provider": args.provider if kind == "durable" else "-",
                    "n": n,
                    "parallel_limit": limit,
                    "ops_per_s": round(ops_s),
                    "run_ops_per_s": round(run_s),
                    "rows_applied_ops_per_s": round(rows_s),
                    **doc,
                }
                rows.append(row)
                submit_s = f"{doc['submit_s']:.3f}" if "submit_s" in doc else "-"
                print(
                    f"{kind:<10} {n:>6} {limit:>6} {ops_s:>10.0f} {doc['seconds']:>8.3f} "
                    f"{submit_s:>9} {run_s:>10.0f} {doc.get('commits', '-'):>8} "
                    f"{rows_s:>11.0f} {doc['peak_rss_mb']:>12.1f}",
                    flush=True,
                )
    lat = asyncio.run(first_start_latency(20 if args.quick else 50))
    waits = sorted(max(0.0, x) for x in lat)
    p50 = statistics.median(waits)
    p99 = waits[max(0, int(len(waits) * 0.99) - 1)]
    before = sum(1 for x in lat if x <= 0)
    print(
        f"\nPOST /batch/execute returned -> first operation Running: "
        f"p50 {p50:.2f} ms, p99 {p99:.2f} ms ({len(lat)} samples; {before} already "
        f"running when the response arrived)"
    )
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / ("engine.json" if args.provider == "noop" else f"engine-{args.provider}.json")
    out.write_text(
        json.dumps(
            {"runs": rows, "first_start_latency_ms": {"p50": p50, "p99": p99, "samples": lat}}, indent=2
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
