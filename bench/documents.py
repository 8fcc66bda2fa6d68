"""Submission and the batch document through real HTTP, on an in-process orchestrator.

The orchestrator app (auth off) on a fresh ``surrealkv://`` data directory behind a
real TCP listener; the client is aiohttp. The same layered DAG as bench/engine.py
(5,000 operations, layers of 100, 2 dependencies each, fixed seed) at
``parallel_limit`` 50 is submitted ``--rounds`` times back to back (each as soon as
the previous one's ``BatchStatusChanged: Completed`` is published), timing each
``POST /batch/execute`` (wall, and the process's CPU while it ran) and each run; then
once more while a client polls ``GET /batch/operations/{id}`` every 200 ms, timing
each poll. Prints a table and writes JSON to bench/results/documents.json.

    python bench/documents.py                    # 20 rounds of no-ops
    python bench/documents.py --rounds 5 --provider local
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.engine import RESULTS, layered_dag, operation
from orchestrator.app import create_app
from orchestrator.events import EventType
from shared.events.bus import Event, EventBus
from shared.settings import load_settings

N = 5_000
POLL_S = 0.2
FINAL = ("Completed", "Failed", "Cancelled")


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure(rounds: int, provider: str) -> dict[str, Any]:
    finished: dict[str, float] = {}
    news = asyncio.Event()

    def listener(event: Event) -> None:
        if event.event_type == EventType.BATCH_STATUS_CHANGED and event.data.get("status") in FINAL:
            finished[str(event.data["workflow_id"])] = time.perf_counter()
            news.set()

    body = json.dumps(
        {
            "name": "bench",
            "parallel_limit": 50,
            "operations": [operation(name, deps, provider) for name, deps in layered_dag(N)],
        }
    )
    out: dict[str, Any] = {"provider": provider, "n": N, "rounds": []}
    with tempfile.TemporaryDirectory() as tmp:
        bus = EventBus()
        bus.add_listener(listener)
        runner = web.AppRunner(create_app(load_settings(data_dir=tmp, auth_enabled=False), bus=bus))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as session:
            for r in range(rounds + 1):
                polling = r == rounds
                cpu0, t0 = cpu_s(), time.perf_counter()
                async with session.post(
                    f"{base}/batch/execute", data=body, headers={"Content-Type": "application/json"}
                ) as resp:
                    doc = await resp.json()
                t1, cpu1 = time.perf_counter(), cpu_s()
                wid = doc["data"]["batch_id"]
                polls: list[float] = []
                while wid not in finished:
                    if polling:
                        p0 = time.perf_counter()
                        async with session.get(f"{base}/batch/operations/{wid}") as got:
                            await got.read()
                        polls.append(time.perf_counter() - p0)
                        try:
                            await asyncio.wait_for(news.wait(), POLL_S)
                        except TimeoutError:
                            pass
                    else:
                        await news.wait()
                    news.clear()
                row = {
                    "post_ms": (t1 - t0) * 1000,
                    "post_cpu_ms": (cpu1 - cpu0) * 1000,
                    "run_s": finished[wid] - t0,
                    "run_cpu_s": cpu_s() - cpu0,
                }
                if polling:
                    out["polled"] = {
                        **row,
                        "polls": len(polls),
                        "poll_ms_median": statistics.median(polls) * 1000 if polls else None,
                        "poll_ms_max": max(polls) * 1000 if polls else None,
                    }
                else:
                    out["rounds"].append(row)
        await runner.cleanup()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--provider", choices=("noop", "local"), default="noop")
    args = ap.parse_args()
    doc = asyncio.run(measure(args.rounds, args.provider))
    print(f"{'round':>5} {'POST ms':>8} {'POST CPU ms':>12} {'run s':>7} {'ops/s':>7} {'run CPU s':>10}")
    for i, row in enumerate([*doc["rounds"], doc["polled"]], 1):
        label = "poll" if i > len(doc["rounds"]) else str(i)
        print(
            f"{label:>5} {row['post_ms']:>8.0f} {row['post_cpu_ms']:>12.0f} {row['run_s']:>7.2f} "
            f"{N / row['run_s']:>7.0f} {row['run_cpu_s']:>10.2f}"
        )
    polled = doc["polled"]
    if polled["polls"]:
        print(
            f"\nwith a poller every {POLL_S * 1000:.0f} ms: {polled['polls']} polls, "
            f"median {polled['poll_ms_median']:.0f} ms, max {polled['poll_ms_max']:.0f} ms"
        )
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "documents.json"
    out.write_text(json.dumps(doc, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
