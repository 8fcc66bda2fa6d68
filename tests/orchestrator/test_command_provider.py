"""The command provider runs real processes: argv without a shell, bounded output,
and the whole process group killed on timeout and on cancel."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from tests.conftest import submit, wait_batch


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def spawner(pidfile: Path) -> list[str]:
    """A shell that starts a long-lived child, records both pids, and waits."""
    return ["sh", "-c", f'sleep 60 & echo "$$ $!" > {pidfile}; wait']


async def _pids(pidfile: Path) -> list[int]:
    for _ in range(200):
        if pidfile.exists() and len(pidfile.read_text().split()) == 2:
            return [int(p) for p in pidfile.read_text().split()]
        await asyncio.sleep(0.02)
    raise AssertionError("command did not start")


async def _gone(pids: list[int]) -> bool:
    for _ in range(200):
        if not any(alive(p) for p in pids):
            return True
        await asyncio.sleep(0.05)
    return False


async def test_runs_argv_without_shell_and_captures_output(orch, tmp_path):
    body = {
        "name": "cmd",
        "operations": [
            {
                "id": "echo",
                "type": "command",
                "run": ["echo", "$HOME; rm -rf /"],
                "env": {"X": "1"},
            }
        ],
    }
    done = await wait_batch(orch, (await submit(orch, body))["batch_id"])
    op = done["operations"][0]
    assert op["status"] == "Completed"
    assert op["output"].strip() == "$HOME; rm -rf /"  # no shell expanded anything
    assert op["results"]["exit_code"] == 0


async def test_failing_command_reports_exit_status_and_stderr(orch):
    body = {
        "name": "cmd",
        "operations": [
            {
                "id": "fail",
                "type": "command",
                "retry": {"max_attempts": 2, "initial_delay_s": 0},
                "run": [sys.executable, "-c", "import sys; sys.stderr.write('boom'); sys.exit(3)"],
            }
        ],
    }
    done = await wait_batch(orch, (await submit(orch, body))["batch_id"])
    op = done["operations"][0]
    assert op["status"] == "Failed"
    assert op["attempt"] == 2
    assert "status 3" in op["error"] and "boom" in op["error"]


async def test_missing_program_fails_without_retry(orch):
    body = {
        "name": "cmd",
        "operations": [
            {
                "id": "nope",
                "type": "command",
                "run": ["/nonexistent/tool", "x"],
            }
        ],
    }
    done = await wait_batch(orch, (await submit(orch, body))["batch_id"])
    assert done["operations"][0]["status"] == "Failed"
    assert done["operations"][0]["attempt"] == 1
    assert "cannot start" in done["operations"][0]["error"]


async def test_output_capture_is_bounded(orch, settings):
    limit = settings.output_limit_bytes
    body = {
        "name": "cmd",
        "operations": [
            {
                "id": "loud",
                "type": "command",
                "run": [sys.executable, "-c", f"print('x' * {limit * 4})"],
            }
        ],
    }
    done = await wait_batch(orch, (await submit(orch, body))["batch_id"])
    output = done["operations"][0]["output"]
    assert len(output) < limit + 200
    assert "more bytes not kept" in output


async def test_progress_lines_are_reported(orch):
    body = {
        "name": "cmd",
        "operations": [
            {
                "id": "p",
                "type": "command",
                "run": ["sh", "-c", "echo '::progress 40 halfway there'; sleep 0.5; echo done"],
            }
        ],
    }
    data = await submit(orch, body)
    seen = await wait_batch(
        orch,
        data["batch_id"],
        until=lambda b: b["operations"][0]["progress"] == 40.0 or b["status"] != "Running",
    )
    assert seen["operations"][0]["progress"] == 40.0
    resp = await orch.get(f"/tasks/{data['operations'][0]['task_id']}")
    assert (await resp.json())["data"]["message"] == "halfway there"
    done = await wait_batch(orch, data["batch_id"])
    assert done["operations"][0]["output"].strip() == "done"


async def test_timeout_kills_the_whole_process_group(orch, tmp_path):
    pidfile = tmp_path / "pids"
    body = {
        "name": "cmd",
        "operations": [
            {
                "id": "slow",
                "type": "command",
                "run": spawner(pidfile),
                "timeout": 0.5,
                "retry": {"max_attempts": 1},
            }
        ],
    }
    data = await submit(orch, body)
    pids = await _pids(pidfile)
    done = await wait_batch(orch, data["batch_id"])
    assert done["operations"][0]["status"] == "Failed"
    assert "timed out after 0.5 s" in done["operations"][0]["error"]
    assert await _gone(pids), f"processes still alive: {pids}"


async def test_cancel_kills_running_processes(orch, tmp_path):
    pidfile = tmp_path / "pids"
    body = {
        "name": "cmd",
        "operations": [
            {"id": "slow", "type": "command", "run": spawner(pidfile)},
            {"id": "after", "type": "command", "run": ["true"], "dependencies": ["slow"]},
        ],
    }
    data = await submit(orch, body)
    pids = await _pids(pidfile)
    assert all(alive(p) for p in pids)
    resp = await orch.post(f"/batch/operations/{data['batch_id']}/cancel")
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["data"] == "Operation cancelled"
    done = await wait_batch(orch, data["batch_id"])
    assert done["status"] == "Cancelled"
    assert [o["status"] for o in done["operations"]] == ["Cancelled", "Cancelled"]
    assert await _gone(pids), f"processes still alive: {pids}"
    again = await orch.post(f"/batch/operations/{data['batch_id']}/cancel")
    assert again.status == 409


async def test_undo_runs_on_rollback(orch, tmp_path):
    marker = tmp_path / "made"
    body = {
        "name": "cmd",
        "operations": [
            {
                "id": "touch",
                "type": "command",
                "run": ["touch", str(marker)],
                "undo": ["rm", "-f", str(marker)],
            }
        ],
    }
    data = await submit(orch, body)
    await wait_batch(orch, data["batch_id"])
    assert marker.exists()
    resp = await orch.post(
        "/rollback/execute", json={"operation_ids": ["touch"], "workflow_id": data["batch_id"]}
    )
    result = (await resp.json())["data"]
    assert result["operations_executed"] == 1 and result["success"] is True
    assert not marker.exists()


async def test_commands_do_not_inherit_the_servers_secrets(orch, monkeypatch):
    monkeypatch.setenv("PROVISIONING_ADMIN_PASSWORD", "s3cret-admin-password")
    monkeypatch.setenv("SOME_CLOUD_SECRET", "leak-me-not")
    body = {
        "name": "cmd",
        "operations": [
            {
                "id": "env",
                "type": "command",
                "run": ["env"],
                "env": {"GIVEN": "yes"},
            }
        ],
    }
    done = await wait_batch(orch, (await submit(orch, body))["batch_id"])
    output = done["operations"][0]["output"]
    assert "s3cret-admin-password" not in output and "leak-me-not" not in output
    assert "GIVEN=yes" in output and "PATH=" in output
    assert "PROVISIONING_TASK_ID=" in output


async def test_a_background_child_is_killed_when_its_leader_has_exited(orch, tmp_path):
    pidfile = tmp_path / "pids"
    # The shell exits at once; its background child keeps the group (and stdout) alive.
    body = {
        "name": "cmd",
        "operations": [
            {
                "id": "bg",
                "type": "command",
                "timeout": 0.5,
                "retry": {"max_attempts": 1},
                "run": ["sh", "-c", f'sleep 60 & echo "$$ $!" > {pidfile}'],
            }
        ],
    }
    data = await submit(orch, body)
    pids = await _pids(pidfile)
    done = await wait_batch(orch, data["batch_id"])
    assert done["operations"][0]["status"] == "Failed"
    assert await _gone(pids), f"processes still alive: {pids}"
