"""``provisioning.cli.main`` against a real orchestrator on a real port.

``main`` calls ``asyncio.run``, so it runs in a worker thread while the server
keeps serving on the test's event loop.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest

from orchestrator.app import create_app
from provisioning import cli, client
from shared.settings import load_settings
from tests.helpers.batches import wait_batch

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(autouse=True)
def no_saved_token(monkeypatch, tmp_path):
    monkeypatch.delenv("PROVISIONING_TOKEN", raising=False)
    monkeypatch.delenv("PROVISIONING_URL", raising=False)
    monkeypatch.setattr(client, "TOKEN_FILE", tmp_path / "no-token.json")
    monkeypatch.setattr(cli, "WATCH_INTERVAL_S", 0.05)


@pytest.fixture
async def server(aiohttp_server, settings):
    return await aiohttp_server(create_app(settings))


@pytest.fixture
def url(server) -> str:
    return str(server.make_url("")).rstrip("/")


@pytest.fixture
async def http(aiohttp_client, server):
    """A second, plain HTTP client on the same server, to check what the CLI did."""
    return await aiohttp_client(server)


async def cli_main(*argv: str) -> int:
    return await asyncio.to_thread(cli.main, list(argv))


async def data_of(http: Any, path: str) -> Any:
    resp = await http.get(path)
    doc = await resp.json()
    assert resp.status == 200, doc
    return doc["data"]


def batch_file(tmp_path: Path, body: dict[str, Any], name: str = "batch.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(body))
    return str(path)


FAST = {
    "name": "fast",
    "parallel_limit": 2,
    "operations": [
        {"id": "one", "type": "server_batch", "servers": ["s1"], "simulate": {"latency_s": 0}},
        {
            "id": "two",
            "type": "server_batch",
            "servers": ["s2"],
            "dependencies": ["one"],
            "simulate": {"latency_s": 0},
        },
    ],
}


async def test_watch_prints_to_the_current_stdout(url, capsys):
    """What ``batch submit --watch`` prints goes to whatever ``sys.stdout`` is when it runs
    (a redirect, a pipe set up by an embedding program, capsys), like every other line."""
    rc = await cli_main(
        "--url", url, "batch", "submit", str(EXAMPLES / "multi_cloud_deployment.json"), "--watch"
    )
    out = capsys.readouterr().out
    assert rc == 0
    assert "submitted (2 operations)" in out
    assert re.search(r"upcloud_servers\s+Completed", out), out
    assert re.search(r"batch \S+: Completed", out), out


async def test_batch_submit_watch_follows_to_completion(url, http, capsys, monkeypatch):
    rc = await cli_main(
        "--url", url, "batch", "submit", str(EXAMPLES / "multi_cloud_deployment.json"), "--watch"
    )
    out = capsys.readouterr().out
    assert rc == 0, out
    m = re.search(r"batch (\S+) submitted \(2 operations\)", out)
    assert m is not None, out
    bid = m.group(1)
    assert re.search(r"upcloud_servers\s+Completed", out), out
    assert re.search(r"aws_taskservs\s+Completed", out), out
    assert f"batch {bid}: Completed" in out
    b = await data_of(http, f"/batch/operations/{bid}")
    assert b["status"] == "Completed"


async def test_batch_submit_watch_of_failing_yaml_exits_1_and_shows_rollback(url, http, capsys, monkeypatch):
    rc = await cli_main("--url", url, "batch", "submit", str(EXAMPLES / "failing_rollback.yaml"), "--watch")
    out = capsys.readouterr().out
    assert rc == 1, out
    bid = re.search(r"batch (\S+) submitted \(4 operations\)", out).group(1)
    assert f"batch {bid}: Failed" in out
    m = re.search(r"^rollback: (\{.*\})$", out, re.M)
    assert m is not None, out
    rb = json.loads(m.group(1))
    assert rb["operations_executed"] == 3
    assert (await data_of(http, f"/batch/operations/{bid}"))["rollback"] == rb


async def test_batch_submit_without_watch_returns_at_once(url, http, capsys, tmp_path):
    rc = await cli_main("--url", url, "batch", "submit", batch_file(tmp_path, FAST))
    out = capsys.readouterr().out
    assert rc == 0
    bid = re.search(r"batch (\S+) submitted \(2 operations\)", out).group(1)
    assert "Completed" not in out
    done = await wait_batch(http, bid)
    assert done["status"] == "Completed"


async def test_batch_submit_check_prints_plan_and_records_nothing(url, http, capsys):
    rc = await cli_main(
        "--url", url, "batch", "submit", str(EXAMPLES / "multi_cloud_deployment.json"), "--check"
    )
    out = capsys.readouterr().out
    assert rc == 0
    plan = json.loads(out)["plan"]
    assert plan["generations"] == [["upcloud_servers"], ["aws_taskservs"]]
    assert await data_of(http, "/batch/operations") == []


async def test_batch_submit_invalid_file_reports_the_api_error(url, http, capsys, tmp_path):
    bad = {
        "name": "loop",
        "operations": [
            {"id": "a", "type": "server_batch", "dependencies": ["b"]},
            {"id": "b", "type": "server_batch", "dependencies": ["a"]},
        ],
    }
    rc = await cli_main("--url", url, "batch", "submit", batch_file(tmp_path, bad))
    captured = capsys.readouterr()
    assert rc == 1
    assert "error (422)" in captured.err
    assert "cycle" in captured.err
    assert await data_of(http, "/batch/operations") == []


async def test_batch_list_and_status(url, http, capsys, tmp_path, monkeypatch):
    path = batch_file(tmp_path, FAST)
    assert await cli_main("--url", url, "batch", "submit", path, "--watch") == 0
    assert await cli_main("--url", url, "batch", "submit", path, "--watch") == 0
    ids = re.findall(r"batch (\S+) submitted", capsys.readouterr().out)
    assert len(ids) == 2

    assert await cli_main("--url", url, "batch", "list") == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.strip()]
    assert [ln.split()[0] for ln in lines] == ids[::-1]  # newest first
    for ln in lines:
        assert "Completed" in ln and "fast" in ln and "100.0%" in ln

    assert await cli_main("--url", url, "batch", "list", "--limit", "1") == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.strip()]
    assert [ln.split()[0] for ln in lines] == [ids[1]]

    assert await cli_main("--url", url, "batch", "status", ids[0]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["batch_id"] == ids[0]
    assert status["status"] == "Completed"
    assert [o["id"] for o in status["operations"]] == ["one", "two"]


async def test_batch_status_of_unknown_batch_exits_1(url, capsys):
    rc = await cli_main("--url", url, "batch", "status", "no-such-batch")
    captured = capsys.readouterr()
    assert rc == 1
    assert "error (404)" in captured.err
    assert "no-such-batch" in captured.err


async def test_batch_cancel(url, http, capsys, tmp_path):
    slow = {
        "name": "slow",
        "operations": [
            {"id": "wait", "type": "server_batch", "simulate": {"latency_s": 30}},
        ],
    }
    assert await cli_main("--url", url, "batch", "submit", batch_file(tmp_path, slow)) == 0
    bid = re.search(r"batch (\S+) submitted", capsys.readouterr().out).group(1)
    await wait_batch(http, bid, until=lambda b: b["operations"][0]["status"] == "Running")
    assert await cli_main("--url", url, "batch", "cancel", bid) == 0
    assert "Operation cancelled" in capsys.readouterr().out
    assert (await data_of(http, f"/batch/operations/{bid}"))["status"] == "Cancelled"
    assert await cli_main("--url", url, "batch", "cancel", bid) == 1
    assert "error (409)" in capsys.readouterr().err


async def test_tasks_command(url, capsys, tmp_path, monkeypatch):
    assert await cli_main("--url", url, "batch", "submit", batch_file(tmp_path, FAST), "--watch") == 0
    capsys.readouterr()
    assert await cli_main("--url", url, "tasks", "--status", "Completed") == 0
    lines = capsys.readouterr().out.splitlines()
    assert sorted(ln.split()[-1] for ln in lines) == ["one", "two"]
    assert await cli_main("--url", url, "tasks", "--status", "Bogus") == 1
    assert "error (422)" in capsys.readouterr().err


async def test_rollback_checkpoint_and_friends(url, http, capsys, tmp_path, monkeypatch):
    rc = await cli_main(
        "--url",
        url,
        "rollback",
        "checkpoint",
        "before_major_update",
        "--description",
        "Checkpoint before deploying v2.0.0",
    )
    assert rc == 0
    cid = capsys.readouterr().out.strip()
    cp = await data_of(http, f"/rollback/checkpoints/{cid}")
    assert cp["name"] == "before_major_update"
    assert cp["description"] == "Checkpoint before deploying v2.0.0"

    assert await cli_main("--url", url, "rollback", "checkpoints") == 0
    out = capsys.readouterr().out
    assert cid in out and "before_major_update" in out

    assert await cli_main("--url", url, "batch", "submit", batch_file(tmp_path, FAST), "--watch") == 0
    bid = re.search(r"batch (\S+) submitted", capsys.readouterr().out).group(1)

    rc = await cli_main("--url", url, "rollback", "execute", "--operations", "two", "--workflow", bid)
    assert rc == 0
    result = json.loads(capsys.readouterr().out)
    assert result["success"] is True and result["operations_executed"] == 1
    assert await cli_main("--url", url, "rollback", "execute", "--checkpoint", cid) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["operations_executed"] == 1  # only "one" was still Completed
    statuses = {o["id"]: o["status"] for o in (await data_of(http, f"/batch/operations/{bid}"))["operations"]}
    assert statuses == {"one": "RolledBack", "two": "RolledBack"}

    assert await cli_main("--url", url, "rollback", "stats") == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["total_rollbacks"] == 2
    assert stats["success_rate"] == 100.0

    assert await cli_main("--url", url, "rollback", "restore", cid) == 0
    assert f"State restored from checkpoint {cid}" in capsys.readouterr().out


async def test_rollback_checkpoint_of_unknown_checkpoint_exits_1(url, capsys):
    assert await cli_main("--url", url, "rollback", "restore", "ghost") == 1
    assert "error (404)" in capsys.readouterr().err


async def test_unreachable_server_exits_1(unused_tcp_port, capsys):
    port = unused_tcp_port
    rc = await cli_main("--url", f"http://127.0.0.1:{port}", "batch", "list")
    assert rc == 1
    assert "cannot reach" in capsys.readouterr().err


async def test_batch_watch_of_an_existing_batch(url, http, capsys, monkeypatch, tmp_path):
    assert await cli_main("--url", url, "batch", "submit", batch_file(tmp_path, FAST)) == 0
    bid = re.search(r"batch (\S+) submitted", capsys.readouterr().out).group(1)
    assert await cli_main("--url", url, "batch", "watch", bid) == 0
    out = capsys.readouterr().out
    assert re.search(r"^\s+one\s+Completed", out, re.M), out
    assert re.search(r"^\s+two\s+Completed", out, re.M), out
    assert f"batch {bid}: Completed" in out
    assert await cli_main("--url", url, "batch", "watch", "ghost") == 1
    assert "error (404)" in capsys.readouterr().err


async def test_without_url_the_cli_finds_the_orchestrator_through_the_settings(server, monkeypatch, capsys):
    monkeypatch.setenv("PROVISIONING_ORCHESTRATOR_PORT", str(server.port))
    monkeypatch.setenv("PROVISIONING_HOST", "0.0.0.0")  # bound to all addresses: reached on loopback
    assert await cli_main("batch", "list") == 0
    monkeypatch.setenv("PROVISIONING_ORCHESTRATOR_PORT", "nine")
    assert await cli_main("batch", "list") == 2
    assert capsys.readouterr().err == (
        "provisioning: invalid settings: PROVISIONING_ORCHESTRATOR_PORT='nine': "
        "expected an integer from 1 to 65535 (orchestrator_port)\n"
    )


def test_the_client_urls_come_from_the_settings(monkeypatch):
    args = cli.build_parser().parse_args(["batch", "list"])
    settings = load_settings(host="::", orchestrator_port=1, control_center_port=2)
    assert cli._orchestrator_url(args, settings) == "http://[::1]:1"
    assert cli._control_center_url(args, settings) == "http://[::1]:2"
    settings = load_settings(host="10.0.0.5", control_center_url="https://cc.example")
    assert cli._orchestrator_url(args, settings) == "http://10.0.0.5:9090"
    assert cli._control_center_url(args, settings) == "https://cc.example"
    monkeypatch.setenv("PROVISIONING_URL", "https://orch.example")  # the client's own variable
    assert cli._orchestrator_url(args, settings) == "https://orch.example"
