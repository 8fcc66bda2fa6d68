"""The product's speed as a user gets it: ``provisioning up`` in a subprocess, measured
through HTTP and WebSocket only.

Authentication is on: the first admin is bootstrapped from
``PROVISIONING_ADMIN_PASSWORD`` and logged in through the API (MFA enrolment included,
with a real TOTP authenticator); rate limits are raised by settings. Parts:

* ``throughput`` (fresh data directory): a layered DAG of N operations (layers of 100,
  2 dependencies each, fixed seed) at ``parallel_limit`` 5 and 50, providers ``noop``
  and ``local`` (no simulated latency), timed from sending the ``POST`` to the
  ``BatchStatusChanged: Completed`` event on ``/ws``, once with only that watcher and
  once with a client polling ``GET /batch/operations/{id}`` every 200 ms; then more
  ``noop`` batches until the 20th, for the ``POST`` latency of the 1st and the 20th.
  The service's peak RSS (``/proc/<pid>/status``).
* ``sync`` (fresh data directory, ``PROVISIONING_SYNC_COMMITS=false``): the same
  ``noop`` and ``local`` runs without syncing commits, for what durability costs.
* ``reads``: one N-operation batch through the API, then the store seeded with
  finished workflows of 100 tasks (``bench/seed.py``, service stopped) up to 10,000
  and then 1,000,000 tasks; at each size p50/p99 over 200 requests of the lists, the
  statistics and the N-operation batch document, and the RSS after them. On the big
  data directory: the time to healthy, and to the first resumed operation of a batch
  interrupted by ``kill -9``.

    python3 bench/api.py                      # everything (the 1,000,000 tasks take a while)
    python3 bench/api.py --parts throughput,sync
    python3 bench/api.py --quick              # tiny sizes: a smoke run (tests/bench)
    python3 bench/api.py --out /tmp/api.json  # default bench/results/api-<date>.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pyotp

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
HOST = "127.0.0.1"
LAYER = 100
DEPS_PER_OP = 2
SEED = 42
POLL_S = 0.2
# --env and --tree: settings given to every service started, and the tree it runs from.
EXTRA_ENV: dict[str, str] = {}
SERVICE_ROOT = ROOT
ADMIN_PASSWORD = "bench-first-boot-5f1c9e7a"  # a throwaway directory's first admin
FINAL = {"Completed", "Failed", "Cancelled"}
PARTS = ("throughput", "sync", "reads")

GOALS = {
    "noop_50": "≥ 8,000 ops/s",
    "local": "≥ 5,000 ops/s",
    "poller": "costs < 10 %",
    "post": "< 150 ms, same 1st and 20th",
    "list": "p99 < 10 ms, flat",
    "document": "< 50 ms, flat",
    "rss_run": "< 200 MB",
    "rss_reads": "< 300 MB at 1,000,000 tasks",
    "restart": "< 2 s",
}


@dataclass
class Sizes:
    n: int = 5_000  # operations of a measured batch
    small: int = 10_000  # tasks in the store for the first read measurement
    large: int = 1_000_000  # and for the second
    per_workflow: int = 100  # tasks of a seeded workflow
    requests: int = 200  # per read endpoint
    read_budget_s: float = 60.0  # at most this long per endpoint (a slow one gets fewer samples)
    batches: int = 20  # the POST latency of the first and of this one
    limits: tuple[int, ...] = (5, 50)
    providers: tuple[str, ...] = ("noop", "local")
    pollers: tuple[bool, ...] = (False, True)  # runs without and with the 200 ms poller
    repeat: int = 1  # each combination this many times in a row


QUICK = Sizes(
    n=200, small=1_000, large=2_000, per_workflow=50, requests=5, batches=6, limits=(50,), read_budget_s=5.0
)


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (``/proc/<pid>/task/<tid>/children``; a process gone
    meanwhile is left out)."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{current}/task").iterdir():
                with contextlib.suppress(OSError):
                    todo.extend(int(child) for child in (task / "children").read_text().split())
    return out


def vm_rss_hwm_mb(pid: int) -> tuple[float, float]:
    """(``VmRSS``, ``VmHWM``) of one process, MB; (0, 0) for one that has ended."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0, 0.0
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    if "VmRSS" not in fields:  # a zombie
        return 0.0, 0.0
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def private_mb(pid: int) -> float:
    """What one process holds that no other does (``Private_Clean`` + ``Private_Dirty``
    of ``/proc/<pid>/smaps_rollup``), MB; 0 for one that has ended."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0.0
    return sum(int(line.split()[1]) for line in text.splitlines() if line.startswith("Private_")) / 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def layered_dag(n: int, provider: str) -> list[dict[str, Any]]:
    rng = random.Random(SEED)
    ops = []
    for i in range(n):
        layer = i // LAYER
        deps: list[str] = []
        if layer > 0:
            deps = [f"op{j}" for j in rng.sample(range((layer - 1) * LAYER, layer * LAYER), DEPS_PER_OP)]
        op: dict[str, Any] = {"id": f"op{i}", "type": "server_batch", "provider": provider}
        op["dependencies"] = deps
        if provider == "local":
            op["simulate"] = {"latency_s": 0}
        ops.append(op)
    return ops


# -- the service ---------------------------------------------------------------------------


@dataclass
class Service:
    """``provisioning up`` on a data directory, as a subprocess."""

    data_dir: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    cc_port: int = field(default_factory=free_port)
    proc: asyncio.subprocess.Process | None = None
    started_at: float = 0.0  # wall clock when the process was started
    peak_sampled_mb: float = 0.0  # the largest RSS of every process summed, of the samples taken

    @property
    def base(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def cc_base(self) -> str:
        return f"http://{HOST}:{self.cc_port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PROVISIONING_")}
        env.update(
            {
                "PYTHONPATH": os.pathsep.join(
                    filter(None, [str(SERVICE_ROOT), os.environ.get("PYTHONPATH", "")])
                ),
                "PROVISIONING_DATA_DIR": str(self.data_dir),
                "PROVISIONING_HOST": HOST,
                "PROVISIONING_ORCHESTRATOR_PORT": str(self.port),
                "PROVISIONING_CONTROL_CENTER_PORT": str(self.cc_port),
                "PROVISIONING_AUTH_ENABLED": "true",
                "PROVISIONING_ADMIN_PASSWORD": ADMIN_PASSWORD,
                "PROVISIONING_RATE_LIMIT_AUTH": "1000/minute",
                "PROVISIONING_RATE_LIMIT_DEFAULT": "1000000/minute",
                "PROVISIONING_RATE_LIMIT_BATCH": "100000/minute",
                "PROVISIONING_ACCESS_TOKEN_TTL_S": "86400",
                "PROVISIONING_LOG_LEVEL": "WARNING",
                "PROVISIONING_ACCESS_LOG": "false",
                # keep everything the benchmark reads (a setting of the retention work;
                # an older service warns that it does not know it and goes on)
                "PROVISIONING_RETENTION_DAYS": "0",
            }
        )
        env.update(self.extra_env)
        # As installed, the service runs from compiled bytecode: an environment that says
        # not to write any (PYTHONDONTWRITEBYTECODE) would have every start compile every
        # module again (~0.35 s of CPU); the cache goes outside the checkout.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env.setdefault("PYTHONPYCACHEPREFIX", str(Path(tempfile.gettempdir()) / "provisioning-bench-pycache"))
        env.update(EXTRA_ENV)
        return env

    async def start(self) -> float:
        """Start and wait until healthy; returns the seconds it took."""
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        log = (self.data_dir.parent / "service.log").open("ab")
        self.started_at = time.time()
        started = time.perf_counter()
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "provisioning",
            "up",
            env=self.env(),
            stdout=log,
            stderr=log,
            cwd=SERVICE_ROOT,
        )
        log.close()
        self.peak_sampled_mb = 0.0
        async with aiohttp.ClientSession() as http:
            while True:
                if self.proc.returncode is not None:
                    raise RuntimeError(f"the service exited: {self.log_tail()}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"{self.base}/health") as resp:
                        if resp.status == 200:
                            return time.perf_counter() - started
                await asyncio.sleep(0.01)

    def log_tail(self) -> str:
        return (self.data_dir.parent / "service.log").read_text(errors="replace")[-3000:]

    def cpu_s(self) -> float:
        """CPU seconds the service has used so far, every thread (user + system)."""
        assert self.proc is not None
        stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def main_thread_s(self) -> tuple[float, float]:
        """(CPU, waiting for a CPU) seconds of the service's main thread, the event loop's
        (``/proc/<pid>/schedstat``): what is left of a run's wall time is the loop idle."""
        assert self.proc is not None
        on_cpu, waiting, _ = Path(f"/proc/{self.proc.pid}/schedstat").read_text().split()
        return int(on_cpu) / 1e9, int(waiting) / 1e9

    def rss_mb(self) -> tuple[float, float]:
        """(current, peak) resident set size of the service, MB, over every process of it:
        the service's own RSS, plus what its children (the argon2 hashes' forked child,
        command runners) hold privately (a forked child shares the service's pages
        until it writes them: its own RSS would count those twice). The peak is the
        larger of the service's ``VmHWM`` and the largest such sum sampled so far
        (:meth:`sample_rss`, every 50 ms during a run)."""
        assert self.proc is not None
        own, peak = vm_rss_hwm_mb(self.proc.pid)
        current = own + sum(private_mb(pid) for pid in process_tree(self.proc.pid)[1:])
        self.peak_sampled_mb = peak = max(peak, self.peak_sampled_mb, current)
        return current, peak

    def sample_rss(self) -> float:
        """The current RSS of every process of the service (MB), remembered for the peak."""
        return self.rss_mb()[0]

    async def stop(self, sig: int = signal.SIGTERM) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)
        await self.proc.wait()
        if sig == signal.SIGTERM and self.proc.returncode != 0:
            raise RuntimeError(f"the service stopped with {self.proc.returncode}: {self.log_tail()}")
        self.proc = None


async def login(http: aiohttp.ClientSession, cc_base: str) -> str:
    """The first admin's access token, through the API: password, MFA enrolment with a
    TOTP authenticator, then a login with a code of a later step (each step works once)."""
    body = {"username": "admin", "password": ADMIN_PASSWORD}
    async with http.post(f"{cc_base}/auth/login", json=body) as resp:
        data = (await resp.json())["data"]
    setup = {"Authorization": f"Bearer {data['setup_token']}"}
    password = {"password": ADMIN_PASSWORD}
    async with http.post(f"{cc_base}/auth/mfa/setup", json=password, headers=setup) as resp:
        totp = pyotp.TOTP((await resp.json())["data"]["secret"])
    now = time.time()
    enable = {"password": ADMIN_PASSWORD, "code": totp.at(now - 30)}
    async with http.post(f"{cc_base}/auth/mfa/enable", json=enable, headers=setup) as resp:
        if resp.status != 200:
            raise RuntimeError(f"MFA enrolment failed: {await resp.text()}")
    async with http.post(f"{cc_base}/auth/login", json={**body, "mfa_code": totp.at(now)}) as resp:
        doc = await resp.json()
        if resp.status != 200:
            raise RuntimeError(f"login failed: {doc}")
    return str(doc["data"]["token"])


@contextlib.asynccontextmanager
async def session(token: str) -> AsyncIterator[aiohttp.ClientSession]:
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(
        headers={"Authorization": f"Bearer {token}"}, connector=connector
    ) as http:
        yield http


async def store_commits(http: aiohttp.ClientSession, svc: Service) -> float:
    async with http.get(f"{svc.base}/metrics") as resp:
        text = await resp.text()
    found = re.search(r"^store_commits_total (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


# -- throughput ----------------------------------------------------------------------------


async def watched_batch(
    http: aiohttp.ClientSession, svc: Service, ops: list[dict[str, Any]], limit: int, poll: bool
) -> dict[str, Any]:
    """Submit a batch and wait for its BatchStatusChanged to a final status on /ws."""
    peak = 0.0
    polls: list[float] = []
    commits = await store_commits(http, svc)
    cpu = svc.cpu_s()
    loop_cpu, loop_wait = svc.main_thread_s()
    body = {"name": "bench", "parallel_limit": limit, "operations": ops}
    payload = json.dumps(body).encode()
    async with http.ws_connect(f"{svc.base}/ws?events=batch", max_msg_size=0) as ws:
        welcome = await ws.receive_json(timeout=10)
        assert welcome.get("type") == "welcome", welcome
        started = time.perf_counter()
        async with http.post(
            f"{svc.base}/batch/execute", data=payload, headers={"Content-Type": "application/json"}
        ) as resp:
            doc = await resp.json()
        post_s = time.perf_counter() - started
        post_loop_cpu = svc.main_thread_s()[0] - loop_cpu
        if resp.status != 201:
            raise RuntimeError(f"submission refused: {doc}")
        batch_id = doc["data"]["batch_id"]

        async def poller() -> None:
            while True:
                t0 = time.perf_counter()
                async with http.get(f"{svc.base}/batch/operations/{batch_id}") as r:
                    await r.read()
                polls.append(time.perf_counter() - t0)
                await asyncio.sleep(POLL_S)

        async def sampler() -> None:
            nonlocal peak
            while True:
                peak = max(peak, svc.sample_rss())
                await asyncio.sleep(0.05)

        helpers = [asyncio.create_task(sampler())]
        if poll:
            helpers.append(asyncio.create_task(poller()))
        try:
            while True:
                msg = await ws.receive_json(timeout=600)
                data = msg.get("data") or {}
                if msg.get("event_type") == "BatchStatusChanged" and data.get("batch_id") == batch_id:
                    if data.get("status") in FINAL:
                        status = data["status"]
                        break
        finally:
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
        elapsed = time.perf_counter() - started
        cpu = svc.cpu_s() - cpu
        loop_cpu, loop_wait = (b - a for a, b in zip((loop_cpu, loop_wait), svc.main_thread_s(), strict=True))
    if status != "Completed":
        raise RuntimeError(f"batch {batch_id} ended {status}")
    return {
        "batch_id": batch_id,
        "n": len(ops),
        "parallel_limit": limit,
        "poller": poll,
        "seconds": round(elapsed, 3),
        "ops_per_s": round(len(ops) / elapsed),
        "post_ms": round(post_s * 1000, 1),
        "cpu_s": round(cpu, 2),
        "cpu_us_per_op": round(cpu / len(ops) * 1e6),
        # the event loop's thread: on a CPU, runnable but waiting for one, and idle
        "loop_cpu_s": round(loop_cpu, 2),
        "post_loop_cpu_s": round(post_loop_cpu, 3),  # of which until the POST was answered
        "loop_runq_s": round(loop_wait, 2),
        "loop_idle_s": round(elapsed - loop_cpu - loop_wait, 2),
        "polls": len(polls),
        "poll_ms_p50": round(statistics.median(polls) * 1000, 1) if polls else None,
        "poll_ms_max": round(max(polls) * 1000, 1) if polls else None,
        "commits": int(await store_commits(http, svc) - commits),
        "peak_rss_mb": round(peak, 1),
    }


async def bench_throughput(work: Path, sizes: Sizes, sync: bool = True) -> dict[str, Any]:
    svc = Service(work / "data", {"PROVISIONING_SYNC_COMMITS": str(sync).lower()})
    await svc.start()
    runs: list[dict[str, Any]] = []
    posts: list[float] = []
    try:
        async with aiohttp.ClientSession() as anonymous:
            token = await login(anonymous, svc.cc_base)
        async with session(token) as http:
            for provider in sizes.providers:
                ops = layered_dag(sizes.n, provider)
                for limit in sizes.limits:
                    for poll in sizes.pollers if sync else (False,):
                        for _ in range(sizes.repeat):
                            run = await watched_batch(http, svc, ops, limit, poll)
                            run["provider"] = provider
                            runs.append(run)
                            posts.append(run["post_ms"])
                            print_run(run, sync)
            if sync:
                ops = layered_dag(sizes.n, "noop")
                while len(posts) < sizes.batches:
                    posts.append((await watched_batch(http, svc, ops, max(sizes.limits), False))["post_ms"])
        current, peak = svc.rss_mb()
    finally:
        await svc.stop()
    out: dict[str, Any] = {"sync_commits": sync, "runs": runs, "rss_mb": current, "peak_rss_mb": peak}
    if sync:
        out["post_ms"] = posts
    return out


def print_run(run: dict[str, Any], sync: bool) -> None:
    label = "noop_50" if run["provider"] == "noop" and run["parallel_limit"] == 50 else run["provider"]
    goal = GOALS.get(label, "") if run["provider"] == "local" or label == "noop_50" else ""
    poll = "-"
    if run["poller"]:
        poll = f"{run['polls']} polls, p50 {run['poll_ms_p50']} ms, max {run['poll_ms_max']} ms"
    print(
        f"{run['provider']:<6} {run['parallel_limit']:>5} {'synced' if sync else 'relaxed':<8} "
        f"{'yes' if run['poller'] else 'no':<7} {run['ops_per_s']:>7,} {run['seconds']:>7.2f} "
        f"{run['post_ms']:>8.0f} {run['commits']:>7} {run['peak_rss_mb']:>8.0f} {run['cpu_s']:>6.2f} "
        f"{run['cpu_us_per_op']:>6} "
        f"{run['loop_cpu_s']:>5.2f}/{run['loop_runq_s']:.2f}/{run['loop_idle_s']:.2f}  {poll:<40} {goal}",
        flush=True,
    )


# -- reads and restart ---------------------------------------------------------------------


async def sampled(
    http: aiohttp.ClientSession, url: str, count: int, budget_s: float
) -> tuple[list[float], bytes, str]:
    """Seconds of up to ``count`` sequential GETs (fewer once ``budget_s`` is spent), the
    last answer's body and its ``Link`` header."""
    samples: list[float] = []
    body, link = b"", ""
    deadline = time.perf_counter() + budget_s
    for _ in range(count):
        if samples and time.perf_counter() > deadline:
            break
        t0 = time.perf_counter()
        async with http.get(url) as resp:
            body = await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"GET {url}: {resp.status} {body[:300]!r}")
        samples.append(time.perf_counter() - t0)
        link = resp.headers.get("Link", "")
    return samples, body, link


async def timed(http: aiohttp.ClientSession, url: str, count: int, budget_s: float) -> dict[str, Any]:
    """p50/p99 of ``count`` sequential GETs (fewer if they take more than ``budget_s`` in
    all), and what the answers looked like; for a list with a ``Link: rel="next"``, the
    next page's too."""
    samples, body, link = await sampled(http, url, count, budget_s)
    out: dict[str, Any] = {
        "p50_ms": round(pct(samples, 50) * 1000, 2),
        "p99_ms": round(pct(samples, 99) * 1000, 2),
        "requests": len(samples),
        "bytes": len(body),
    }
    found = re.search(r'<([^>]+)>;\s*rel="?next"?', link)
    if found:
        nxt = found.group(1)
        nxt = nxt if nxt.startswith("http") else url.split("/", 3)[0] + "//" + url.split("/", 3)[2] + nxt
        samples, _, _ = await sampled(http, nxt, count, budget_s)
        out["next_p50_ms"] = round(pct(samples, 50) * 1000, 2)
        out["next_p99_ms"] = round(pct(samples, 99) * 1000, 2)
    return out


async def read_latencies(svc: Service, token: str, batch_id: str, sizes: Sizes) -> dict[str, Any]:
    targets = {
        "GET /tasks?limit=50": f"{svc.base}/tasks?limit=50",
        "GET /batch/operations?limit=50": f"{svc.base}/batch/operations?limit=50",
        "GET /audit/logs?limit=50": f"{svc.cc_base}/audit/logs?limit=50",
        "GET /state/statistics": f"{svc.base}/state/statistics",
        "GET /batch/operations/{id}": f"{svc.base}/batch/operations/{batch_id}",
    }
    out: dict[str, Any] = {}
    async with session(token) as http:
        for name, url in targets.items():
            out[name] = await timed(http, url, sizes.requests, sizes.read_budget_s)
    return out


async def json_of(what: str, data_dir: Path, *args: str) -> dict[str, Any]:
    """Run ``python args…`` in the service's environment of ``data_dir`` (a stopped one's)
    and return the JSON object its last line of output holds; ``what`` names it in errors."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *args, env=Service(data_dir).env(), stdout=subprocess.PIPE, cwd=ROOT
    )
    stdout, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed (exit status {proc.returncode})")
    doc: dict[str, Any] = json.loads(stdout.decode().strip().splitlines()[-1])
    return doc


async def seed(data_dir: Path, workflows: int, per_workflow: int) -> dict[str, Any]:
    """bench/seed.py in its own process, on the stopped service's data directory."""
    counts = ("--workflows", str(workflows), "--tasks", str(per_workflow))
    return await json_of("seeding", data_dir, str(BENCH / "seed.py"), "--data-dir", str(data_dir), *counts)


# The embedded engine alone opening a data directory's store: no service, no query.
BARE_OPEN = """
import asyncio, json, sys, time
from pathlib import Path
from surrealdb import AsyncSurreal
from shared.settings import load_settings

async def main() -> None:
    url = load_settings(data_dir=Path(sys.argv[1])).resolved_db_url
    started, cpu = time.perf_counter(), time.process_time()
    db = AsyncSurreal(url)
    await db.connect()
    await db.use("provisioning", "main")
    opened, cpu = time.perf_counter() - started, time.process_time() - cpu
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    rss = int(status["VmRSS"].split()[0]) / 1024
    await db.close()
    print(json.dumps({"open_s": round(opened, 3), "open_cpu_s": round(cpu, 3), "rss_mb": round(rss, 1)}))

asyncio.run(main())
"""


async def bare_open(data_dir: Path) -> dict[str, Any]:
    """The engine's share of a start: the stopped service's store opened by the embedded
    engine alone (``AsyncSurreal(url).connect()``, nothing of ours), seconds and the RSS
    after it, in a process of its own."""
    return await json_of("the bare store open", data_dir, "-c", BARE_OPEN, str(data_dir))


async def interrupted_restart(svc: Service, token: str) -> dict[str, Any]:
    """Submit a batch of slow operations, kill -9 the service mid-run, start it again:
    seconds to healthy and to the first operation the resumed batch starts."""
    ops = [
        {"id": f"slow{i}", "type": "server_batch", "provider": "local", "simulate": {"latency_s": 0.5}}
        for i in range(40)
    ]
    async with session(token) as http:
        async with http.ws_connect(f"{svc.base}/ws?events=task") as ws:
            await ws.receive_json(timeout=10)
            body = {"name": "interrupted", "parallel_limit": 4, "operations": ops}
            async with http.post(f"{svc.base}/batch/execute", json=body) as resp:
                doc = await resp.json()
                if resp.status != 201:
                    raise RuntimeError(f"submission refused: {doc}")
            batch_id = doc["data"]["batch_id"]
            last_id, completed = 0, 0
            while completed < 8:  # two rounds done, the third running
                msg = await ws.receive_json(timeout=60)
                last_id = max(last_id, int(msg.get("id") or 0))
                if msg.get("data", {}).get("status") == "Completed":
                    completed += 1
    await svc.stop(signal.SIGKILL)
    healthy_s = await svc.start()
    async with session(token) as http:
        url = f"{svc.base}/ws?events=task&workflow_id={batch_id}&since={last_id}"
        async with http.ws_connect(url) as ws:
            while True:
                msg = await ws.receive_json(timeout=60)
                if msg.get("event_type") == "TaskStatusChanged" and msg["data"].get("status") == "Running":
                    break
    at = datetime.fromisoformat(msg["timestamp"].replace("Z", "+00:00")).timestamp()
    return {
        "healthy_s": round(healthy_s, 3),
        "first_resumed_operation_s": round(at - svc.started_at, 3),
        "operation": msg["data"].get("operation_id"),
        "rss_after_restart_mb": round(svc.rss_mb()[0], 1),
    }


async def bench_reads(work: Path, sizes: Sizes) -> dict[str, Any]:
    data_dir = work / "data"
    svc = Service(data_dir)
    await svc.start()
    async with aiohttp.ClientSession() as anonymous:
        token = await login(anonymous, svc.cc_base)
    async with session(token) as http:
        run = await watched_batch(http, svc, layered_dag(sizes.n, "noop"), max(sizes.limits), False)
    batch_id = run["batch_id"]
    await svc.stop()
    out: dict[str, Any] = {"batch_id": batch_id, "levels": []}
    seeded = 0
    for total in (sizes.small, sizes.large):
        workflows = (total - sizes.n) // sizes.per_workflow - seeded
        print(f"seeding {workflows:,} workflows of {sizes.per_workflow} tasks …", flush=True)
        seeding = await seed(data_dir, workflows, sizes.per_workflow)
        seeded += workflows
        start_s = await svc.start()
        level: dict[str, Any] = {
            "tasks": sizes.n + seeded * sizes.per_workflow,
            "workflows": 1 + seeded,
            "seed": seeding,
            "start_s": round(start_s, 3),
            "rss_after_start_mb": round(svc.rss_mb()[0], 1),
            "reads": await read_latencies(svc, token, batch_id, sizes),
        }
        level["rss_after_reads_mb"], level["peak_rss_mb"] = (round(v, 1) for v in svc.rss_mb())
        if total == sizes.large:
            level["restart"] = await interrupted_restart(svc, token)
        await svc.stop()
        level["bare_open"] = await bare_open(data_dir)
        out["levels"].append(level)
        print_level(level)
    return out


def print_level(level: dict[str, Any]) -> None:
    seeded = level["seed"]["seconds"]
    print(f"\n{level['tasks']:,} tasks in {level['workflows']:,} workflows (seeded in {seeded} s)")
    print(f"{'read':<32} {'p50 ms':>8} {'p99 ms':>8} {'n':>4} {'bytes':>10} {'next p50/p99 ms':>16}  goal")
    for name, r in level["reads"].items():
        nxt = f"{r['next_p50_ms']}/{r['next_p99_ms']}" if "next_p50_ms" in r else "-"
        goal = GOALS["document"] if name.endswith("{id}") else GOALS["list"]
        print(
            f"{name:<32} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['requests']:>4} {r['bytes']:>10,} "
            f"{nxt:>16}  {goal}"
        )
    print(
        f"start {level['start_s']} s; RSS after start {level['rss_after_start_mb']} MB, after the reads "
        f"{level['rss_after_reads_mb']} MB (peak {level['peak_rss_mb']} MB)  goal {GOALS['rss_reads']}"
    )
    if "restart" in level:
        r = level["restart"]
        print(
            f"restart after kill -9: healthy in {r['healthy_s']} s, first resumed operation "
            f"{r['first_resumed_operation_s']} s after the start  goal {GOALS['restart']}; "
            f"RSS {r['rss_after_restart_mb']} MB"
        )
    bare = level["bare_open"]
    print(
        f"the store alone (the engine's share): opens in {bare['open_s']} s "
        f"({bare['open_cpu_s']} s CPU), RSS {bare['rss_mb']} MB"
    )


# -- main ----------------------------------------------------------------------------------


def selected(args: argparse.Namespace) -> dict[str, Any]:
    """The sizes the command line overrides."""
    out: dict[str, Any] = {}
    if args.providers:
        out["providers"] = tuple(p.strip() for p in args.providers.split(",") if p.strip())
    if args.limits:
        out["limits"] = tuple(int(v) for v in args.limits.split(","))
    out["pollers"] = {"both": (False, True), "no": (False,), "yes": (True,)}[args.poller]
    if args.repeat:
        out["repeat"] = args.repeat
    if args.batches is not None:
        out["batches"] = args.batches
    if args.n:
        out["n"] = args.n
    for item in args.env:
        name, _, value = item.partition("=")
        EXTRA_ENV[name] = value
    if args.tree:
        global SERVICE_ROOT
        SERVICE_ROOT = args.tree.resolve()
    return out


async def main(args: argparse.Namespace) -> dict[str, Any]:
    sizes = dataclasses.replace(QUICK if args.quick else Sizes(), **selected(args))
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise SystemExit(f"unknown parts: {', '.join(sorted(unknown))} (known: {', '.join(PARTS)})")
    results: dict[str, Any] = {
        "when": datetime.now().isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0], "load": os.getloadavg()},
        "sizes": sizes.__dict__ | {"limits": list(sizes.limits)},
        "goals": GOALS,
    }
    root = Path(tempfile.mkdtemp(prefix="bench-api-", dir=args.work_dir))
    root.chmod(0o755)  # the runner user of command operations passes through to its work root
    try:
        if "throughput" in parts or "sync" in parts:
            print(
                f"{'prov':<6} {'limit':>5} {'sync':<8} {'poller':<7} {'ops/s':>7} {'s':>7} "
                f"{'POST ms':>8} {'commits':>7} {'RSS MB':>8} {'CPU s':>6} {'µs/op':>6} "
                f"{'loop cpu/runq/idle s':<20}  {'polls':<40} goal"
            )
        if "throughput" in parts:
            results["throughput"] = await bench_throughput(root / "throughput", sizes)
            t = results["throughput"]
            print(
                f"POST of {sizes.n:,} operations: 1st {t['post_ms'][0]:.0f} ms, {len(t['post_ms'])}th "
                f"{t['post_ms'][-1]:.0f} ms  goal {GOALS['post']}; service peak RSS "
                f"{t['peak_rss_mb']:.0f} MB  goal {GOALS['rss_run']}"
            )
        if "sync" in parts:
            results["sync"] = await bench_throughput(root / "sync", sizes, sync=False)
        if "reads" in parts:
            results["reads"] = await bench_reads(root / "reads", sizes)
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return results


def cli() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    ap.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of: {', '.join(PARTS)}")
    ap.add_argument("--out", type=Path, help="the JSON results (default bench/results/api-<date>.json)")
    ap.add_argument("--work-dir", type=Path, help="where the data directories go (default: the temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the data directories")
    ap.add_argument("--providers", help="throughput: comma-separated, of noop, local (default both)")
    ap.add_argument("--limits", help="throughput: parallel limits, comma-separated (default 5,50)")
    ap.add_argument("--poller", choices=("both", "no", "yes"), default="both", help="throughput: which runs")
    ap.add_argument("--repeat", type=int, help="throughput: run each combination this many times")
    ap.add_argument("--batches", type=int, help="throughput: batches in all, for the last POST (default 20)")
    ap.add_argument("-n", type=int, help="operations of a measured batch (default 5,000)")
    ap.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting of the service (repeatable), e.g. PROVISIONING_EXTENSIONS_ENABLED=false",
    )
    ap.add_argument("--tree", type=Path, help="the source tree the service runs from (default this one)")
    args = ap.parse_args()
    results = asyncio.run(main(args))
    out = args.out or RESULTS / f"api-{datetime.now():%Y%m%d-%H%M}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    cli()
