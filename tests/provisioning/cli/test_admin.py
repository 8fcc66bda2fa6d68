"""``users``, ``policies``, ``audit``, ``webhooks`` and ``tasks`` against one live
``provisioning up``: every listing's ``--output json`` parsed back equals the API's data."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.live_server import LiveServer, http, invoke
from tests.helpers.services import USER_PASSWORD


@pytest.fixture(autouse=True)
def as_admin(logged_in: dict[str, str]) -> None:
    """Every test runs the CLI with the admin's session."""


def api(server: LiveServer, admin: dict[str, Any], path: str, *, base: str | None = None) -> Any:
    status, doc = http("GET", f"{base or server.cc_url}{path}", token=admin["token"])
    assert status == 200, doc
    return doc["data"]


def listing(*args: str) -> Any:
    result = invoke(*args, "-o", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_users_create_list_update_reset_mfa_delete(
    server: LiveServer, admin: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROVISIONING_NEW_PASSWORD", USER_PASSWORD)
    made = invoke(
        "users", "create", "carol", "--email", "carol@example.com", "--role", "viewer", "-o", "json"
    )
    assert made.exit_code == 0, made.output
    carol = json.loads(made.stdout)
    assert carol["username"] == "carol" and carol["roles"] == ["viewer"]
    status, _ = http("POST", f"{server.cc_url}/auth/login", {"username": "carol", "password": USER_PASSWORD})
    assert status == 200

    assert listing("users", "list") == api(server, admin, "/users?limit=50")
    assert [u["username"] for u in listing("users", "list", "--role", "viewer")] == ["carol"]
    assert re.search(r"^\S+\s+carol\s+carol@example.com\s+viewer\s+yes", invoke("users", "list").stdout, re.M)

    # By username or by id.
    updated = json.loads(
        invoke("users", "update", "carol", "--role", "developer", "--disable", "-o", "json").stdout
    )
    assert updated["roles"] == ["developer"] and updated["enabled"] is False
    assert [u["username"] for u in listing("users", "list", "--disabled")] == ["carol"]
    assert invoke("users", "update", carol["id"]).exit_code == 2  # nothing to change
    assert "MFA" in invoke("users", "reset-mfa", "carol").stdout

    refused = invoke("users", "delete", "carol", input="n\n")
    assert refused.exit_code == 1 and "Delete user carol? [y/N]" in refused.stdout
    assert invoke("users", "delete", "carol", "--yes").exit_code == 0
    gone = invoke("users", "delete", "carol", "--yes")
    assert gone.exit_code == 1 and gone.stderr == "error (404): no user with id or username 'carol'\n"
    taken = invoke("users", "create", "admin", "--email", "a@example.com", "--role", "viewer")
    assert taken.exit_code == 1 and taken.stderr.startswith("error (409): "), taken.stderr
    bad = invoke("users", "create", "dave", "--email", "not-an-email", "--role", "viewer")
    assert bad.exit_code == 2 and bad.stderr.startswith("error (422): ") and "  email: " in bad.stderr


def test_policies_apply_show_versions_delete(
    server: LiveServer, admin: dict[str, Any], tmp_path: Path
) -> None:
    policy = {
        "name": "night-freeze",
        "version": "1.0.0",
        "description": "no batches at night",
        "rules": [{"effect": "Deny", "resource": "batch", "action": ["execute"], "roles": ["developer"]}],
    }
    path = tmp_path / "policy.yaml"
    import yaml

    path.write_text(yaml.safe_dump(policy))
    created = invoke("policies", "apply", str(path))
    assert created.exit_code == 0, created.output
    m = re.search(r"policy night-freeze created \(id (\S+), revision 1\)", created.stdout)
    assert m is not None, created.stdout
    pid = m.group(1)
    policy["version"] = "1.1.0"
    path.write_text(yaml.safe_dump(policy))
    updated = json.loads(invoke("policies", "apply", str(path), "-o", "json").stdout)
    assert updated["id"] == pid and updated["version"] == "1.1.0" and updated["revision"] == 2

    assert listing("policies", "list") == api(server, admin, "/policies?limit=50")
    assert listing("policies", "show", pid) == api(server, admin, f"/policies/{pid}")
    shown = invoke("policies", "show", pid).stdout
    assert re.search(r"^Deny\s+batch\s+execute\s+developer", shown, re.M), shown
    versions = listing("policies", "versions", pid)
    assert versions == api(server, admin, f"/policies/{pid}/versions")
    assert [v["version"] for v in versions] == ["1.0.0"]
    assert invoke("policies", "delete", pid, "--yes").exit_code == 0
    assert invoke("policies", "show", pid).exit_code == 1


def test_audit_tail_verify_export(server: LiveServer, admin: dict[str, Any]) -> None:
    tail = listing("audit", "tail", "--limit", "5")
    newest = api(server, admin, "/audit/logs?limit=5")
    assert tail == newest[::-1]  # oldest first, like tail
    logins = listing("audit", "tail", "--action", "auth.login*", "--limit", "100")
    assert logins and {r["action"] for r in logins} <= {"auth.login", "auth.login_failed"}
    table = invoke("audit", "tail", "--limit", "3").stdout
    assert table.splitlines()[0].split() == ["TIME", "USER", "ACTION", "RESOURCE", "RESULT", "IP"]

    verified = invoke("audit", "verify")
    assert verified.exit_code == 0 and re.match(r"the audit chain is intact: \d+ records", verified.stdout)
    assert json.loads(invoke("audit", "verify", "-o", "json").stdout)["valid"] is True

    ndjson = invoke("audit", "export").stdout.splitlines()
    records = [json.loads(line) for line in ndjson]
    assert len(records) >= len(newest) and {"id", "hash", "prev_hash", "action"} <= set(records[0])
    rows = list(
        csv.reader(io.StringIO(invoke("audit", "export", "--format", "csv", "--action", "auth.*").stdout))
    )
    assert rows[0][:3] == ["id", "seq", "timestamp"] and len(rows) > 1
    assert invoke("audit", "export", "--format", "xml").exit_code == 2


def test_webhooks_create_rotate_test_deliveries_redeliver(server: LiveServer, admin: dict[str, Any]) -> None:
    made = invoke(
        "webhooks", "create", "--url", "https://hooks.example.com/ci", "--event", "batch.*", "-o", "json"
    )
    assert made.exit_code == 0, made.output
    hook = json.loads(made.stdout)
    assert hook["secret"].startswith("whsec_")
    table = invoke(
        "webhooks", "create", "--url", "https://hooks.example.com/two", "--event", "task.completed"
    )
    assert "signing secret (shown once, keep it safe): whsec_" in table.stdout

    assert listing("webhooks", "list") == api(server, admin, "/webhooks?limit=50")
    assert listing("webhooks", "show", hook["id"]) == api(server, admin, f"/webhooks/{hook['id']}")
    rotated = json.loads(invoke("webhooks", "rotate", hook["id"], "-o", "json").stdout)
    assert rotated["secret"] != hook["secret"]
    tested = json.loads(invoke("webhooks", "test", hook["id"], "-o", "json").stdout)
    assert tested
    deliveries = listing("webhooks", "deliveries", hook["id"])
    assert deliveries == api(server, admin, f"/webhooks/{hook['id']}/deliveries?limit=50")
    assert deliveries and deliveries[0]["event"]
    redelivered = invoke("webhooks", "redeliver", hook["id"], deliveries[0]["id"], "-o", "json")
    assert redelivered.exit_code in (0, 1), redelivered.output
    if redelivered.exit_code == 1:  # a delivery still pending is not sent twice
        assert redelivered.stderr.startswith("error (409): ")
    assert invoke("webhooks", "delete", hook["id"], "--yes").exit_code == 0
    bad = invoke("webhooks", "create", "--url", "http://127.0.0.1/x", "--event", "batch.*")
    assert bad.exit_code == 2 and "url" in bad.stderr


def test_tasks_list_and_show(server: LiveServer, admin: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    path.write_text(
        json.dumps(
            {
                "name": "t",
                "operations": [{"id": "only", "type": "server_batch", "simulate": {"latency_s": 0}}],
            }
        )
    )
    assert invoke("batch", "submit", str(path), "--watch").exit_code == 0
    tasks = listing("tasks", "list", "--status", "Completed")
    assert tasks == api(server, admin, "/tasks?limit=50&status=Completed", base=server.orch_url)
    shown = listing("tasks", "show", tasks[0]["id"])
    assert shown == api(server, admin, f"/tasks/{tasks[0]['id']}", base=server.orch_url)
    by_batch = listing("tasks", "list", "--batch", tasks[0]["workflow_id"])
    assert {t["workflow_id"] for t in by_batch} == {tasks[0]["workflow_id"]}
    assert invoke("tasks", "list", "--status", "Bogus").exit_code == 2
