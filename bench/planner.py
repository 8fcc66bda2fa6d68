"""What the embedded SurrealDB planner does with ORDER BY, LIMIT, START, indexes,
record-id ranges and count() as a table grows.

Fills a table with N rows (``created_at``, ``status`` among five values, a little
payload) in ``mem://`` and ``surrealkv://``, then times each query shape (median of
a few runs) and prints one row per shape and size. The figures are in
docs/performance.md ("Lists, counters and retention"); the store's keyset pages
(``shared/store/keyset.py``) are built on the shapes that stay flat.

    python bench/planner.py                 # N = 20,000 and 200,000, both engines
    python bench/planner.py --sizes 10000   # quicker
    python bench/planner.py --explain       # also print EXPLAIN for each shape
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shared.store.store import Store
from shared.store.writes import Stmt

STATUSES = ("Pending", "Running", "Completed", "Failed", "Cancelled")
CHUNK = 5_000
RUNS = 5

# (name, SurrealQL): $mid is a key in the middle of the table, $t a time in the middle.
SHAPES: list[tuple[str, str]] = [
    ("ORDER BY indexed field DESC LIMIT 50", "SELECT * FROM row ORDER BY created_at DESC LIMIT 50"),
    ("ORDER BY indexed field ASC LIMIT 50", "SELECT * FROM row ORDER BY created_at LIMIT 50"),
    (
        "ORDER BY indexed field LIMIT 50 START 1000",
        "SELECT * FROM row ORDER BY created_at LIMIT 50 START 1000",
    ),
    (
        "WHERE indexed > $t ORDER BY it ASC LIMIT 50",
        "SELECT * FROM row WHERE created_at > $t ORDER BY created_at LIMIT 50",
    ),
    (
        "WHERE indexed < $t ORDER BY it DESC LIMIT 50",
        "SELECT * FROM row WHERE created_at < $t ORDER BY created_at DESC LIMIT 50",
    ),
    ("WHERE indexed < $t LIMIT 50 (no ORDER BY)", "SELECT * FROM row WHERE created_at < $t LIMIT 50"),
    ("WHERE status = x LIMIT 50 (indexed status)", "SELECT * FROM row WHERE status = 'Failed' LIMIT 50"),
    ("record-id range row:[$mid].. LIMIT 50", "SELECT * FROM type::thing('row', [$mid])..  LIMIT 50"),
    ("record-id range literal LIMIT 50", "SELECT * FROM row:[{mid}].. LIMIT 50"),
    ("record-id range literal LIMIT 50 START 1000", "SELECT * FROM row:[{mid}].. LIMIT 50 START 1000"),
    ("record-id range bounded ..=[hi] LIMIT 50", "SELECT * FROM row:[{mid}]..=[{hi}] LIMIT 50"),
    ("record-id range ORDER BY id DESC LIMIT 50", "SELECT * FROM row:[{mid}].. ORDER BY id DESC LIMIT 50"),
    ("whole table LIMIT 50 (table order)", "SELECT * FROM row LIMIT 50"),
    ("count() GROUP ALL", "SELECT count() AS n FROM row GROUP ALL"),
    ("count() WHERE status = x GROUP ALL", "SELECT count() AS n FROM row WHERE status = 'Failed' GROUP ALL"),
    ("count(table) (2.x function)", "RETURN count(SELECT id FROM row)"),
    ("one counter row", "SELECT * FROM ONLY counter:row"),
]


async def fill(store: Store, n: int) -> datetime:
    """N rows keyed ``row:[k]`` (k increasing with time) with an index on created_at and status."""
    await store.write(
        Stmt("DEFINE INDEX IF NOT EXISTS row_created ON row FIELDS created_at"),
        Stmt("DEFINE INDEX IF NOT EXISTS row_status ON row FIELDS status"),
    )
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for base in range(0, n, CHUNK):
        rows = [
            {
                "id": [i],
                "created_at": start + timedelta(seconds=i),
                "status": STATUSES[i % len(STATUSES)],
                "name": f"op{i}",
                "payload": {"attempt": i % 3, "message": "x" * 40},
            }
            for i in range(base, min(n, base + CHUNK))
        ]
        await store.write(Stmt("INSERT INTO row $rows RETURN NONE", {"rows": rows}))
    await store.write(Stmt("UPSERT counter:row SET n = $n", {"n": n}))
    return start + timedelta(seconds=n // 2)


async def time_shape(store: Store, sql: str, params: dict[str, Any]) -> tuple[float, int]:
    samples = []
    count = 0
    for _ in range(RUNS):
        t0 = time.perf_counter()
        rows = await store.query(sql, params)
        samples.append(time.perf_counter() - t0)
        count = len(rows)
    return statistics.median(samples) * 1000, count


async def run(url: str, n: int, explain: bool) -> list[tuple[str, float, int]]:
    store = Store(url)
    await store.open()
    try:
        t_mid = await fill(store, n)
        mid = n // 2
        out = []
        for name, sql in SHAPES:
            text = sql.format(mid=mid, hi=mid + 100)
            ms, count = await time_shape(store, text, {"t": t_mid, "mid": mid})
            out.append((name, ms, count))
            if explain and text.startswith("SELECT") and "ONLY" not in text:
                plan = await store.query(text + " EXPLAIN", {"t": t_mid, "mid": mid})
                print(f"  {name}: {plan}")
        return out
    finally:
        await store.close()


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 200_000])
    parser.add_argument("--engines", nargs="+", default=["mem", "surrealkv"])
    parser.add_argument("--explain", action="store_true")
    args = parser.parse_args()
    results: dict[tuple[str, int], list[tuple[str, float, int]]] = {}
    for engine in args.engines:
        for n in args.sizes:
            with tempfile.TemporaryDirectory() as tmp:
                url = "mem://" if engine == "mem" else f"surrealkv://{tmp}/db"
                results[(engine, n)] = await run(url, n, args.explain)
    columns = list(results)
    header = "| query shape | " + " | ".join(f"{e} {n:,} (ms)" for e, n in columns) + " |"
    print(header)
    print("|---" * (len(columns) + 1) + "|")
    for i, (name, _) in enumerate(SHAPES):
        cells = " | ".join(f"{results[c][i][1]:.2f} ({results[c][i][2]})" for c in columns)
        print(f"| {name} | {cells} |")


if __name__ == "__main__":
    asyncio.run(main())
