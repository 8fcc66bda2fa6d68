"""Read latency through HTTP at several history sizes (issue 10: lists, statistics and
the finished 5,000-operation document), with the service's CPU per read.

For each size N, a fresh data directory is seeded by ``bench/seed.py`` (its public
options only, the service stopped): (N - big) / 100 finished workflows of 100 tasks,
then one finished workflow of ``--big`` (5,000) tasks, the newest, so the first page
of ``GET /batch/operations`` holds one big batch and 49 of 100. Then ``provisioning
up`` starts on it (``bench/api.py``'s ``Service``; authentication off unless
``--auth``, then its login) and each read is timed over HTTP: p50/p99 of
``--requests`` sequential requests after 10 warm-ups, the answer's bytes, the
first request's time (a finished document's first read encodes it; the others find
it kept) and the service's CPU per request (``/proc/<pid>/stat``: on a shared
machine the CPU moves far less than the wall time).

    python3 bench/reads.py                          # 10,000 and 100,000 tasks
    python3 bench/reads.py --sizes 10000 1000000    # slower to seed (minutes)
    python3 bench/reads.py --only batch --work-dir /tmp/reads   # keep the data, measure again
    python3 bench/reads.py --existing /tmp/copy-10k /tmp/copy-1m  # copies seeded before, as they are
    python3 bench/reads.py --existing /tmp/copy-1m --tree /path/to/other/checkout   # A/B

``--existing`` measures data directories (copies: the service writes to them) seeded
before, as they are, with the ``PROVISIONING_SECRET_KEY`` of this environment; the
task count comes from ``/state/statistics``.

A page read again while the service committed nothing is answered from memory
(``PROVISIONING_LIST_ANSWERS_KEPT``): the repeated reads above measure that.
``--cold`` starts the service with none kept, so every read is a store read (what the
first read after a change costs).

Prints a table and writes bench/results/reads.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))

import api  # bench/api.py
from api import RESULTS, Service, login, pct, seed

PER_WORKFLOW = 100
WARMUP = 10
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


async def timed(http: aiohttp.ClientSession, url: str, count: int, pid: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    for n in range(WARMUP):
        async with http.get(url) as resp:
            await resp.read()
        if n == 0:  # the first read of a finished document encodes it; the others find it kept
            first_ms = (time.perf_counter() - t0) * 1000
    samples: list[float] = []
    body = b""
    cpu0 = cpu_s(pid)
    for _ in range(count):
        t0 = time.perf_counter()
        async with http.get(url) as resp:
            body = await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"GET {url}: {resp.status} {body[:300]!r}")
        samples.append((time.perf_counter() - t0) * 1000)
    return {
        "p50_ms": round(statistics.median(samples), 2),
        "p99_ms": round(pct(samples, 99), 2),
        "cpu_ms": round((cpu_s(pid) - cpu0) / count * 1000, 2),
        "first_ms": round(first_ms, 1),
        "bytes": len(body),
    }


def reads_of(svc: Service, newest: str, second: str, big: int) -> dict[str, str]:
    doc = f"/batch/operations/{newest}"
    paths = {
        "GET /tasks?limit=50": "/tasks?limit=50",
        "GET /tasks?limit=50, next page (cursor)": second,
        "GET /tasks?workflow_id=(big)&limit=50": f"/tasks?workflow_id={newest}&limit=50",
        "GET /batch/operations?limit=50": "/batch/operations?limit=50",
        "GET /batch/operations?limit=50&view=summary": "/batch/operations?limit=50&view=summary",
        "GET /audit/logs?limit=50": "/audit/logs?limit=50",
        "GET /state/statistics": "/state/statistics",
        f"GET /batch/operations/{{id}} ({big:,} ops, finished)": doc,
        "GET /batch/operations/{id}?view=summary": doc + "?view=summary",
        "GET /state/workflows/{id}/progress": f"/state/workflows/{newest}/progress",
    }
    return {
        name: path if path.startswith("http") else (svc.cc_base if "/audit/" in path else svc.base) + path
        for name, path in paths.items()
    }


async def measure(
    tasks: int,
    big: int,
    requests: int,
    only: str | None,
    auth: bool,
    work: Path,
    existing: Path | None = None,
    cold: bool = False,
) -> dict[str, Any]:
    data_dir = existing or work / f"data-{tasks}" / "data"
    env = {} if auth else {"PROVISIONING_AUTH_ENABLED": "false"}
    if cold:
        env["PROVISIONING_LIST_ANSWERS_KEPT"] = "0"
    if existing is not None and "PROVISIONING_SECRET_KEY" in os.environ:
        env["PROVISIONING_SECRET_KEY"] = os.environ["PROVISIONING_SECRET_KEY"]
    svc = Service(data_dir, extra_env=env)
    marker = data_dir.parent / "seeded.json"  # a kept directory (--work-dir) is measured again as it is
    if existing is not None:
        out: dict[str, Any] = {"tasks": 0, "seed_s": 0.0}
    elif marker.exists():
        out = json.loads(marker.read_text())
    else:
        t0 = time.perf_counter()
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        seeded = [await seed(data_dir, (tasks - big) // PER_WORKFLOW, PER_WORKFLOW)]
        seeded.append(await seed(data_dir, 1, big))
        out = {"tasks": sum(s["tasks"] for s in seeded), "seed_s": round(time.perf_counter() - t0, 1)}
        marker.write_text(json.dumps(out))
    out["reads"] = {}
    await svc.start()
    assert svc.proc is not None
    try:
        headers = {}
        if auth:
            async with aiohttp.ClientSession() as http:
                headers["Authorization"] = f"Bearer {await login(http, svc.cc_base)}"
        async with aiohttp.ClientSession(headers=headers) as http:
            if existing is not None:
                async with http.get(svc.base + "/state/statistics") as resp:
                    out["tasks"] = sum(((await resp.json())["data"].get("tasks_by_status") or {}).values())
            async with http.get(svc.base + "/batch/operations?limit=1") as resp:
                newest = (await resp.json())["data"][0]["batch_id"]
            async with http.get(svc.base + "/tasks?limit=50") as resp:
                found = re.search(r'<([^>]+)>;\s*rel="?next"?', resp.headers.get("Link", ""))
                second = found.group(1) if found else "/tasks?limit=50"
            for name, url in reads_of(svc, newest, second, big).items():
                if only is None or only in name:
                    out["reads"][name] = await timed(http, url, requests, svc.proc.pid)
        out["rss_mb"] = round(svc.rss_mb()[1])
    finally:
        await svc.stop()
    return out


def print_table(results: list[dict[str, Any]]) -> None:
    cols = " | ".join(f"{r['tasks']:,} tasks: p50 / p99 ms, CPU ms (first read ms)" for r in results)
    print(f"| read | {cols} | bytes |")
    print("|---" * (len(results) + 2) + "|")
    for name, first in results[0]["reads"].items():
        cells = " | ".join(
            "{p50_ms} / {p99_ms}, {cpu_ms} ({first_ms})".format(**r["reads"][name])
            for r in results
            if name in r["reads"]
        )
        print(f"| {name} | {cells} | {first['bytes']:,} |")
    print("seeding: " + ", ".join(f"{r['tasks']:,} tasks in {r['seed_s']} s" for r in results))
    print("service peak RSS: " + ", ".join(f"{r['rss_mb']} MB" for r in results))
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--big", type=int, default=5_000, help="operations of the big (newest) batch")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--only", help="only the reads whose name contains this")
    parser.add_argument("--auth", action="store_true", help="authentication on (bench/api.py's login)")
    parser.add_argument(
        "--work-dir", type=Path, help="keep the data directories here; a rerun measures them again"
    )
    parser.add_argument("--existing", type=Path, nargs="+", help="measure these seeded data directories")
    parser.add_argument("--tree", type=Path, help="the source tree the service runs from (default this one)")
    parser.add_argument("--cold", action="store_true", help="no list answer kept: every read reads the store")
    args = parser.parse_args()
    if args.tree is not None:
        api.SERVICE_ROOT = args.tree.resolve()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work_dir or Path(tmp)
        if args.existing:
            runs = [
                measure(0, args.big, args.requests, args.only, args.auth, work, d, args.cold)
                for d in args.existing
            ]
        else:
            runs = [
                measure(n, args.big, args.requests, args.only, args.auth, work, cold=args.cold)
                for n in args.sizes
            ]
        results = [await run for run in runs]
    print_table(results)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "reads.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
