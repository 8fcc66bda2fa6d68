"""``login`` (MFA enrolment in the terminal, flags, API tokens), ``logout``, ``whoami``,
contexts and the transparent refresh, against one live ``provisioning up`` per module."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyotp
import pytest

from provisioning.cli.config import Credentials
from tests.helpers.live_server import LiveServer, client_environment, http, invoke, run_cli
from tests.helpers.services import USER_PASSWORD


@pytest.fixture
def config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "config"
    client_environment(monkeypatch, home)
    return home


def credentials(home: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((home / "provisioning" / "credentials.json").read_text())
    return doc


def viewer_session(server: LiveServer, admin: dict[str, Any], name: str) -> dict[str, Any]:
    """A user without MFA (viewer) and a fresh session of theirs."""
    server.create_user(name, "viewer", token=admin["token"])
    status, doc = http("POST", f"{server.cc_url}/auth/login", {"username": name, "password": USER_PASSWORD})
    assert status == 200, doc
    data: dict[str, Any] = doc["data"]
    return data


def save_context(server: LiveServer, name: str, data: dict[str, Any], **extra: Any) -> None:
    values = {"server": server.cc_url, "orchestrator": server.orch_url, **data, **extra}
    Credentials().put(name, values)


def test_first_login_enrols_mfa_in_the_terminal_then_whoami_and_logout(
    server: LiveServer, admin: dict[str, Any], tmp_path: Path
) -> None:
    """The journey of a new operator, as a subprocess: password, QR code and secret shown,
    a code confirmed, backup codes printed, a fresh code, the session saved 0600."""
    server.create_user("olivia", "operator", token=admin["token"])
    env = server.env(tmp_path / "cfg", PROVISIONING_PASSWORD=USER_PASSWORD)
    env.pop("PROVISIONING_ORCHESTRATOR_URL")
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "provisioning", "login", "--server", server.cc_url, "--username", "olivia"],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdin is not None
    shown = ""
    while "secret by hand:" not in shown:
        line = proc.stdout.readline()
        assert line, shown + proc.stderr.read() if proc.stderr else shown
        shown += line
    secret = re.search(r"secret by hand: (\w+)", shown).group(1)  # type: ignore[union-attr]
    server.totp["olivia"] = pyotp.TOTP(secret)
    first, second = server.code("olivia"), server.code("olivia")
    out, err = proc.communicate(f"{first}\n{second}\n", timeout=60)
    assert proc.returncode == 0, out + err
    printed = shown + out
    assert "This account must use MFA" in printed
    assert "MFA enabled" in printed
    assert len(re.findall(r"^  [0-9a-zA-Z-]{8,}$", printed, re.M)) >= 10  # the backup codes
    assert f"logged in as olivia on {server.cc_url} (context default)" in printed
    path = tmp_path / "cfg" / "provisioning" / "credentials.json"
    assert path.stat().st_mode & 0o777 == 0o600
    saved = json.loads(path.read_text())
    ctx = saved["contexts"]["default"]
    assert saved["current_context"] == "default"
    assert ctx["server"] == server.cc_url
    assert ctx["orchestrator"].endswith(":9090")  # no --orchestrator: the server's host, port 9090
    assert ctx["user"]["username"] == "olivia" and ctx["refresh_token"] and ctx["token"]

    env["PROVISIONING_ORCHESTRATOR_URL"] = server.orch_url
    who = run_cli(env, "whoami", "-o", "json")
    assert who.returncode == 0, who.stderr
    me = json.loads(who.stdout)
    assert me["username"] == "olivia" and me["roles"] == ["operator"] and me["mfa_enabled"] is True
    assert me["server"] == server.cc_url and me["token_expires_at"] == ctx["expires_at"]

    done = run_cli(env, "logout")
    assert done.returncode == 0, done.stderr
    assert "session revoked on the server" in done.stdout
    # Revoked on the server: neither the access token nor the refresh token works any more.
    status, _ = http("GET", f"{server.cc_url}/users/me", token=ctx["token"])
    assert status == 401
    status, _ = http("POST", f"{server.cc_url}/auth/refresh", {"refresh_token": ctx["refresh_token"]})
    assert status == 401
    left = json.loads(path.read_text())["contexts"]["default"]
    assert "token" not in left and "refresh_token" not in left and left["server"] == server.cc_url
    who = run_cli(env, "whoami")
    assert (who.returncode, who.stderr) == (
        1,
        "provisioning: not logged in (context default); run 'provisioning login'\n",
    )


def test_login_from_flags_and_environment_asks_nothing(
    server: LiveServer, admin: dict[str, Any], config_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.create_user("robot", "developer", token=admin["token"])
    monkeypatch.setenv("PROVISIONING_PASSWORD", USER_PASSWORD)
    result = invoke(
        "login", "--server", server.cc_url, "--orchestrator", server.orch_url, "-u", "robot", input=""
    )
    assert result.exit_code == 0, result.output
    ctx = credentials(config_home)["contexts"]["default"]
    assert ctx["user"]["username"] == "robot" and ctx["orchestrator"] == server.orch_url

    monkeypatch.setenv("PROVISIONING_PASSWORD", "not-the-password")
    result = invoke("login", "--server", server.cc_url, "-u", "robot")
    assert result.exit_code == 1
    assert result.stderr.startswith("error (401): ")
    assert len(result.stderr.strip().splitlines()) == 1  # one line, no traceback


def test_login_with_an_api_token_stores_it_without_refresh(
    server: LiveServer, admin: dict[str, Any], config_home: Path
) -> None:
    result = invoke(
        "login", "--server", server.cc_url, "--orchestrator", server.orch_url, "--token", admin["token"]
    )
    assert result.exit_code == 0, result.output
    ctx = credentials(config_home)["contexts"]["default"]
    assert ctx["token"] == admin["token"] and ctx["token_kind"] == "api"
    assert "refresh_token" not in ctx
    who = invoke("whoami", "-o", "json")
    assert who.exit_code == 0, who.output
    assert json.loads(who.stdout)["username"] == "admin"

    bad = invoke("login", "--server", server.cc_url, "--token", "not-a-token", "--context", "other")
    assert bad.exit_code == 1 and bad.stderr.startswith("error (401)")
    assert "other" not in credentials(config_home)["contexts"]


def test_contexts_list_use_delete_and_the_context_flag(
    server: LiveServer, admin: dict[str, Any], config_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    vera, stan = viewer_session(server, admin, "vera"), viewer_session(server, admin, "stan")
    save_context(server, "prod", vera)
    save_context(server, "staging", stan)
    listed = invoke("context", "list", "-o", "json")
    assert listed.exit_code == 0
    rows = json.loads(listed.stdout)
    assert [(r["name"], r["current"], r["user"]) for r in rows] == [
        ("prod", False, "vera"),
        ("staging", True, "stan"),
    ]
    for secret in (vera["token"], vera["refresh_token"], stan["token"], stan["refresh_token"]):
        assert secret not in listed.stdout  # the listing never shows a token
    table = invoke("context", "list").stdout
    assert re.search(r"^\*\s+staging\s", table, re.M), table

    assert json.loads(invoke("whoami", "-o", "json").stdout)["username"] == "stan"
    assert json.loads(invoke("--context", "prod", "whoami", "-o", "json").stdout)["username"] == "vera"
    monkeypatch.setenv("PROVISIONING_CONTEXT", "prod")
    assert json.loads(invoke("whoami", "-o", "json").stdout)["username"] == "vera"
    # A flag beats the environment.
    assert json.loads(invoke("--context", "staging", "whoami", "-o", "json").stdout)["username"] == "stan"
    monkeypatch.delenv("PROVISIONING_CONTEXT")

    assert invoke("context", "use", "prod").exit_code == 0
    assert credentials(config_home)["current_context"] == "prod"
    assert json.loads(invoke("whoami", "-o", "json").stdout)["username"] == "vera"
    missing = invoke("context", "use", "nope")
    assert missing.exit_code == 1 and "no context named 'nope'" in missing.stderr
    unknown = invoke("--context", "nope", "whoami")
    assert unknown.exit_code == 2 and "no context named 'nope'" in unknown.stderr

    assert invoke("context", "delete", "prod").exit_code == 0
    assert list(credentials(config_home)["contexts"]) == ["staging"]
    assert credentials(config_home)["current_context"] == "staging"


def test_a_token_from_the_environment_beats_the_file(
    server: LiveServer, admin: dict[str, Any], config_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    save_context(server, "default", viewer_session(server, admin, "wendy"))
    monkeypatch.setenv("PROVISIONING_TOKEN", admin["token"])
    assert json.loads(invoke("whoami", "-o", "json").stdout)["username"] == "admin"
    assert (
        json.loads(
            invoke("--token", viewer_session(server, admin, "xena")["token"], "whoami", "-o", "json").stdout
        )["username"]
        == "xena"
    )


def test_an_expired_session_is_refreshed_and_the_rotated_tokens_saved(
    server: LiveServer, admin: dict[str, Any], config_home: Path
) -> None:
    session = viewer_session(server, admin, "yuri")
    # The access token's time has passed: refreshed before the call.
    past = (datetime.now(UTC) - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    save_context(server, "default", session, expires_at=past)
    result = invoke("whoami", "-o", "json")
    assert result.exit_code == 0, result.output
    after = credentials(config_home)["contexts"]["default"]
    assert after["token"] != session["token"]
    assert after["refresh_token"] != session["refresh_token"]  # rotated on use, and stored
    assert after["expires_at"] > past
    # The server refuses the access token (here: garbage): refreshed on the 401, once.
    Credentials().put("default", {**after, "token": "not-a-valid-token"})
    result = invoke("batch", "list", "-o", "json")
    assert result.exit_code == 0, result.output
    again = credentials(config_home)["contexts"]["default"]
    assert again["token"] != "not-a-valid-token" and again["refresh_token"] != after["refresh_token"]
    # The spent refresh token is refused (and, as a reuse, ends the session on the server).
    status, _ = http("POST", f"{server.cc_url}/auth/refresh", {"refresh_token": session["refresh_token"]})
    assert status == 401


def test_a_session_that_cannot_be_refreshed_is_one_line(
    server: LiveServer, admin: dict[str, Any], config_home: Path
) -> None:
    session = viewer_session(server, admin, "zoe")
    save_context(server, "default", {**session, "token": "stale", "refresh_token": "also-stale"})
    result = invoke("whoami")
    assert result.exit_code == 1
    assert result.stderr.startswith("error (401): ") and result.stderr.count("\n") == 1


def test_logout_when_the_server_is_down_deletes_locally_and_exits_3(
    server: LiveServer, admin: dict[str, Any], config_home: Path, unused_tcp_port: int
) -> None:
    session = viewer_session(server, admin, "quinn")
    Credentials().put(
        "gone",
        {
            "server": f"http://127.0.0.1:{unused_tcp_port}",
            **{k: session[k] for k in ("token", "refresh_token")},
        },
    )
    result = invoke("logout")
    assert result.exit_code == 3
    assert "cannot reach" in result.stderr and "deleted locally" in result.stderr
    assert "token" not in credentials(config_home)["contexts"]["gone"]
