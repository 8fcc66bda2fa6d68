"""The documents of a 5,000-operation batch through real HTTP, on an in-process orchestrator.

The orchestrator app (auth off) on a fresh ``surrealkv://`` data directory behind a real
TCP listener; the client is aiohttp. The layered DAG of bench/engine.py (5,000 no-ops,
``parallel_limit`` 50) is submitted ``--rounds`` times; after each, as soon as its
``BatchStatusChanged: Completed`` is published:

* ``first``: the first ``GET /batch/operations/{id}`` (the whole document), wall and the
  process's CPU while it ran (its rows may still be pending then);
* ``progress``: the first ``GET /state/workflows/{id}/progress``;
* ``rows``: once every row is applied and the documents kept in memory are dropped, the
  document read again: from the products kept in the store beside its rows (a batch of
  at least ``document_store_min_operations``), or from its task rows on a tree without;
* ``again``: the median of 20 more reads;
* ``restart``: once every round ran, the app is stopped and started again on the same
  data directory, and each batch's document read once: its first read after a restart.

``--tree DIR`` measures another source tree (e.g. ``/work/main``) for A/B.

    python bench/batch_documents.py
    python bench/batch_documents.py --tree /work/main --rounds 3
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

N = 5_000
FINAL = ("Completed", "Failed", "Cancelled")


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def timed(session: Any, url: str) -> tuple[float, float, int]:
    """Wall ms, CPU ms of this process, and bytes of one GET."""
    c0, t0 = cpu_s(), time.perf_counter()
    async with session.get(url) as resp:
        body = await resp.read()
        assert resp.status == 200, body[:200]
    return (time.perf_counter() - t0) * 1000, (cpu_s() - c0) * 1000, len(body)


async def measure(rounds: int) -> list[dict[str, Any]]:
    import aiohttp
    from aiohttp.test_utils import TestServer

    from bench.engine import layered_dag, operation
    from orchestrator.app import create_app
    from orchestrator.events import EventType
    from orchestrator.keys import WORKFLOWS
    from shared.events.bus import Event, EventBus
    from shared.settings import load_settings
    from shared.web.keys import STORE

    finished: dict[str, asyncio.Event] = {}

    def listener(event: Event) -> None:
        if event.event_type == EventType.BATCH_STATUS_CHANGED and event.data.get("status") in FINAL:
            finished.setdefault(str(event.data["workflow_id"]), asyncio.Event()).set()

    body = json.dumps(
        {
            "name": "bench",
            "parallel_limit": 50,
            "operations": [operation(name, deps, "noop") for name, deps in layered_dag(N)],
        }
    )
    out = []
    wids = []
    with tempfile.TemporaryDirectory() as tmp:
        bus = EventBus()
        bus.add_listener(listener)
        settings = load_settings(data_dir=tmp, auth_enabled=False)
        app = create_app(settings, bus=bus)
        server = TestServer(app, host="127.0.0.1")  # a real TCP listener on a free port
        await server.start_server()
        base = str(server.make_url("")).rstrip("/")
        async with aiohttp.ClientSession() as session:
            for _ in range(rounds):
                async with session.post(
                    f"{base}/batch/execute", data=body, headers={"Content-Type": "application/json"}
                ) as resp:
                    wid = (await resp.json())["data"]["batch_id"]
                wids.append(wid)
                await finished.setdefault(wid, asyncio.Event()).wait()
                pending = app[STORE].lazy_pending
                first = await timed(session, f"{base}/batch/operations/{wid}")
                progress = await timed(session, f"{base}/state/workflows/{wid}/progress")
                await app[STORE].flush_lazy()  # every row applied: a read of them alone
                app[WORKFLOWS].finished.clear()
                rows = await timed(session, f"{base}/batch/operations/{wid}")
                again = [await timed(session, f"{base}/batch/operations/{wid}") for _ in range(20)]
                out.append(
                    {
                        "pending_rows": pending,
                        "first_ms": first[0],
                        "first_cpu_ms": first[1],
                        "progress_ms": progress[0],
                        "progress_cpu_ms": progress[1],
                        "rows_ms": rows[0],
                        "rows_cpu_ms": rows[1],
                        "again_ms": statistics.median(a[0] for a in again),
                        "bytes": first[2],
                    }
                )
        await server.close()  # stops the app: what it was keeping in the store is kept
        server = TestServer(create_app(settings), host="127.0.0.1")
        await server.start_server()
        base = str(server.make_url("")).rstrip("/")
        async with aiohttp.ClientSession() as session:
            for row, wid in zip(out, wids, strict=True):
                first = await timed(session, f"{base}/batch/operations/{wid}")
                row["restart_ms"], row["restart_cpu_ms"] = first[:2]
        await server.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tree", type=Path, help="another source tree to measure (its orchestrator)")
    args = ap.parse_args()
    root = (args.tree or Path(__file__).resolve().parent.parent).resolve()
    sys.path.insert(0, str(root))
    sys.path.insert(1, str(Path(__file__).resolve().parent.parent))  # bench/ itself
    rows = asyncio.run(measure(args.rounds))
    print(f"tree {root}")
    print(
        f"{'round':>5} {'pending':>7} {'first ms':>9} {'CPU':>6} {'progress ms':>12} {'CPU':>6} "
        f"{'rows ms':>8} {'CPU':>6} {'again ms':>9} {'restart ms':>11} {'CPU':>6} {'bytes':>10}"
    )
    for i, r in enumerate(rows, 1):
        print(
            f"{i:>5} {r['pending_rows']:>7} {r['first_ms']:>9.1f} {r['first_cpu_ms']:>6.1f} "
            f"{r['progress_ms']:>12.1f} {r['progress_cpu_ms']:>6.1f} {r['rows_ms']:>8.1f} "
            f"{r['rows_cpu_ms']:>6.1f} {r['again_ms']:>9.1f} {r['restart_ms']:>11.1f} "
            f"{r['restart_cpu_ms']:>6.1f} {r['bytes']:>10,}"
        )


if __name__ == "__main__":
    main()
