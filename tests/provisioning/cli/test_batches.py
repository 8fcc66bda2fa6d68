"""``batch …`` and the workflow commands against one live ``provisioning up`` per module:
the live view in a pseudo-terminal, the line mode without one, exit codes, plans,
validation errors that point at the field, graphs, logs, pagination, JSON output."""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path
from typing import Any

import pytest

from provisioning import client
from provisioning.cli.config import Credentials
from tests.helpers.live_server import LiveServer, Terminal, http, invoke, run_cli

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
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
SLOW = {"name": "slow", "operations": [{"id": "wait", "type": "server_batch", "simulate": {"latency_s": 30}}]}


@pytest.fixture
def env(logged_in: dict[str, str]) -> dict[str, str]:
    return logged_in


def batch_file(tmp_path: Path, body: dict[str, Any], name: str = "batch.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(body))
    return str(path)


def batch_of(server: LiveServer, admin: dict[str, Any], bid: str) -> dict[str, Any]:
    status, doc = http("GET", f"{server.orch_url}/batch/operations/{bid}", token=admin["token"])
    assert status == 200, doc
    data: dict[str, Any] = doc["data"]
    return data


def submitted_id(out: str) -> str:
    m = re.search(r"batch (\S+) submitted", out)
    assert m is not None, out
    return m.group(1)


def watched_in_a_terminal(env: dict[str, str], batch: Path) -> tuple[int, str, str]:
    """``batch submit FILE --watch`` on a pseudo-terminal: (exit code, what it drew, batch id)."""
    term = Terminal(env, "batch", "submit", str(batch), "--watch")
    rc = term.wait()
    return rc, term.text, submitted_id(term.text)


# -- watching ------------------------------------------------------------------------------------


def test_submit_watch_in_a_terminal_redraws_in_place_and_exits_0(
    server: LiveServer, admin: dict[str, Any], env: dict[str, str]
) -> None:
    rc, screen, bid = watched_in_a_terminal(env, EXAMPLES / "multi_cloud_deployment.json")
    assert rc == 0, screen
    assert "\x1b[" in screen  # drawn with terminal control sequences …
    assert re.search(r"\x1b\[\d*A|\x1b\[2K", screen), screen  # … moving up / clearing lines: redrawn in place
    assert "OPERATION" in screen and "PROGRESS" in screen and "overall" in screen
    assert "━" in screen  # rich's progress bars
    assert re.search(r"upcloud_servers\S*\s+\S*Completed", screen), screen
    assert re.search(rf"batch {bid}: Completed", screen), screen
    assert not re.search(r"\d\d:\d\d:\d\d \w+\s+(Running|Completed)", screen)  # no line mode here
    assert batch_of(server, admin, bid)["status"] == "Completed"


def test_submit_watch_of_a_failing_batch_in_a_terminal_exits_1_with_the_rollback(
    server: LiveServer, admin: dict[str, Any], env: dict[str, str]
) -> None:
    rc, screen, bid = watched_in_a_terminal(env, EXAMPLES / "failing_rollback.yaml")
    assert rc == 1, screen
    assert f"batch {bid}: Failed" in screen
    assert "simulated failure on aws" in screen
    m = re.search(r"rollback: (\{.*?\})\r?\n", screen)
    assert m is not None, screen
    assert json.loads(m.group(1)) == batch_of(server, admin, bid)["rollback"]


def test_submit_watch_without_a_terminal_prints_one_line_per_transition(
    server: LiveServer, admin: dict[str, Any], env: dict[str, str], tmp_path: Path
) -> None:
    ok = run_cli(env, "batch", "submit", batch_file(tmp_path, FAST), "--watch")
    assert ok.returncode == 0, ok.stderr
    assert "\x1b[" not in ok.stdout  # plain lines for logs
    bid = submitted_id(ok.stdout)
    lines = ok.stdout.splitlines()
    changes = [ln.split()[1:3] for ln in lines if re.match(r"\d\d:\d\d:\d\d ", ln)]
    # However far the batch got before the stream was joined, each line is one change and
    # the last one of each operation is its end.
    assert changes.index(["one", "Completed"]) < changes.index(["two", "Completed"])
    assert len(changes) == len({tuple(c) for c in changes})  # no change printed twice
    assert lines[-1] == f"batch {bid}: Completed [########################] 100.0%"

    failed = invoke("batch", "submit", str(EXAMPLES / "failing_rollback.yaml"), "--watch")
    assert failed.exit_code == 1, failed.output
    bid = submitted_id(failed.stdout)
    assert re.search(r"^\d\d:\d\d:\d\d database\s+Failed\s+attempt 2", failed.stdout, re.M), failed.stdout
    assert re.search(r"^\d\d:\d\d:\d\d network\s+RolledBack", failed.stdout, re.M)
    assert f"batch {bid}: Failed" in failed.stdout
    rollback = json.loads(re.search(r"^rollback: (.*)$", failed.stdout, re.M).group(1))  # type: ignore[union-attr]
    assert rollback["operations_executed"] == 3


def test_watch_of_a_cancelled_batch_exits_1_and_of_an_unknown_one_says_so(
    server: LiveServer, admin: dict[str, Any], env: dict[str, str], tmp_path: Path
) -> None:
    bid = submitted_id(invoke("batch", "submit", batch_file(tmp_path, SLOW)).stdout)
    cancelled = invoke("batch", "cancel", bid)
    assert cancelled.exit_code == 0 and "Operation cancelled" in cancelled.stdout
    watched = invoke("batch", "watch", bid)
    assert watched.exit_code == 1
    assert f"batch {bid}: Cancelled" in watched.stdout
    again = invoke("batch", "cancel", bid)
    assert again.exit_code == 1 and again.stderr.startswith("error (409): ")
    ghost = invoke("batch", "watch", "ghost")
    assert ghost.exit_code == 1 and ghost.stderr == "error (404): no batch with id ghost\n"


@pytest.mark.parametrize(
    ("answer", "code", "outcome"), [("c", 1, "Cancelled"), ("d", 130, "Running")], ids=["cancel", "detach"]
)
def test_ctrl_c_in_the_live_view_offers_cancel_or_detach(
    server: LiveServer,
    admin: dict[str, Any],
    env: dict[str, str],
    tmp_path: Path,
    answer: str,
    code: int,
    outcome: str,
) -> None:
    term = Terminal(env, "batch", "submit", batch_file(tmp_path, SLOW), "--watch")
    term.expect("Running")
    bid = submitted_id(term.text)
    term.proc.send_signal(signal.SIGINT)
    term.expect("[c]ancel it or [d]etach")
    term.send(f"{answer}\n")
    assert term.wait() == code, term.text
    assert batch_of(server, admin, bid)["status"] == outcome
    if answer == "c":
        assert f"batch {bid}: Cancelled" in term.text
    else:  # detached: it keeps running
        assert f"provisioning batch watch {bid}" in term.text
        assert invoke("batch", "cancel", bid).exit_code == 0


# -- plans and validation -------------------------------------------------------------------------


def test_check_prints_the_plan_as_generations_and_records_nothing(
    server: LiveServer, admin: dict[str, Any], env: dict[str, str], tmp_path: Path
) -> None:
    before = invoke("batch", "list", "--all", "-o", "json")
    result = invoke("batch", "submit", str(EXAMPLES / "multi_cloud_deployment.json"), "--check")
    assert result.exit_code == 0, result.output
    assert "2 operations in 2 generations" in result.stdout
    assert re.search(r"^1\s+upcloud_servers\s+server_batch\s+upcloud", result.stdout, re.M), result.stdout
    assert re.search(r"^2\s+aws_taskservs\s+taskserv_batch\s+aws\s+upcloud_servers", result.stdout, re.M)
    plan = json.loads(
        invoke(
            "batch",
            "submit",
            batch_file(tmp_path, FAST),
            "--check",
            "--set",
            "parallel_limit=7",
            "-o",
            "json",
        ).stdout
    )
    assert plan["generations"] == [["one"], ["two"]] and plan["parallel_limit"] == 7
    assert invoke("batch", "list", "--all", "-o", "json").stdout == before.stdout


def test_validation_errors_point_at_the_field_and_exit_2(
    server: LiveServer, admin: dict[str, Any], env: dict[str, str], tmp_path: Path
) -> None:
    unknown = {
        "name": "bad",
        "operations": [
            {"id": "a", "type": "server_batch"},
            {"id": "b", "type": "server_batch", "dependencies": ["nope"]},
        ],
    }
    result = invoke("batch", "submit", batch_file(tmp_path, unknown))
    assert result.exit_code == 2
    assert result.stderr.startswith("error (422): ")
    assert (
        "  operations.1.dependencies (operation 'b'): operation 'b' depends on unknown operation 'nope'"
        in result.stderr
    )

    loop = {
        "name": "loop",
        "operations": [
            {"id": "a", "type": "server_batch", "dependencies": ["b"]},
            {"id": "b", "type": "server_batch", "dependencies": ["a"]},
        ],
    }
    result = invoke("batch", "submit", batch_file(tmp_path, loop, "loop.yaml"))
    assert result.exit_code == 2
    assert "  cycle: a -> b -> a" in result.stderr or "  cycle: b -> a -> b" in result.stderr

    typo = {"name": "typo", "operations": [{"id": "x", "type": "server_batchh"}]}
    result = run_cli(env, "batch", "submit", batch_file(tmp_path, typo))
    assert result.returncode == 2
    assert re.search(r"^  operations\.0\.type \(operation 'x'\): ", result.stderr, re.M), result.stderr
    assert "Traceback" not in result.stderr
    debug = invoke("--debug", "batch", "submit", batch_file(tmp_path, typo))
    assert "  request id: " in debug.stderr and '"fields"' in debug.stderr

    not_a_batch = tmp_path / "list.yaml"
    not_a_batch.write_text("- a\n- b\n")
    result = invoke("batch", "submit", str(not_a_batch))
    assert result.exit_code == 2 and "a batch file holds one object" in result.stderr
    assert invoke("batch", "submit", str(tmp_path / "missing.json")).exit_code == 2
    assert invoke("batch", "submit", batch_file(tmp_path, FAST), "--set", "novalue").exit_code == 2
    assert invoke("batch", "list", "--limit", "0").exit_code == 2  # usage


# -- reading batches ---------------------------------------------------------------------------------


def test_list_status_graph_and_logs(
    server: LiveServer,
    admin: dict[str, Any],
    env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ids = [
        submitted_id(invoke("batch", "submit", batch_file(tmp_path, FAST), "--watch").stdout)
        for _ in range(3)
    ]

    listed = json.loads(invoke("batch", "list", "--status", "Completed", "--limit", "2", "-o", "json").stdout)
    assert [b["batch_id"] for b in listed] == ids[::-1][:2]  # newest first
    assert {b["status"] for b in listed} == {"Completed"}
    table = invoke("batch", "list", "--status", "Completed", "--limit", "2").stdout
    assert re.search(rf"^{ids[2]}\s+fast\s+Completed\s+100\.0%\s+2\s", table, re.M), table
    assert re.search(r"\(2 of \d+; --limit N or --all for more\)", table)
    # --all follows the Link header's rel="next", page after page (pages of 2 here).
    monkeypatch.setattr(client, "MAX_PAGE", 2)
    every = json.loads(invoke("batch", "list", "--all", "--status", "Completed", "-o", "json").stdout)
    assert len(every) >= 3 and [b["batch_id"] for b in every][:3] == ids[::-1]
    assert len({b["batch_id"] for b in every}) == len(every)
    assert invoke("batch", "list", "--status", "Bogus").exit_code == 2
    as_yaml = invoke("batch", "list", "--limit", "1", "-o", "yaml").stdout
    import yaml

    assert yaml.safe_load(as_yaml)[0]["batch_id"] == ids[2]

    status = json.loads(invoke("batch", "status", ids[0], "-o", "json").stdout)
    assert status == batch_of(server, admin, ids[0])
    table = invoke("batch", "status", ids[0]).stdout
    assert re.search(r"^status\s+Completed", table, re.M) and re.search(
        r"^two\s+Completed\s+1\s+100\.0%\s+one", table, re.M
    )

    ascii_graph = invoke("batch", "graph", ids[0]).stdout
    assert ascii_graph.splitlines()[1:] == [
        "generation 1",
        "  one  Completed",
        "generation 2",
        "  two  Completed    <- one",
    ]
    dot = invoke("batch", "graph", ids[0], "--format", "dot").stdout
    assert dot.startswith('digraph "fast" {') and '"one" -> "two";' in dot and 'fillcolor="palegreen"' in dot
    mermaid = invoke("batch", "graph", ids[0], "-f", "mermaid").stdout
    assert mermaid.startswith("flowchart LR") and "op0 --> op1" in mermaid
    assert 'op1["two<br/>Completed"]:::completed' in mermaid

    logs = invoke("batch", "logs", ids[0]).stdout
    assert "== one (Completed, attempt 1) ==\ncreated 1 server(s)" in logs and "== two (Completed" in logs
    only = invoke("batch", "logs", ids[0], "--operation", "two").stdout
    assert "== two" in only and "== one" not in only
    assert invoke("batch", "logs", ids[0], "--operation", "nope").exit_code == 1


def test_logs_follow_prints_outputs_as_operations_finish(
    server: LiveServer, admin: dict[str, Any], env: dict[str, str], tmp_path: Path
) -> None:
    slowish = json.loads(json.dumps(FAST))
    for op in slowish["operations"]:
        op["simulate"] = {"latency_s": 0.3}
    bid = submitted_id(invoke("batch", "submit", batch_file(tmp_path, slowish)).stdout)
    followed = invoke("batch", "logs", bid, "--follow")
    assert followed.exit_code == 0, followed.output
    out = followed.stdout
    assert (
        out.index("== one (Completed") < out.index("== two (Completed") < out.index(f"batch {bid}: Completed")
    )


def test_workflow_commands_submit_single_purpose_workflows(
    server: LiveServer, admin: dict[str, Any], env: dict[str, str]
) -> None:
    made = invoke(
        "servers", "create", "--infra", "demo", "--server", "web-01", "--server", "web-02", "--watch"
    )
    assert made.exit_code == 0, made.output
    wid = re.search(r"workflow (\S+) submitted", made.stdout).group(1)  # type: ignore[union-attr]
    done = batch_of(server, admin, wid)
    assert done["status"] == "Completed" and done["kind"] == "servers"
    assert done["operations"][0]["results"]["created"] == ["web-01", "web-02"]
    plan = json.loads(
        invoke("taskserv", "create", "kubernetes", "--infra", "demo", "--check", "-o", "json").stdout
    )
    assert plan["operations"][0]["id"] == "create_kubernetes"
    cluster = json.loads(invoke("cluster", "create", "buildkit", "--infra", "demo", "-o", "json").stdout)
    assert batch_of(server, admin, cluster["workflow_id"])["kind"] == "cluster"


# -- servers that do not answer -------------------------------------------------------------------


def test_a_server_that_is_down_is_one_line_and_exit_3(
    env: dict[str, str], unused_tcp_port: int, tmp_path: Path
) -> None:
    down = f"http://127.0.0.1:{unused_tcp_port}"
    result = invoke("--orchestrator", down, "batch", "list")
    assert result.exit_code == 3
    assert result.stderr.startswith(f"provisioning: cannot reach {down}: ")
    assert result.stderr.endswith("(is the service running? check --server / PROVISIONING_URL)\n")
    assert result.stderr.count("\n") == 1 and result.stdout == ""
    token = Credentials().contexts["default"]["token"]
    proc = run_cli({**env, "PROVISIONING_URL": down, "PROVISIONING_TOKEN": token}, "whoami")
    assert proc.returncode == 3 and proc.stderr.count("\n") == 1 and "cannot reach" in proc.stderr
    proc = run_cli(
        {**env, "PROVISIONING_ORCHESTRATOR_URL": down},
        "batch",
        "submit",
        batch_file(tmp_path, FAST),
        "--watch",
    )
    assert proc.returncode == 3 and "Traceback" not in proc.stderr
