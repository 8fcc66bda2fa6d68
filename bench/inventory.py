"""Latency of ``GET /state/inventory`` (the ``local`` provider's simulated cloud) at
1,000 and 100,000 resources: one page, a page far in by cursor, by offset, filtered.

For each size: a fresh data directory (the embedded file store), the orchestrator app
served over real HTTP on a free port (auth off), the inventory seeded *through the
store in bulk*: the provider's own view (``InventoryView.writes``: pages of 100 and
the counter, as an operation's outcome commits them) 2,000 resources per commit, 90 %
servers, 9 % task services, 1 % clusters. Nothing runs through the engine. Then each
read 200 times (p50/p99, and CPU ms per request of this process, server and client
both), and for comparison the old answer, every resource at once
(``InventoryRepository.all``, what the route returned before it paged).

    python3 bench/inventory.py [--sizes 1000 100000] [--repeat 200] [--out x.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
from aiohttp import web

from orchestrator.app import create_app
from orchestrator.inventory_repository import InventoryRepository
from orchestrator.providers.local_inventory import InventoryView
from shared.settings import load_settings
from shared.web.app import STORE

PER_COMMIT = 2_000


def resource(i: int) -> tuple[str, dict[str, Any]]:
    kind = "cluster" if i % 100 == 0 else "taskserv" if i % 10 == 0 else "server"
    name = f"{kind}-{i:07d}"
    return f"{kind}/{name}", {
        "kind": kind,
        "name": name,
        "provider": "upcloud" if i % 2 else "aws",
        "attributes": {"name": name, "plan": "small", "zone": "de-fra1"},
        "task_id": f"task-{i // 50}",
        "workflow_id": f"wf-{i // 5000}",
        "state": "running",
        "simulated": True,
        "updated_at": "2026-11-26T00:00:00Z",
    }


async def seed(app: web.Application, n: int) -> float:
    store = app[STORE]
    InventoryRepository.register(store)
    view = InventoryView(InventoryRepository(store), 1)
    await view.load()
    started = time.perf_counter()
    for low in range(0, n, PER_COMMIT):
        changes = dict(resource(i) for i in range(low, min(n, low + PER_COMMIT)))
        await store.write(*view.writes(changes))
    return time.perf_counter() - started


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def timed(session: aiohttp.ClientSession, url: str, repeat: int) -> dict[str, float]:
    walls: list[float] = []
    cpu = time.process_time()
    for _ in range(repeat):
        t = time.perf_counter()
        async with session.get(url) as resp:
            body = await resp.read()
            assert resp.status == 200, body[:300]
        walls.append(time.perf_counter() - t)
    walls.sort()
    return {
        "p50_ms": statistics.median(walls) * 1000,
        "p99_ms": walls[min(len(walls) - 1, int(len(walls) * 0.99))] * 1000,
        "cpu_ms": (time.process_time() - cpu) / repeat * 1000,
        "bytes": len(body),
    }


async def cursor_at(session: aiohttp.ClientSession, base: str, far: int) -> str:
    """The next link of the page ``far`` rows in, reached by following cursors."""
    step = min(1000, far)
    url = f"{base}/state/inventory?limit={step}"
    walked = 0
    while walked < far:
        async with session.get(url) as resp:
            link = resp.headers["Link"]
        walked += step
        url = base + link.split(">", 1)[0].lstrip("<")  # the link is relative
    return url.replace(f"limit={step}", "limit=50")


async def one_size(n: int, repeat: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-inventory-") as tmp:
        settings = load_settings(data_dir=Path(tmp), auth_enabled=False, rate_limit_default="1000000/minute")
        app = create_app(settings)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        base = f"http://127.0.0.1:{port}"
        try:
            seeded = await seed(app, n)
            out: dict[str, Any] = {"resources": n, "seed_s": seeded}
            async with aiohttp.ClientSession() as session:
                far = await cursor_at(session, base, n // 2)
                reads = {
                    "limit=50": f"{base}/state/inventory?limit=50",
                    "cursor at n/2, limit=50": far,
                    "offset=n/2, limit=50": f"{base}/state/inventory?limit=50&offset={n // 2}",
                    "limit=1000": f"{base}/state/inventory?limit=1000",
                    "kind=cluster, limit=50": f"{base}/state/inventory?kind=cluster&limit=50",
                }
                for name, url in reads.items():
                    out[name] = await timed(
                        session, url, repeat if "offset" not in name else max(5, repeat // 10)
                    )
            t, cpu = time.perf_counter(), time.process_time()
            everything = await InventoryRepository(app[STORE]).all()
            out["all at once (before)"] = {
                "p50_ms": (time.perf_counter() - t) * 1000,
                "p99_ms": float("nan"),
                "cpu_ms": (time.process_time() - cpu) * 1000,
                "bytes": len(everything),
            }
            return out
        finally:
            await runner.cleanup()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 100_000])
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    results = [await one_size(n, args.repeat) for n in args.sizes]
    print(f"load average {os.getloadavg()[0]:.1f}; {args.repeat} requests each (offset: a tenth)")
    names = [k for k in results[0] if isinstance(results[0][k], dict)]
    print("| read | " + " | ".join(f"{r['resources']:,} p50 / p99 ms (CPU ms)" for r in results) + " |")
    print("|---|" + "---|" * len(results))
    for name in names:
        cells = [
            f"{r[name]['p50_ms']:.1f} / {r[name]['p99_ms']:.1f} ({r[name]['cpu_ms']:.1f})"
            if name != "all at once (before)"
            else f"{r[name]['p50_ms']:.0f} ({r[name]['cpu_ms']:.0f})"
            for r in results
        ]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("seeding: " + ", ".join(f"{r['resources']:,} in {r['seed_s']:.1f} s" for r in results))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    asyncio.run(main())
