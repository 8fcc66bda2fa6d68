"""What ``POST /batch/execute`` costs, through real HTTP and broken down in-process.

**HTTP** (the default part): ``provisioning up`` in a subprocess on a fresh data
directory per size (authentication on, with a logged-in token; commits synced; the
service of ``bench/api.py``). For 100, 1,000 and 5,000 operations (the layered DAG of
bench/engine.py: layers of 100, 2 dependencies each, seed 42; ``noop``,
``parallel_limit`` 50), ``--batches`` batches (20) are submitted back to back, each
as soon as the previous one's ``BatchStatusChanged: Completed`` reached a ``/ws``
watcher. Per size: the POST's wall time p50/p99, the 1st and the last, and the CPU
the service spent while each POST was in flight (``/proc/<pid>/stat``: steadier than
wall time on a loaded machine).

**In-process**: the same request body through the steps of a submission, on an
engine with a ``surrealkv://`` store (commits synced), for each size: ``parse``
(``json.loads`` and the hostile-input check the middleware runs), ``validate``
(``BatchRequest.model_validate_json``, strict, as ``read_body``), ``graph``
(``Engine.validate``: ids, references, providers, cycles), ``build`` (task states
and rows, the workflow row, the snapshot: ``Engine.submit`` less the rest) and
``commit`` (the submission's group commit, synced, with the request's audit record, and
its events; a tree before that committed the record separately: both counted), in CPU time of the
event loop's thread (the embedded database's own threads not counted; the commit's
wall time beside it, and the garbage collector's share of the steps). Median and best
of ``--repeat`` submissions, each run to completion before the next.

    python3 bench/submit.py                   # both parts, writes bench/results/submit.json
    python3 bench/submit.py --parts inprocess --repeat 10
    python3 bench/submit.py --quick           # tiny: a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.api import Service, layered_dag, login, pct, session  # noqa: E402
from bench.engine import RESULTS  # noqa: E402

SIZES = (100, 1_000, 5_000)
LIMIT = 50
FINAL = ("Completed", "Failed", "Cancelled")
STEPS = ("parse", "validate", "graph", "build", "commit")  # "gc": the collector's share of them
CLOCK_TICK = os.sysconf("SC_CLK_TCK")
JSON = {"Content-Type": "application/json"}


def body(n: int) -> bytes:
    doc = {"name": "bench", "parallel_limit": LIMIT, "operations": layered_dag(n, "noop")}
    return json.dumps(doc).encode()


def cpu_of(pid: int) -> float:
    """Seconds of CPU (user + system) process ``pid`` has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK


# -- through HTTP ------------------------------------------------------------------------------


async def finished(
    http: aiohttp.ClientSession, svc: Service, ws: aiohttp.ClientWebSocketResponse, batch_id: str
) -> str:
    """The batch's final status, from its ``BatchStatusChanged`` on ``/ws`` (or, should the
    stream end first, as a heavily loaded machine sometimes makes it, from the batch)."""
    while True:
        msg = await ws.receive(timeout=600)
        if msg.type != aiohttp.WSMsgType.TEXT:
            break
        event = json.loads(msg.data)
        data = event.get("data") or {}
        if event.get("event_type") == "BatchStatusChanged" and data.get("batch_id") == batch_id:
            if data.get("status") in FINAL:
                return str(data["status"])
    while True:
        async with http.get(f"{svc.base}/batch/operations/{batch_id}", params={"view": "summary"}) as resp:
            status = str((await resp.json())["data"]["status"])
        if status in FINAL:
            return status
        await asyncio.sleep(0.1)


async def logged_in(svc: Service) -> str:
    """``bench.api.login``, tried again when the enrolment's TOTP code missed its step (the
    code of the step before is sent: on a loaded machine the request can arrive a step late)."""
    for attempt in range(3):
        try:
            async with aiohttp.ClientSession() as anonymous:
                return await login(anonymous, svc.cc_base)
        except RuntimeError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


async def http_size(work: Path, n: int, batches: int) -> dict[str, Any]:
    """``batches`` POSTs of ``n`` operations on a fresh service, each after the previous ran."""
    svc = Service(work / f"data-{n}")
    await svc.start()
    payload = body(n)
    posts: list[float] = []
    cpus: list[float] = []
    loops: list[float] = []  # the event loop's thread only (its CPU while the POST was in flight)
    try:
        token = await logged_in(svc)
        async with session(token) as http:
            for _ in range(batches):
                assert svc.proc is not None
                async with http.ws_connect(f"{svc.base}/ws?events=batch", max_msg_size=0) as ws:
                    welcome = await ws.receive_json(timeout=10)
                    assert welcome.get("type") == "welcome", welcome
                    cpu0, loop0, t0 = cpu_of(svc.proc.pid), svc.main_thread_s()[0], time.perf_counter()
                    async with http.post(f"{svc.base}/batch/execute", data=payload, headers=JSON) as resp:
                        doc = await resp.json()
                    posts.append((time.perf_counter() - t0) * 1000)
                    cpus.append((cpu_of(svc.proc.pid) - cpu0) * 1000)
                    loops.append((svc.main_thread_s()[0] - loop0) * 1000)
                    if resp.status != 201:
                        raise RuntimeError(f"submission refused: {doc}")
                    batch_id = doc["data"]["batch_id"]
                    status = await finished(http, svc, ws, batch_id)
                    if status != "Completed":
                        raise RuntimeError(f"batch {batch_id} ended {status}")
    finally:
        await svc.stop()
    return {
        "n": n,
        "post_ms": [round(x, 1) for x in posts],
        "post_cpu_ms": [round(x, 1) for x in cpus],
        "post_loop_cpu_ms": [round(x, 1) for x in loops],
        "p50_ms": round(statistics.median(posts), 1),
        "p99_ms": round(pct(posts, 99), 1),
        "cpu_p50_ms": round(statistics.median(cpus), 1),
        "loop_cpu_p50_ms": round(statistics.median(loops), 1),
    }


# -- in-process ---------------------------------------------------------------------------------


CPU = time.thread_time  # the event loop's thread: Python's work, not the database's threads


class GcClock:
    """CPU time spent in the garbage collector, by generation (a ``gc.callbacks`` hook)."""

    def __init__(self) -> None:
        self.spent = [0.0, 0.0, 0.0]
        self._start = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = CPU()
        else:
            self.spent[info["generation"]] += CPU() - self._start

    def __enter__(self) -> GcClock:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self)


def _timed(
    into: dict[str, float], step: str, fn: Callable[..., Awaitable[Any]]
) -> Callable[..., Awaitable[Any]]:
    """``fn``, adding its CPU time to ``into[step]`` and its wall time to ``into[step + "_wall"]``."""

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0, w0 = CPU(), time.perf_counter()
        try:
            return await fn(*args, **kwargs)
        finally:
            into[step] = into.get(step, 0.0) + CPU() - t0
            into[step + "_wall"] = into.get(step + "_wall", 0.0) + time.perf_counter() - w0

    return wrapper


def _timed_sync(into: dict[str, float], step: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = CPU()
        try:
            return fn(*args, **kwargs)
        finally:
            into[step] = into.get(step, 0.0) + CPU() - t0

    return wrapper


async def inprocess_size(n: int, repeat: int) -> dict[str, Any]:
    """The steps of ``repeat`` submissions of ``n`` operations: CPU ms of the event loop's
    thread each, and the commit's wall time."""
    from orchestrator.engine import Engine
    from orchestrator.models import BatchRequest
    from orchestrator.rollback import RollbackService
    from shared.events.bus import EventBus
    from shared.security.actor import Actor
    from shared.security.audit import AuditEntry, AuditLog
    from shared.settings import load_settings
    from shared.store.store import Store
    from shared.web.validation import parse_json

    raw = body(n)
    rounds: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"surrealkv://{tmp}/db", lock_dir=Path(tmp))
        await store.open()
        engine = Engine(load_settings(data_dir=tmp), store, EventBus(), rollbacks=RollbackService)
        await engine.start()
        audit = AuditLog()
        await audit.start(store)
        # The record the service commits with each POST (what its audit middleware would write).
        details = {"method": "POST", "status": 201}
        entry = AuditEntry("batch.execute", "batch/execute", "success", details=details)
        record_with = getattr(audit, "record_with", None)  # absent in trees before it: to compare
        steps: dict[str, float] = {}
        # Instance attributes: the engine's own methods, timed where the engine calls them.
        engine.validate = _timed_sync(steps, "graph", engine.validate)  # type: ignore[method-assign]
        transitions = engine.transitions
        transitions.announce = _timed(steps, "commit", transitions.announce)  # type: ignore[method-assign]
        record = _timed(steps, "commit", audit.record)
        try:
            for _ in range(repeat):
                steps.clear()
                with GcClock() as clock:
                    t0 = CPU()
                    doc = parse_json(raw)
                    t1 = CPU()
                    batch = BatchRequest.model_validate_json(raw, strict=True)
                    keep = getattr(batch, "keep_received", None)  # absent in trees before it: to compare
                    if keep is not None:
                        keep(doc["operations"])
                    t2 = CPU()
                    if record_with is None:
                        wf = await engine.submit(batch)
                        await record(entry)  # a commit of its own, as the service did
                    else:
                        join = functools.partial(record_with, Actor(None), entry)
                        wf = await engine.submit(batch, join=join)
                    t3 = CPU()
                row = {
                    "parse": t1 - t0,
                    "validate": t2 - t1,
                    "graph": steps["graph"],
                    "build": (t3 - t2) - steps["graph"] - steps["commit"],
                    "commit": steps["commit"],
                    "commit_wall": steps["commit_wall"],
                    "gc": sum(clock.spent),
                }
                rounds.append({k: v * 1000 for k, v in row.items()})
                del doc, batch
                driver = engine.runs[wf.id].driver
                assert driver is not None
                await driver
                await store.flush_lazy()  # each submission on a store that has caught up
        finally:
            await audit.stop()
            await engine.stop()
            await store.close()
    out: dict[str, Any] = {"n": n, "rounds": rounds}
    for step in (*STEPS, "total", "commit_wall", "gc"):
        values = [r[step] if step != "total" else sum(r[s] for s in STEPS) for r in rounds]
        out[step] = {"best": round(min(values), 1), "median": round(statistics.median(values), 1)}
    return out


# -- the table ------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default="http,inprocess", help="comma-separated, of: http, inprocess")
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)), help="operations per batch")
    ap.add_argument("--batches", type=int, default=20, help="POSTs per size through HTTP")
    ap.add_argument("--repeat", type=int, default=5, help="in-process submissions per size")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    ap.add_argument("--out", type=Path, default=RESULTS / "submit.json")
    ap.add_argument("--work-dir", type=Path, default=None, help="where the data directories go")
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    sizes = [int(s) for s in args.sizes.split(",")]
    batches, repeat = args.batches, args.repeat
    if args.quick:
        sizes, batches, repeat = [20, 200], 3, 2
    load = os.getloadavg()
    out: dict[str, Any] = {"sizes": sizes, "load_before": load, "cpus": os.cpu_count()}
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs")
    if "http" in parts:
        with tempfile.TemporaryDirectory(dir=args.work_dir) as work:
            out["http"] = [asyncio.run(http_size(Path(work), n, batches)) for n in sizes]
        print(f"\nPOST /batch/execute through HTTP ({batches} batches back to back per size, auth on)")
        print(
            f"{'ops':>6} {'p50 ms':>8} {'p99 ms':>8} {'1st ms':>8} {'last ms':>8} {'CPU p50 ms':>11} "
            f"{'loop CPU 1st/last/p50 ms':>25}"
        )
        for r in out["http"]:
            loop = r["post_loop_cpu_ms"]
            loops = f"{loop[0]:.0f}/{loop[-1]:.0f}/{r['loop_cpu_p50_ms']:.0f}"
            print(
                f"{r['n']:>6} {r['p50_ms']:>8.0f} {r['p99_ms']:>8.0f} {r['post_ms'][0]:>8.0f} "
                f"{r['post_ms'][-1]:>8.0f} {r['cpu_p50_ms']:>11.0f} "
                f"{loops:>25}"
            )
    if "inprocess" in parts:
        out["inprocess"] = [asyncio.run(inprocess_size(n, repeat)) for n in sizes]
        print(f"\nin-process steps, ms of the event loop's CPU (commit wall: ms): median (best) of {repeat}")
        columns = (*STEPS, "total", "commit_wall", "gc")
        print(f"{'ops':>6} " + " ".join(f"{s:>14}" for s in columns))
        for r in out["inprocess"]:
            cells = [f"{r[s]['median']:>6.1f} ({r[s]['best']:>5.1f})" for s in columns]
            print(f"{r['n']:>6} " + " ".join(cells))
    out["load_after"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    print(f"\nload average after {out['load_after'][0]:.2f}; wrote {args.out}")


if __name__ == "__main__":
    main()
