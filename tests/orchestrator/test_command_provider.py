"""The command provider runs real processes: argv without a shell, bounded output,
the whole process group killed on timeout and on cancel; as root each command runs
as the runner user, always inside the work root.

Commands run ``python3`` from PATH, not ``sys.executable``: the runner user may not
reach the interpreter running the tests (e.g. one under /root)."""

from __future__ import annotations

import asyncio
import logging
import os
import pwd
import stat
from pathlib import Path
from typing import Any

import pytest

from orchestrator.app import create_app
from orchestrator.command_runner import sanitize_text
from tests.helpers.batches import command, submit, wait_batch
from tests.helpers.orchestrator_api import ops_by_id, run

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="only root can drop commands to the runner user")


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


async def run_ops(client: Any, *ops: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return ops_by_id(await run(client, *ops))


async def test_runs_argv_without_shell_and_captures_output(orch):
    op = (await run_ops(orch, command("echo", ["echo", "$HOME; rm -rf /"], env={"X": "1"})))["echo"]
    assert op["status"] == "Completed"
    assert op["output"].strip() == "$HOME; rm -rf /"  # no shell expanded anything
    assert op["results"]["exit_code"] == 0


async def test_failing_command_reports_exit_status_and_stderr(orch):
    run = ["python3", "-c", "import sys; sys.stderr.write('boom'); sys.exit(3)"]
    retry = {"max_attempts": 2, "initial_delay_s": 0}
    op = (await run_ops(orch, command("fail", run, retry=retry)))["fail"]
    assert op["status"] == "Failed"
    assert op["attempt"] == 2
    assert "status 3" in op["error"] and "boom" in op["error"]


async def test_missing_program_fails_without_retry(orch):
    op = (await run_ops(orch, command("nope", ["/nonexistent/tool", "x"], retry={"max_attempts": 3})))["nope"]
    assert op["status"] == "Failed"
    assert op["attempt"] == 1
    assert "cannot start" in op["error"]


async def test_output_capture_is_bounded(orch, settings):
    limit = settings.output_limit_bytes
    ops = await run_ops(orch, command("loud", ["python3", "-c", f"print('x' * {limit * 4})"]))
    output = ops["loud"]["output"]
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


async def test_timeout_kills_the_whole_process_group(orch, work_root):
    pidfile = work_root / "pids"
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


async def test_cancel_kills_running_processes(orch, work_root):
    pidfile = work_root / "pids"
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


async def test_undo_runs_on_rollback(orch, work_root):
    marker = work_root / "made"
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
    output = (await run_ops(orch, command("env", ["env"], env={"GIVEN": "yes"})))["env"]["output"]
    assert "s3cret-admin-password" not in output and "leak-me-not" not in output
    assert "GIVEN=yes" in output and "PATH=" in output
    assert "PROVISIONING_TASK_ID=" in output


async def test_a_background_child_is_killed_when_its_leader_has_exited(orch, work_root):
    pidfile = work_root / "pids"
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


async def test_commands_run_in_the_work_root_it_creates_for_the_runner(orch, work_root):
    assert not work_root.exists()
    ops = await run_ops(orch, command("pwd", ["pwd"]))
    assert ops["pwd"]["status"] == "Completed", ops
    assert ops["pwd"]["output"].strip() == str(work_root)
    st = work_root.stat()
    assert stat.S_IMODE(st.st_mode) == 0o700
    if os.geteuid() == 0:
        assert st.st_uid == pwd.getpwnam("provisioning-runner").pw_uid


async def test_a_relative_cwd_is_taken_inside_the_work_root(orch, work_root):
    ops = await run_ops(
        orch,
        command("mk", ["mkdir", "-p", "site/conf"]),
        command("in", ["pwd"], cwd="site/conf", dependencies=["mk"]),
        command("abs", ["pwd"], cwd=str(work_root / "site"), dependencies=["mk"]),
    )
    assert ops["in"]["output"].strip() == str(work_root / "site" / "conf")
    assert ops["abs"]["output"].strip() == str(work_root / "site")


async def test_a_cwd_climbing_out_of_the_work_root_is_refused_at_submission(orch):
    resp = await orch.post(
        "/batch/execute", json={"name": "cmd", "operations": [command("up", ["pwd"], cwd="a/../../..")]}
    )
    doc = await resp.json()
    assert resp.status == 422, doc
    assert [f["field"] for f in doc["details"]["fields"]] == ["operations.0.cwd"]
    assert "outside the command work root" in doc["details"]["fields"][0]["message"]


async def test_a_cwd_that_became_a_symlink_out_is_refused_when_it_starts(orch, work_root):
    # Accepted at submission (nothing there yet), then the first operation points it at /.
    ops = await run_ops(
        orch,
        command("link", ["ln", "-s", "/", "escape"]),
        command("use", ["ls"], cwd="escape", dependencies=["link"]),
    )
    assert ops["link"]["status"] == "Completed"
    assert ops["use"]["status"] == "Failed" and ops["use"]["attempt"] == 1
    assert "outside the command work root" in ops["use"]["error"]
    assert not ops["use"]["output"]


async def test_a_missing_cwd_fails_without_retry(orch):
    ops = await run_ops(orch, command("nowhere", ["pwd"], cwd="not-made", retry={"max_attempts": 3}))
    assert ops["nowhere"]["status"] == "Failed" and ops["nowhere"]["attempt"] == 1
    assert "cannot enter" in ops["nowhere"]["error"]


@pytest.mark.parametrize(
    ("env", "field"),
    [
        ({"bad-key": "1"}, "operations.0.env.bad-key"),
        ({"K" * 129: "1"}, "operations.0.env." + "K" * 129),
        ({"BIG": "x" * 8193}, "operations.0.env.BIG"),
        ({"NUL": "a\u0000b"}, "operations.0.env.NUL"),
        ({"ld_preload": "/x.so"}, "operations.0.env.ld_preload"),
        ({f"K{i}": "v" for i in range(65)}, "operations.0.env"),
    ],
)
async def test_env_keys_and_values_are_bounded(orch, env, field):
    resp = await orch.post(
        "/batch/execute", json={"name": "c", "operations": [command("e", ["env"], env=env)]}
    )
    doc = await resp.json()
    assert resp.status == 422, doc
    assert field in [f["field"] for f in doc["details"]["fields"]]


async def test_ordinary_env_keys_are_accepted(orch):
    env = {"DEPLOY_ENV": "staging", "_private": "1", "TF_VAR_region": "fi-hel1", "MULTI": "a\nb"}
    ops = await run_ops(orch, command("e", ["env"], env=env))
    lines = ops["e"]["output"].splitlines()
    assert {"DEPLOY_ENV=staging", "_private=1", "TF_VAR_region=fi-hel1", "MULTI=a"} <= set(lines)


async def test_control_characters_in_output_progress_and_errors_are_replaced(orch):
    script = (
        "printf '::progress 50 half\\001way\\n'; sleep 0.3; "
        "printf 'a\\000b\\033[31mc\\td\\r\\n'; printf 'err\\000or\\n' >&2; exit 4"
    )
    data = await submit(orch, {"name": "c", "operations": [command("ctl", ["sh", "-c", script])]})
    seen = await wait_batch(
        orch,
        data["batch_id"],
        until=lambda b: b["operations"][0]["progress"] == 50.0 or b["status"] != "Running",
    )
    task = (await (await orch.get(f"/tasks/{data['operations'][0]['task_id']}")).json())["data"]
    assert seen["operations"][0]["progress"] == 50.0
    assert task["message"] == "half\ufffdway"
    op = (await wait_batch(orch, data["batch_id"]))["operations"][0]
    assert op["output"] == "a\ufffdb\ufffd[31mc\td\r\n"
    assert "err\ufffdor" in op["error"] and "\x00" not in op["error"]


def test_sanitize_text_keeps_tab_cr_lf_and_printable_text():
    assert sanitize_text("a\tb\r\nc é ✓") == "a\tb\r\nc é ✓"
    assert (
        sanitize_text("".join(map(chr, range(32))))
        == "\ufffd" * 9 + "\t\n" + "\ufffd" * 2 + "\r" + "\ufffd" * 18
    )


@as_root
async def test_the_child_runs_as_the_runner_with_its_names_and_no_groups(orch):
    runner = pwd.getpwnam("provisioning-runner")
    ops = await run_ops(
        orch, command("who", ["sh", "-c", 'id -u; id -g; id -G; echo "$HOME $USER $LOGNAME"'])
    )
    uid, gid, groups, names = ops["who"]["output"].splitlines()
    assert (int(uid), int(gid), groups) == (runner.pw_uid, runner.pw_gid, str(runner.pw_gid))
    home, user, logname = names.split()
    assert user == logname == "provisioning-runner"
    assert home != "/root" and Path(home).is_dir()


@as_root
async def test_undo_runs_as_the_runner_too(orch, work_root):
    body = {"name": "c", "operations": [command("u", ["true"], undo=["sh", "-c", "id -u > undo-uid"])]}
    data = await submit(orch, body)
    await wait_batch(orch, data["batch_id"])
    resp = await orch.post(
        "/rollback/execute", json={"operation_ids": ["u"], "workflow_id": data["batch_id"]}
    )
    assert (await resp.json())["data"]["success"] is True
    assert int((work_root / "undo-uid").read_text()) == pwd.getpwnam("provisioning-runner").pw_uid


@as_root
async def test_a_missing_runner_user_fails_the_operation_with_the_fix(aiohttp_client, settings, caplog):
    client = await aiohttp_client(
        create_app(settings.model_copy(update={"runner_user": "provisioning-nobody-here"}))
    )
    assert "provisioning doctor --fix" in caplog.text  # said once at start
    ops = await run_ops(client, command("x", ["true"], retry={"max_attempts": 3}))
    assert ops["x"]["status"] == "Failed" and ops["x"]["attempt"] == 1
    assert "'provisioning-nobody-here' does not exist" in ops["x"]["error"]
    assert "provisioning doctor --fix" in ops["x"]["error"]


@as_root
async def test_root_commands_only_when_allowed_and_with_a_warning(aiohttp_client, settings, caplog):
    with caplog.at_level(logging.WARNING):
        client = await aiohttp_client(create_app(settings.model_copy(update={"allow_root_commands": True})))
    warnings = [r for r in caplog.records if "run as root" in r.getMessage()]
    assert len(warnings) == 1
    ops = await run_ops(client, command("who", ["id", "-u"]))
    assert ops["who"]["output"].strip() == "0"


@as_root
async def test_a_work_root_the_runner_cannot_use_fails_with_the_fix(orch, work_root):
    work_root.mkdir(mode=0o700)  # root's, not the runner's
    ops = await run_ops(orch, command("x", ["true"]))
    assert ops["x"]["status"] == "Failed" and ops["x"]["attempt"] == 1
    assert "not usable" in ops["x"]["error"] and "provisioning doctor --fix" in ops["x"]["error"]
