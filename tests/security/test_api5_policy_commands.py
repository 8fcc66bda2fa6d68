"""API5 (function-level authorization): what an operator's batch may run.

Issue 8, finding 1: an operator submitted ``["sh", "-c", "tr '\\0' '\\n' </proc/$PPID/environ"]``
and read the admin password; policies could not look at operations. Now conditions read
``operation.*`` facts, a submission is allowed only if it is allowed for every operation
in it, and the shipped policy lets an operator run only the programs of
``[commands] allow`` (none by default)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from shared.settings import load_settings
from tests.helpers.batches import FINAL
from tests.helpers.services import Services, bearer

STEAL_ENV = ["sh", "-c", "tr '\\0' '\\n' </proc/$PPID/environ"]
SERVER = {"type": "server_batch", "provider": "local", "simulate": {"latency_s": 0}}


def batch(*operations: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"name": "b", "operations": list(operations), **fields}


async def submit(services: Services, token: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    resp = await services.orch.post("/batch/execute", json=body, headers=bearer(token))
    doc: dict[str, Any] = await resp.json()
    return resp.status, doc


async def settle(services: Services, token: str, doc: dict[str, Any]) -> None:
    """Wait for a submitted batch to finish, so no process outlives the test."""
    batch_id = doc["data"]["batch_id"]
    for _ in range(500):
        resp = await services.orch.get(f"/batch/operations/{batch_id}", headers=bearer(token))
        if (await resp.json())["data"]["status"] in FINAL:
            return
        await services.orch.post(f"/batch/operations/{batch_id}/cancel", headers=bearer(token))
    raise AssertionError(f"batch {batch_id} did not finish")


async def test_an_operator_cannot_run_a_shell_by_default(services: Services) -> None:
    admin = await services.admin()
    _, operator = await services.user("ops", "operator", admin_token=admin)
    attempts = [
        {"id": "steal", "type": "command", "run": STEAL_ENV},
        # the same program behind another operation type
        {"id": "steal", **SERVER, "provider": "command", "run": STEAL_ENV},
    ]
    for op in attempts:
        status, doc = await submit(services, operator, batch({"id": "fine", **SERVER}, op))
        assert status == 403, doc
        assert "operation 'steal' (operations[1])" in doc["error"], doc
        assert "'sh' is not in the command allowlist" in doc["error"]
        assert doc["details"]["operation"]["id"] == "steal"
        assert doc["details"]["operation"]["index"] == 1
        assert doc["details"]["operation"]["program"] == "sh"
        assert "([commands] allow: empty)" in doc["details"]["reason"]
    # what operators did before still works: batches that run no program, and check mode
    status, doc = await submit(services, operator, batch({"id": "s", **SERVER}))
    assert status == 201, doc
    status, doc = await submit(services, operator, batch(attempts[0], check_mode=True))
    assert status in (200, 201) and doc["data"]["check_mode"] is True, doc
    resp = await services.orch.post(
        "/workflows/servers/create", json={"infra": "x", "check_mode": False}, headers=bearer(operator)
    )
    assert resp.status == 201, await resp.text()


@pytest.mark.parametrize("settings_overrides", [{"commands_allow": ("echo",)}])
async def test_the_allowlist_lets_an_operator_run_exactly_its_programs(services: Services) -> None:
    admin = await services.admin()
    _, operator = await services.user("ops", "operator", admin_token=admin)
    status, doc = await submit(
        services, operator, batch({"id": "hi", "type": "command", "run": ["echo", "hi"]})
    )
    assert status == 201, doc
    await settle(services, operator, doc)
    for refused in (STEAL_ENV, ["/tmp/echo"], ["/bin/echo", "hi"], ["echo ", "hi"]):
        status, doc = await submit(
            services,
            operator,
            batch(
                {"id": "hi", "type": "command", "run": ["echo", "hi"]},
                {"id": "other", "type": "command", "run": refused},
            ),
        )
        assert status == 403, (refused, doc)
        assert "operation 'other' (operations[1])" in doc["error"]
        assert "[commands] allow: echo" in doc["details"]["reason"]
    # the rollback step is a program too
    undo = {"id": "undo", "type": "command", "run": ["echo"], "undo": STEAL_ENV}
    status, doc = await submit(services, operator, batch(undo))
    assert status == 403 and "undo program 'sh'" in doc["error"], doc


async def test_an_admin_runs_any_program(services: Services) -> None:
    admin = await services.admin()
    status, doc = await submit(
        services, admin, batch({"id": "sh", "type": "command", "run": ["sh", "-c", "true"]})
    )
    assert status == 201, doc
    await settle(services, admin, doc)


async def test_a_developer_plans_commands_but_runs_nothing(services: Services) -> None:
    admin = await services.admin()
    _, developer = await services.user("dev", "developer", admin_token=admin)
    op = {"id": "steal", "type": "command", "run": STEAL_ENV}
    status, doc = await submit(services, developer, batch(op, check_mode=True))
    assert status in (200, 201) and doc["data"]["check_mode"] is True, doc
    status, doc = await submit(services, developer, batch(op))
    assert status == 403


async def test_policies_can_refer_to_operation_facts(services: Services) -> None:
    admin = await services.admin()
    _, operator = await services.user("ops", "operator", admin_token=admin)
    resp = await services.cc.post(
        "/policies",
        headers=bearer(admin),
        json={
            "name": "no_upcloud_or_preload",
            "rules": [
                {
                    "effect": "Deny",
                    "resource": "batch",
                    "action": ["execute"],
                    "roles": ["operator"],
                    "condition": "operation.provider == 'UpCloud' || 'LD_PRELOAD' in operation.env_keys",
                }
            ],
        },
    )
    assert resp.status == 201, await resp.text()
    status, doc = await submit(services, operator, batch({"id": "u", **SERVER, "provider": " upcloud"}))
    assert status == 403 and "operation 'u'" in doc["error"], doc
    status, doc = await submit(services, operator, batch({"id": "a", **SERVER, "provider": "aws"}))
    assert status == 201, doc


def test_the_allowlist_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().commands_allow == ()
    config = tmp_path / "provisioning.toml"
    config.write_text('[commands]\nallow = ["terraform", "ansible-playbook", "kubectl"]\n')
    assert load_settings(config).commands_allow == ("terraform", "ansible-playbook", "kubectl")
    monkeypatch.setenv("PROVISIONING_COMMANDS_ALLOW", "terraform, /usr/local/bin/kubectl,")
    assert load_settings(config).commands_allow == ("terraform", "/usr/local/bin/kubectl")
    assert os.environ["PROVISIONING_COMMANDS_ALLOW"]
