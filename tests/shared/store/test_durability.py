"""Durable against a power cut: ``provisioning up`` traced with strace on a fresh data
directory. Every event that announces a transition goes out on the WebSocket only after
the commit log write holding that transition's journal entry has been fsynced; with
``PROVISIONING_SYNC_COMMITS=false`` nothing is synced before it is announced (what a
killed-process test cannot tell apart). Also the switch itself, in-process."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from shared.errors import StoreError
from shared.settings import load_settings
from shared.store import durability
from shared.store.durability import ENGINE_SYNC_VARIABLE, apply_engine_sync
from tests.helpers.strace import STRACE_ARGS, Call, Sent, calls, journal_entries, websocket_events

HOST = "127.0.0.1"
LAYERS, WIDTH = 3, 8  # 24 operations, several per group commit
FINAL = {"Completed", "Failed", "Cancelled"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def layered_batch() -> dict[str, Any]:
    operations = []
    for layer in range(LAYERS):
        for i in range(WIDTH):
            deps = [f"op{layer - 1}-{j}" for j in (i, (i + 1) % WIDTH)] if layer else []
            op = {"id": f"op{layer}-{i}", "type": "server_batch", "provider": "noop", "dependencies": deps}
            operations.append(op)
    return {"name": "durable", "parallel_limit": 5, "operations": operations}


async def traced_batch(tmp_path: Path, sync: bool) -> tuple[Path, list[dict[str, Any]]]:
    """Run ``provisioning up`` under strace, submit a batch, watch it to the end on /ws;
    returns the trace and the events the client received."""
    port, cc_port = free_port(), free_port()
    env = dict(os.environ)
    env.update(
        {
            "PROVISIONING_DATA_DIR": str(tmp_path / "data"),
            "PROVISIONING_HOST": HOST,
            "PROVISIONING_ORCHESTRATOR_PORT": str(port),
            "PROVISIONING_CONTROL_CENTER_PORT": str(cc_port),
            "PROVISIONING_AUTH_ENABLED": "false",
            "PROVISIONING_LOG_LEVEL": "WARNING",
            "PROVISIONING_ACCESS_LOG": "false",
            "PROVISIONING_SYNC_COMMITS": str(sync).lower(),
        }
    )
    env.pop(ENGINE_SYNC_VARIABLE, None)
    trace = tmp_path / "trace"
    log = tmp_path / "service.log"
    base = f"http://{HOST}:{port}"
    received: list[dict[str, Any]] = []
    with log.open("wb") as out:
        command = [*STRACE_ARGS, "-o", str(trace), sys.executable, "-m", "provisioning", "up"]
        tracer = await asyncio.create_subprocess_exec(*command, env=env, stdout=out, stderr=out)
        try:
            async with aiohttp.ClientSession() as http:
                for _ in range(600):
                    try:
                        async with http.get(f"{base}/health") as resp:
                            if resp.status == 200:
                                break
                    except aiohttp.ClientError:
                        pass
                    await asyncio.sleep(0.05)
                else:
                    raise AssertionError(f"the service did not start: {log.read_text()}")
                async with http.ws_connect(f"{base}/ws?events=task,batch") as ws:
                    assert (await ws.receive_json(timeout=10))["type"] == "welcome"
                    async with http.post(f"{base}/batch/execute", json=layered_batch()) as resp:
                        assert resp.status == 201, await resp.text()
                    while True:
                        message = await ws.receive_json(timeout=30)
                        received.append(message)
                        batch = message["event_type"] == "BatchStatusChanged"
                        if batch and message["data"]["status"] in FINAL:
                            break
        finally:
            # strace -o ignores SIGTERM (it blocks fatal signals): stop the traced service
            service = Path(f"/proc/{tracer.pid}/task/{tracer.pid}/children").read_text().split()
            for pid in service:
                os.kill(int(pid), signal.SIGTERM)
            async with asyncio.timeout(30):
                await tracer.wait()
    return trace, received


def synced_before(sent: Sent, trace_calls: list[Call]) -> tuple[Call | None, Call | None]:
    """The commit-log write holding the journal entry this event announces, and an fsync
    of that file that began after the write returned and returned before the event's send
    began (None where there is none)."""
    seq = sent.event["data"]["seq"]
    entity = sent.event["data"].get("task_id") or sent.event["data"]["workflow_id"]
    write = next(
        (
            c
            for c in trace_calls
            if "/clog/" in c.path
            and c.name in {"write", "pwrite64", "writev"}
            and any(e["seq"] == seq and e["entity"] == entity for e in journal_entries(c.data))
        ),
        None,
    )
    if write is None:
        return None, None
    sync = next(
        (
            c
            for c in trace_calls
            if c.name in {"fsync", "fdatasync"} and c.path == write.path
            if write.end < c.start and c.end < sent.start
        ),
        None,
    )
    return write, sync


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
@pytest.mark.parametrize("sync", [True, False], ids=["synced", "relaxed"])
async def test_an_event_goes_out_only_after_its_commit_is_on_disk(tmp_path: Path, sync: bool) -> None:
    trace, received = await traced_batch(tmp_path, sync)
    trace_calls = calls(trace)
    sent = [s for s in websocket_events(trace_calls) if "seq" in s.event["data"]]
    # what the trace shows going out is what the client got
    assert [s.event["id"] for s in sent] == [m["id"] for m in received]
    # the batch Running, each task Running and Completed, the batch Completed
    assert len(sent) == 1 + 2 * LAYERS * WIDTH + 1
    assert received[-1]["data"]["status"] == "Completed"
    for s in sent:
        write, fsync = synced_before(s, trace_calls)
        assert write is not None and write.end < s.start, f"announced before it was written: {s.event}"
        entry = next(e for e in journal_entries(write.data) if e["seq"] == s.event["data"]["seq"])
        assert entry["to"] == s.event["data"]["status"]
        if sync:
            assert fsync is not None, f"announced before its commit was synced: {s.event}"
        else:
            assert fsync is None, f"synced although relaxed: {s.event}"


def test_the_engine_takes_the_switch_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(durability, "_engine_sync", None)
    monkeypatch.setenv(ENGINE_SYNC_VARIABLE, "restored after the test")
    monkeypatch.delenv(ENGINE_SYNC_VARIABLE)
    apply_engine_sync("mem://", False)  # the memory engine has nothing to sync: untouched
    assert ENGINE_SYNC_VARIABLE not in os.environ
    apply_engine_sync("surrealkv:///tmp/x/db", False)
    assert os.environ[ENGINE_SYNC_VARIABLE] == "false"
    apply_engine_sync("surrealkv:///tmp/y/db", False)
    with pytest.raises(StoreError, match="started without syncing"):
        apply_engine_sync("surrealkv:///tmp/z/db", True)
    monkeypatch.setattr(durability, "_engine_sync", True)
    apply_engine_sync("surrealkv:///tmp/z/db", False)  # stays synced: more durable, never less
    assert os.environ[ENGINE_SYNC_VARIABLE] == "false"  # the engine already read it


@pytest.mark.parametrize(("raw", "expected"), [(None, True), ("false", False), (" TRUE ", True)])
def test_commits_are_synced_unless_relaxed(
    monkeypatch: pytest.MonkeyPatch, raw: str | None, expected: bool
) -> None:
    if raw is None:
        monkeypatch.delenv("PROVISIONING_SYNC_COMMITS", raising=False)
    else:
        monkeypatch.setenv("PROVISIONING_SYNC_COMMITS", raw)
    assert load_settings().sync_commits is expected
