from __future__ import annotations

import json
from pathlib import Path

from tests.helpers.batches import submit, wait_batch

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


async def test_multi_cloud_example_completes(orch):
    body = json.loads((EXAMPLES / "multi_cloud_deployment.json").read_text())
    data = await submit(orch, body)
    assert data["status"] == "Running"
    assert [o["status"] for o in data["operations"]] == ["Pending", "Pending"]
    done = await wait_batch(orch, data["batch_id"])
    assert done["status"] == "Completed"
    assert all(o["results"]["simulated"] for o in done["operations"])
