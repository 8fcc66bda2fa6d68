"""Kill the orchestrator with SIGKILL mid-batch, restart it on the same data directory,
and check that every operation completed exactly once."""

from __future__ import annotations

import asyncio
import collections
import signal
from pathlib import Path

import aiohttp

from tests.helpers.processes import free_port, get_data, poll_until, start_orchestrator, wait_up

N_OPS = 12


async def test_sigkill_mid_batch_then_resume_completes_each_operation_once(
    tmp_path: Path, work_root: Path
) -> None:
    marks = work_root / "marks.txt"  # written by the commands: as root, the runner user
    ops = []
    for i in range(N_OPS):
        ops.append(
            {
                "id": f"step{i:02d}",
                "type": "command",
                "run": [
                    "python3",  # from PATH: the runner may not reach sys.executable
                    "-c",
                    f"import time; time.sleep(0.3); open({str(marks)!r}, 'a').write('step{i:02d}\\n')",
                ],
                # two layers: the second half depends on the first operation of the first half
                "dependencies": [] if i < N_OPS // 2 else [f"step{i - N_OPS // 2:02d}"],
            }
        )
    body = {"name": "resume", "parallel_limit": 3, "operations": ops}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    proc = start_orchestrator(tmp_path / "data", work_root, port, log)
    async with aiohttp.ClientSession() as session:
        try:
            await wait_up(session, base)
            async with session.post(base + "/batch/execute", json=body) as resp:
                assert resp.status == 201, await resp.text()
                batch_id = (await resp.json())["data"]["batch_id"]
            # Kill once some operations have completed and others are running.
            for _ in range(400):
                batch = await get_data(session, f"{base}/batch/operations/{batch_id}")
                statuses = collections.Counter(o["status"] for o in batch["operations"])
                if statuses["Completed"] >= 3 and statuses["Running"] >= 1:
                    break
                await asyncio.sleep(0.02)
            else:
                raise AssertionError(f"batch never reached the kill point: {batch}")
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        completed_before = {o["id"] for o in batch["operations"] if o["status"] == "Completed"}

        proc = start_orchestrator(tmp_path / "data", work_root, port, log)
        try:
            await wait_up(session, base)
            url = f"{base}/batch/operations/{batch_id}"
            batch = await poll_until(session, url, lambda b: b["status"] != "Running")
            journal = await get_data(session, f"{base}/state/workflows/{batch_id}/journal")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(20)

    assert batch["status"] == "Completed", (batch, log.read_text()[-3000:])
    assert all(o["status"] == "Completed" for o in batch["operations"])
    completions = collections.Counter(
        e["name"] for e in journal if e["entity_kind"] == "task" and e["to"] == "Completed"
    )
    assert completions == {f"step{i:02d}": 1 for i in range(N_OPS)}
    # Operations completed before the kill never ran again.
    runs = collections.Counter(marks.read_text().split())
    for name in completed_before:
        assert runs[name] == 1, (name, runs)
    assert set(runs) == {f"step{i:02d}" for i in range(N_OPS)}
    # The interrupted attempts were retried under their policy: attempt counted.
    interrupted = [e for e in journal if e.get("note") == "resumed"]
    assert interrupted, "expected at least one interrupted operation to be resumed"
    assert all(e["to"] == "Pending" for e in interrupted)
