"""``extensions`` and ``tokens`` against one live ``provisioning up``: the extensions'
states switched and seen in the listing, and an API token's whole life (created, used
by ``login --token`` and ``whoami``, listed, revoked, then refused)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.request import urlopen

import pytest

from tests.helpers.live_server import LiveServer, http, invoke, run_cli
from tests.helpers.services import USER_PASSWORD

EXT = "events_demo"


@pytest.fixture(autouse=True)
def as_admin(logged_in: dict[str, str]) -> None:
    """Every test runs the CLI with the admin's session (context ``default``)."""


def as_json(*args: str) -> Any:
    result = invoke(*args, "-o", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def ext_status(server: LiveServer) -> dict[str, Any]:
    with urlopen(f"{server.orch_url}/ext/status", timeout=30) as resp:
        doc: dict[str, Any] = json.loads(resp.read())
    return doc


def states(status: dict[str, Any]) -> dict[str, str]:
    return {ext_id: entry["state"] for ext_id, entry in status["extensions"].items()}


def test_extensions_list_show_disable_enable(server: LiveServer, admin: dict[str, Any]) -> None:
    listed = as_json("extensions", "list")
    api = ext_status(server)
    assert states(listed) == states(api) and EXT in listed["extensions"]
    for key in ("discovery_sources", "total_extensions", "loaded_extensions", "failed_extensions"):
        assert listed[key] == api[key]
    table = invoke("extensions", "list").stdout.splitlines()
    assert table[0].split() == [
        "ID",
        "STATE",
        "VERSION",
        "CAPABILITIES",
        "LOADED",
        "MS",
        "REQUESTS",
        "ERRORS",
    ]
    row = next(line.split() for line in table if line.startswith(EXT + " "))
    assert row[2] == "0.1.0" and row[1] == api["extensions"][EXT]["state"]
    assert table[-1].startswith(f"{api['total_extensions']} extensions: ")

    off = invoke("extensions", "disable", EXT)
    assert off.exit_code == 0 and off.stdout == f"extension {EXT}: disabled\n", off.output
    assert states(as_json("extensions", "list"))[EXT] == "disabled"
    shown = as_json("extensions", "show", EXT)
    assert shown["extension"]["state"] == "disabled" and shown["health"]["status"] == "disabled"
    assert shown["extension"]["info"]["name"] == "Events demo"

    on = as_json("extensions", "enable", EXT)
    assert on["state"] == "loaded" and isinstance(on["loaded_ms"], int)
    assert states(as_json("extensions", "list"))[EXT] == "loaded"
    assert as_json("extensions", "show", EXT)["health"]["status"] == "healthy"
    text = invoke("extensions", "show", EXT).stdout
    assert any(line.split()[:2] == ["state", "loaded"] for line in text.splitlines()), text
    assert any(line.split()[:2] == ["health", "healthy"] for line in text.splitlines()), text

    missing = invoke("extensions", "show", "nope")
    assert missing.exit_code == 1
    assert missing.stderr.startswith("error (404): no extension 'nope' (extensions: ")
    assert len(missing.stderr.splitlines()) == 1

    server.create_user("vic", "viewer", token=admin["token"])
    status, doc = http("POST", f"{server.cc_url}/auth/login", {"username": "vic", "password": USER_PASSWORD})
    assert status == 200, doc
    refused = invoke("--token", doc["data"]["token"], "extensions", "disable", EXT)
    assert refused.exit_code == 1 and refused.stderr.startswith("error (403): "), refused.output
    assert states(ext_status(server))[EXT] == "loaded"


def test_token_created_used_to_log_in_listed_revoked_then_refused(
    server: LiveServer, admin: dict[str, Any], logged_in: dict[str, str], tmp_path: Path
) -> None:
    made = invoke("tokens", "create", "ci pipeline", "--expires-in-days", "7", "--scope", "profile:read")
    assert made.exit_code == 0, made.output
    assert "shown once" in made.stderr
    lines = dict(line.split(": ", 1) for line in made.stdout.splitlines()[1:])
    assert lines["scopes"] == "profile:read" and lines["token"].startswith("pvt_")

    created = as_json("tokens", "create", "assistant", "--expires-in-days", "30")
    token, record = created["token"], created["api_token"]
    assert token.startswith(record["prefix"] + "_") and record["scopes"] is None and record["active"]

    # The token, stored by login --token in a context of its own, used by a subprocess.
    login = invoke(
        "login",
        "--context",
        "ci",
        "--server",
        server.cc_url,
        "--orchestrator",
        server.orch_url,
        "--token",
        token,
    )
    assert login.exit_code == 0 and login.stdout.startswith("logged in as admin on "), login.output
    who = run_cli(logged_in, "--context", "ci", "whoami", "-o", "json")
    assert who.returncode == 0, who.stderr
    me = json.loads(who.stdout)
    assert me["username"] == "admin" and me["context"] == "ci" and me["token_kind"] == "api"
    assert me["token_expires_at"] == record["expires_at"]
    batches = invoke("--context", "ci", "batch", "list", "-o", "json")  # the orchestrator takes it too
    assert batches.exit_code == 0, batches.output
    again = invoke("--context", "ci", "tokens", "create", "nested")
    assert again.exit_code == 1 and again.stderr.startswith("error (403): "), again.output

    mine = as_json("--context", "default", "tokens", "list")
    assert mine == http("GET", f"{server.cc_url}/auth/tokens?limit=50", token=admin["token"])[1]["data"]
    assert [t["name"] for t in mine][:2] == ["assistant", "ci pipeline"]
    used = next(t for t in mine if t["id"] == record["id"])
    assert used["uses"] >= 1 and used["last_used_at"]
    assert [t["id"] for t in as_json("--context", "default", "tokens", "list", "--limit", "1")] == [
        record["id"]
    ]
    everyone = as_json("--context", "default", "tokens", "list", "--everyone", "--all", "--active")
    assert {t["id"] for t in mine} <= {t["id"] for t in everyone}
    assert {t["id"] for t in as_json("--context", "default", "tokens", "list", "--user", "admin")} == {
        t["id"] for t in mine
    }
    table = invoke("--context", "default", "tokens", "list").stdout.splitlines()
    assert table[0].split()[:3] == ["ID", "NAME", "USER"]
    assert any(line.startswith(record["id"] + " ") and "assistant" in line for line in table), table
    assert token not in "\n".join(table)

    kept = invoke("--context", "default", "tokens", "revoke", record["id"], input="n\n")
    assert kept.exit_code == 1 and "Revoke API token" in kept.stdout
    assert invoke("--context", "ci", "whoami").exit_code == 0
    revoked = invoke("--context", "default", "tokens", "revoke", record["id"], "--yes")
    assert revoked.exit_code == 0, revoked.output
    assert revoked.stdout.startswith(f"API token {record['id']} ('assistant') revoked at ")

    refused = run_cli(logged_in, "--context", "ci", "whoami")
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.startswith("error (401): ") and len(refused.stderr.splitlines()) == 1
    active = as_json("--context", "default", "tokens", "list", "--active")
    assert record["id"] not in {t["id"] for t in active}

    bad = invoke("--context", "default", "tokens", "create", "x", "--scope", "not a scope")
    assert bad.exit_code == 2 and bad.stderr.startswith("error (422): ") and "  scopes.0: " in bad.stderr
    gone = invoke("--context", "default", "tokens", "revoke", "nosuchid", "--yes")
    assert gone.exit_code == 1 and gone.stderr.startswith("error (404): ")
