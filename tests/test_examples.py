"""Every batch in ``examples/`` submitted to a real orchestrator and checked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers.batches import submit, wait_batch
from tests.helpers.orchestrator_api import data_of, rollback_order, ts

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
EXAMPLE_FILES = sorted(p for p in EXAMPLES.iterdir() if p.is_file())
# What each example is expected to do; a new example needs a line here and a test below.
EXPECTED_STATUS = {
    "multi_cloud_deployment.json": "Completed",
    "local_commands.json": "Completed",
    "failing_rollback.yaml": "Failed",
}


def load(path: Path) -> dict[str, Any]:
    text = path.read_text()
    if path.suffix == ".json":
        doc = json.loads(text)
    elif path.suffix in (".yaml", ".yml"):
        doc = yaml.safe_load(text)
    else:
        raise AssertionError(f"{path.name}: examples are JSON or YAML")
    assert isinstance(doc, dict)
    return doc


@pytest.fixture
def example_dir(work_root: Path) -> Path:
    """Where local_commands.json works: relative paths, inside the command work root."""
    return work_root / "example"


def test_every_example_has_an_expectation():
    assert EXAMPLE_FILES, "examples/ is empty"
    assert {p.name for p in EXAMPLE_FILES} == set(EXPECTED_STATUS)


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
async def test_example_is_a_valid_batch(orch, path):
    body = load(path)
    resp = await orch.post("/batch/execute", json={**body, "check_mode": True})
    doc = await resp.json()
    assert resp.status in (200, 201), doc
    plan = doc["data"]["plan"]
    ids = [o["id"] for o in body["operations"]]
    assert sorted(i for gen in plan["generations"] for i in gen) == sorted(ids)
    assert [o["id"] for o in plan["operations"]] == ids
    assert all(o["would"] for o in plan["operations"])
    assert (await data_of(orch, "/batch/operations")) == []


async def test_multi_cloud_deployment_completes_simulated(orch):
    body = load(EXAMPLES / "multi_cloud_deployment.json")
    data = await submit(orch, body)
    assert data["status"] == "Running"
    assert [(o["id"], o["status"], o["progress"]) for o in data["operations"]] == [
        ("upcloud_servers", "Pending", 0.0),
        ("aws_taskservs", "Pending", 0.0),
    ]
    done = await wait_batch(orch, data["batch_id"])
    assert done["status"] == EXPECTED_STATUS["multi_cloud_deployment.json"]
    assert done["name"] == "multi_cloud_deployment"
    ops = {o["id"]: o for o in done["operations"]}
    for o in ops.values():
        assert o["status"] == "Completed"
        assert o["results"]["simulated"] is True
        assert "simulated" in o["output"]
    assert ops["upcloud_servers"]["results"]["provider"] == "upcloud"
    assert ops["aws_taskservs"]["results"]["provider"] == "aws"
    progress = await data_of(orch, f"/state/workflows/{data['batch_id']}/progress")
    assert progress["progress"] == 100.0
    inv = {(i["kind"], i["name"]) for i in await data_of(orch, "/state/inventory")}
    assert inv == {
        ("server", "web-01"),
        ("server", "web-02"),
        ("taskserv", "kubernetes"),
        ("taskserv", "cilium"),
        ("taskserv", "containerd"),
    }
    # upcloud and aws are mapped to the built-in simulated provider by default
    resp = await orch.post("/batch/execute", json={**body, "check_mode": True})
    plan = (await resp.json())["data"]["plan"]
    assert {o["implementation"] for o in plan["operations"]} == {"local"}


async def test_local_commands_run_for_real_and_roll_back(orch, example_dir):
    body = load(EXAMPLES / "local_commands.json")
    data = await submit(orch, body)
    done = await wait_batch(orch, data["batch_id"])
    assert done["status"] == EXPECTED_STATUS["local_commands.json"], done
    ops = {o["id"]: o for o in done["operations"]}
    assert {o["status"] for o in ops.values()} == {"Completed"}
    site = example_dir / "site"
    assert (site / "config.txt").read_text() == "env=staging\n"
    assert (site / "index.html").read_text() == "<h1>hello</h1>"
    assert "index written" in ops["write_index"]["output"]
    listing = ops["verify"]["output"]
    assert "config.txt" in listing and "index.html" in listing
    assert all(o["results"]["exit_code"] == 0 for o in ops.values())
    # the verify step ran after both writers
    for dep in ("write_config", "write_index"):
        assert ts(ops["verify"]["started_at"]) >= ts(ops[dep]["completed_at"])

    resp = await orch.post("/rollback/execute", json={"checkpoint_id": data["checkpoint_id"]})
    result = (await resp.json())["data"]
    assert resp.status == 200, result
    assert result["success"] is True
    assert result["operations_executed"] == 4
    assert result["operations_failed"] == 0
    assert not example_dir.exists()
    after = await data_of(orch, f"/batch/operations/{data['batch_id']}")
    assert {o["status"] for o in after["operations"]} == {"RolledBack"}
    order = await rollback_order(orch, data["batch_id"])
    assert order[0] == "verify" and order[-1] == "make_workdir"


async def test_failing_rollback_fails_and_rolls_back(orch):
    body = load(EXAMPLES / "failing_rollback.yaml")
    data = await submit(orch, body)
    done = await wait_batch(orch, data["batch_id"])
    assert done["status"] == EXPECTED_STATUS["failing_rollback.yaml"]
    ops = {o["id"]: o for o in done["operations"]}
    assert ops["database"]["attempt"] == 2
    assert "simulated failure" in ops["database"]["error"]
    assert ops["monitoring"]["status"] == "Cancelled"
    assert ops["monitoring"]["started_at"] is None
    for name in ("network", "app_servers", "database"):
        assert ops[name]["status"] == "RolledBack", (name, ops[name])
    rb = done["rollback"]
    assert set(rb) == {"rollback_id", "operations_executed", "operations_failed"}
    assert rb["operations_executed"] == 3
    assert rb["operations_failed"] == 0
    assert "database" in done["error"]
    assert await data_of(orch, "/state/inventory") == []
    assert await rollback_order(orch, data["batch_id"]) == ["database", "app_servers", "network"]
