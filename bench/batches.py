"""Batches back to back in one process: what each costs the event loop, and how many
task rows the store applied during it.

The engine and store of ``bench/engine.py`` (durable, ``surrealkv://`` in a temporary
directory), ``--batches`` layered DAGs of ``-n`` ``noop`` operations at ``--limit``,
each submitted as soon as the previous one's driver ends, as ``bench/api.py`` submits
them through the API. Per batch: ops/s, the loop thread's CPU for the submission and
for the run (``time.thread_time``: steadier than wall time on a shared machine), the
row applications during it, the rows still pending at its end, and the commits.
``--unsettled-age`` sets the store's ``lazy_unsettled_max_age_s`` (the service's
``PROVISIONING_ROW_APPLY_UNSETTLED_MAX_AGE_S``; 1 gives the timing before round 3).

    python3 bench/batches.py                       # 3 batches of 5,000 at 50
    python3 bench/batches.py --unsettled-age 1     # rows due 1 s after the submission
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from engine import layered_dag, operation


async def run(n: int, limit: int, batches: int, unsettled_age: float | None) -> list[dict[str, Any]]:
    from orchestrator.engine import Engine
    from orchestrator.models import BatchRequest, OperationSpec
    from orchestrator.rollback import RollbackService
    from shared.events.bus import EventBus
    from shared.settings import load_settings
    from shared.web.app import open_store

    out: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        age = {} if unsettled_age is None else {"row_apply_unsettled_max_age_s": unsettled_age}
        # The data directory inside tmp, so its key file (beside it) is tmp's too.
        settings = load_settings(data_dir=Path(tmp, "data"), **age)
        store = open_store(settings)  # as the service opens it: surrealkv:// in the data directory
        await store.open()
        engine = Engine(settings, store, EventBus(), rollbacks=RollbackService)
        await engine.start()
        ops = [OperationSpec.model_validate(operation(name, deps, "noop")) for name, deps in layered_dag(n)]
        for k in range(batches):
            batch = BatchRequest(name="bench", parallel_limit=limit, operations=ops)
            rows, commits = store.lazy_rows_applied, store.commits
            cpu, wall = time.thread_time(), time.perf_counter()
            wf = await engine.submit(batch)
            submitted = time.thread_time()
            driver = engine.runs[wf.id].driver
            assert driver is not None
            await driver
            ended, seconds = time.thread_time(), time.perf_counter() - wall
            out.append(
                {
                    "batch": k + 1,
                    "ops_per_s": round(n / seconds),
                    "submit_cpu_s": round(submitted - cpu, 3),
                    "run_cpu_s": round(ended - submitted, 3),
                    "rows_applied": store.lazy_rows_applied - rows,
                    "rows_pending_at_end": store.lazy_pending,
                    "commits": store.commits - commits,
                }
            )
            print_row(out[-1])
        await engine.stop()
        await store.close()
    return out


def print_row(row: dict[str, Any]) -> None:
    print(
        f"{row['batch']:>5} {row['ops_per_s']:>7,} {row['submit_cpu_s']:>10.3f} {row['run_cpu_s']:>9.3f} "
        f"{row['rows_applied']:>8,} {row['rows_pending_at_end']:>8,} {row['commits']:>7}",
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=5_000, help="operations per batch")
    ap.add_argument("--limit", type=int, default=50, help="parallel_limit")
    ap.add_argument("--batches", type=int, default=3)
    ap.add_argument("--unsettled-age", type=float, help="the store's lazy_unsettled_max_age_s")
    args = ap.parse_args()
    head = ("batch", 5), ("ops/s", 7), ("POST cpu s", 10), ("run cpu s", 9), ("rows", 8), ("pending", 8)
    print(" ".join(f"{name:>{width}}" for name, width in head), f"{'commits':>7}")
    asyncio.run(run(args.n, args.limit, args.batches, args.unsettled_age))


if __name__ == "__main__":
    main()
