"""The credentials file (0600, refused when wider, contexts) and where a command's server
and token come from: flags > environment > file. No server needed."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from provisioning.cli.common import merge, parse_assignments
from provisioning.cli.config import Credentials, CredentialsError, orchestrator_of, resolve
from tests.helpers.live_server import client_environment, invoke


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    client_environment(monkeypatch, tmp_path / "xdg")
    return tmp_path / "xdg" / "provisioning"


def test_the_file_is_written_0600_in_a_0700_directory(home: Path) -> None:
    path = Credentials().put("prod", {"server": "https://cc.example:9080", "token": "t"})
    assert path == home / "credentials.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert json.loads(path.read_text())["current_context"] == "prod"


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_a_file_open_to_others_is_refused_saying_how_to_fix_it(home: Path, mode: int) -> None:
    path = Credentials().put("prod", {"server": "https://cc.example:9080", "token": "t"})
    path.chmod(mode)
    with pytest.raises(CredentialsError, match=r"chmod 600"):
        Credentials()
    result = invoke("context", "list")
    assert result.exit_code == 2
    assert result.stderr == (
        f"provisioning: {path} is open to other users (mode {mode:04o}); it holds tokens: "
        f"run 'chmod 600 {path}' (or delete it and log in again)\n"
    )
    assert invoke("whoami").exit_code == 2
    path.chmod(0o600)
    assert invoke("context", "list").exit_code == 0


def test_a_malformed_file_is_refused(home: Path) -> None:
    home.mkdir(parents=True)
    path = home / "credentials.json"
    path.write_text("{not json")
    path.chmod(0o600)
    result = invoke("context", "list")
    assert result.exit_code == 2 and "is not a credentials file" in result.stderr


def test_precedence_flags_then_environment_then_file(monkeypatch: pytest.MonkeyPatch) -> None:
    creds = Credentials()
    creds.put(
        "prod",
        {
            "server": "https://prod:9080",
            "orchestrator": "https://prod-o:9090",
            "token": "p",
            "refresh_token": "r",
        },
    )
    creds.put("dev", {"server": "http://dev:9080", "token": "d"})
    creds = Credentials()

    t = resolve(creds)
    assert (t.context, t.server, t.orchestrator, t.token, t.refreshable) == (
        "dev",
        "http://dev:9080",
        "http://dev:9090",
        "d",
        False,
    )
    t = resolve(creds, context="prod")
    assert (t.server, t.orchestrator, t.token, t.refreshable) == (
        "https://prod:9080",
        "https://prod-o:9090",
        "p",
        True,
    )

    monkeypatch.setenv("PROVISIONING_CONTEXT", "prod")
    assert resolve(creds).context == "prod"
    assert resolve(creds, context="dev").context == "dev"  # the flag wins

    monkeypatch.setenv("PROVISIONING_TOKEN", "env-token")
    t = resolve(creds)
    assert (t.token, t.refreshable) == ("env-token", False)  # never refreshed: not ours to rotate
    assert resolve(creds, token="flag-token").token == "flag-token"

    monkeypatch.delenv("PROVISIONING_TOKEN")
    monkeypatch.setenv("PROVISIONING_URL", "https://elsewhere:9080")
    t = resolve(creds)
    # Another server than the context's: its token is not sent there.
    assert (t.server, t.orchestrator, t.token) == ("https://elsewhere:9080", "https://elsewhere:9090", None)
    monkeypatch.setenv("PROVISIONING_ORCHESTRATOR_URL", "https://o.example")
    assert resolve(creds).orchestrator == "https://o.example"
    assert resolve(creds, orchestrator="https://flag.example").orchestrator == "https://flag.example"
    assert resolve(creds, server="https://prod:9080").token == "p"

    monkeypatch.delenv("PROVISIONING_URL")
    with pytest.raises(CredentialsError, match="no context named 'nope'"):
        resolve(creds, context="nope")


def test_without_any_configuration_the_local_services(tmp_path: Path) -> None:
    t = resolve(Credentials(tmp_path / "none.json"))
    assert (t.context, t.server, t.orchestrator, t.token) == (
        "default",
        "http://127.0.0.1:9080",
        "http://127.0.0.1:9090",
        None,
    )
    assert orchestrator_of("https://[::1]:8443/x") == "https://[::1]:9090"


def test_contexts_use_and_delete_without_a_server() -> None:
    Credentials().put("a", {"server": "http://a:9080", "token": "x"})
    Credentials().put("b", {"server": "http://b:9080"})
    rows = json.loads(invoke("context", "list", "-o", "json").stdout)
    assert [(r["name"], r["current"], r["session"]) for r in rows] == [
        ("a", False, "active"),
        ("b", True, "logged out"),
    ]
    assert invoke("context", "use", "a").stdout == "current context: a (http://a:9080)\n"
    assert invoke("context", "delete", "a").stdout == "context a deleted; current context: b\n"
    assert invoke("context", "delete", "a").exit_code == 1
    empty = invoke("context", "delete", "b")
    assert empty.exit_code == 0 and Credentials().current is None
    assert invoke("context", "list").stdout == "no contexts yet: run 'provisioning login'\n"
    assert not os.environ.get("PROVISIONING_TOKEN")


def test_set_assignments_are_yaml_values_and_dotted_paths() -> None:
    changes = parse_assignments(["parallel_limit=10", "rollback_enabled=false", "meta.owner=ops", "name=x=y"])
    assert changes == {
        "parallel_limit": 10,
        "rollback_enabled": False,
        "meta": {"owner": "ops"},
        "name": "x=y",
    }
    assert merge({"meta": {"team": "a"}, "parallel_limit": 1}, changes)["meta"] == {
        "team": "a",
        "owner": "ops",
    }
