"""``checkpoint …``, ``rollback`` and ``restore`` against one live ``provisioning up``:
what will be undone is shown, in order, before the question, and the answer is honoured."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.live_server import LiveServer, http, invoke

CHAIN = {
    "name": "chain",
    "operations": [
        {"id": "net", "type": "server_batch", "servers": ["gw"], "simulate": {"latency_s": 0}},
        {
            "id": "app",
            "type": "server_batch",
            "servers": ["a1"],
            "dependencies": ["net"],
            "simulate": {"latency_s": 0},
        },
        {
            "id": "db",
            "type": "taskserv_batch",
            "taskservs": ["pg"],
            "dependencies": ["app"],
            "simulate": {"latency_s": 0},
        },
        {"id": "side", "type": "server_batch", "servers": ["s1"], "simulate": {"latency_s": 0}},
    ],
}


@pytest.fixture(autouse=True)
def as_admin(logged_in: dict[str, str]) -> None:
    """Every test runs the CLI with the admin's session."""


def completed_chain(tmp_path: Path) -> str:
    path = tmp_path / "chain.json"
    path.write_text(json.dumps(CHAIN))
    result = invoke("batch", "submit", str(path), "--watch")
    assert result.exit_code == 0, result.output
    return re.search(r"batch (\S+) submitted", result.stdout).group(1)  # type: ignore[union-attr]


def statuses(server: LiveServer, admin: dict[str, Any], bid: str) -> dict[str, str]:
    status, doc = http("GET", f"{server.orch_url}/batch/operations/{bid}", token=admin["token"])
    assert status == 200
    return {op["id"]: op["status"] for op in doc["data"]["operations"]}


def test_checkpoints_create_list_show_and_stats(server: LiveServer, admin: dict[str, Any]) -> None:
    made = invoke("checkpoint", "create", "before_v2", "--description", "before deploying v2")
    assert made.exit_code == 0, made.output
    cid = made.stdout.strip()
    shown = json.loads(invoke("checkpoint", "show", cid, "-o", "json").stdout)
    assert shown["name"] == "before_v2" and shown["description"] == "before deploying v2"
    listed = json.loads(invoke("checkpoint", "list", "-o", "json").stdout)
    assert cid in [c["id"] for c in listed]
    assert re.search(rf"^{cid}\s+before_v2\s", invoke("checkpoint", "list").stdout, re.M)
    stats = json.loads(invoke("checkpoint", "stats", "-o", "json").stdout)
    assert stats["total_checkpoints"] >= 1
    missing = invoke("checkpoint", "show", "ghost")
    assert missing.exit_code == 1 and missing.stderr.startswith("error (404): ")


def test_rollback_of_operations_shows_the_order_and_asks(
    server: LiveServer, admin: dict[str, Any], tmp_path: Path
) -> None:
    bid = completed_chain(tmp_path)
    # Refused at the prompt: the plan was shown, nothing was changed.
    refused = invoke("rollback", "--operations", "app", "--batch", bid, input="n\n")
    assert refused.exit_code == 1
    out = refused.stdout
    assert "These 2 operations will be rolled back, in this order:" in out
    order = re.findall(r"^(\d)\s+(\w+)\s+" + re.escape(bid), out, re.M)
    assert order == [("1", "db"), ("2", "app")]  # dependents first
    assert "Roll them back? [y/N]" in out and "not confirmed: nothing was changed" in out
    assert set(statuses(server, admin, bid).values()) == {"Completed"}

    accepted = invoke("rollback", "--operations", "app", "--batch", bid, "-o", "json", input="y\n")
    assert accepted.exit_code == 0, accepted.output
    result = json.loads(accepted.stdout[accepted.stdout.index("{") :])
    assert result["success"] is True and result["operations_executed"] == 2
    assert statuses(server, admin, bid) == {
        "net": "Completed",
        "app": "RolledBack",
        "db": "RolledBack",
        "side": "Completed",
    }

    nothing = invoke("rollback", "--operations", "db", "--batch", bid, "--yes")
    assert nothing.exit_code == 0 and "nothing to roll back" in nothing.stdout


def test_rollback_to_a_checkpoint_with_yes_asks_nothing(
    server: LiveServer, admin: dict[str, Any], tmp_path: Path
) -> None:
    cid = invoke("checkpoint", "create", "before_chain").stdout.strip()
    bid = completed_chain(tmp_path)
    result = invoke("rollback", "--checkpoint", cid, "--yes")
    assert result.exit_code == 0, result.output
    assert "These 4 operations will be rolled back" in result.stdout
    assert "Roll them back?" not in result.stdout
    assert re.search(r"^operations_executed\s+4$", result.stdout, re.M), result.stdout
    assert set(statuses(server, admin, bid).values()) == {"RolledBack"}
    both = invoke("rollback", "--checkpoint", cid, "--operations", "x")
    assert both.exit_code == 2 and "exactly one of --checkpoint or --operations" in both.stderr


def test_restore_asks_first_and_is_honoured(
    server: LiveServer, admin: dict[str, Any], tmp_path: Path
) -> None:
    bid = completed_chain(tmp_path)
    cid = invoke("checkpoint", "create", "after_chain").stdout.strip()
    assert invoke("rollback", "--operations", "side", "--batch", bid, "--yes").exit_code == 0
    refused = invoke("restore", cid, input="\n")
    assert refused.exit_code == 1 and "Restore it? [y/N]" in refused.stdout
    assert statuses(server, admin, bid)["side"] == "RolledBack"
    restored = invoke("restore", cid, input="y\n")
    assert restored.exit_code == 0, restored.output
    assert f"State restored from checkpoint {cid}" in restored.stdout
    assert statuses(server, admin, bid)["side"] == "Completed"
