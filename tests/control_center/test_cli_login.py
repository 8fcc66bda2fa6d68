"""``provisioning login`` walks the whole first-login journey in the terminal:
password, MFA enrolment (QR code and secret shown, code confirmed, backup codes
printed), then a login with a fresh code; the token is saved for later commands."""

from __future__ import annotations

import argparse
import json
import re

import pyotp
import pytest

from provisioning import cli, client
from tests.helpers.services import ADMIN_PASSWORD, Services


@pytest.fixture
def token_file(monkeypatch, tmp_path):
    path = tmp_path / "token.json"
    monkeypatch.setattr(client, "TOKEN_FILE", path)
    monkeypatch.setenv("PROVISIONING_PASSWORD", ADMIN_PASSWORD)
    return path


def args_for(services: Services, **kw) -> argparse.Namespace:
    return argparse.Namespace(
        username="admin", mfa_code=None, control_center=str(services.cc.make_url("")).rstrip("/"), **kw
    )


class Authenticator:
    """The user's authenticator app: reads the secret the CLI prints, answers its prompts
    with the code of the next time step, and remembers what was asked and printed."""

    def __init__(self, services: Services, capsys: pytest.CaptureFixture[str]) -> None:
        self.services = services
        self.capsys = capsys
        self.printed = ""
        self.prompts: list[str] = []
        self.secret: str | None = None

    def __call__(self, prompt: str) -> str:
        self.prompts.append(prompt)
        self.printed += self.capsys.readouterr().out
        if self.secret is None:
            self.secret = re.search(r"secret by hand: (\w+)", self.printed).group(1)  # type: ignore[union-attr]
        self.services.clock.step()
        return pyotp.TOTP(self.secret).at(self.services.clock.now)


async def test_first_login_enrols_mfa_in_the_terminal(services: Services, token_file, capsys):
    ask = Authenticator(services, capsys)
    assert await cli._login(args_for(services), ask=ask) == 0
    printed = ask.printed + capsys.readouterr().out
    assert ask.prompts == ["Code shown by the app: ", "Next code shown by the app (to log in): "]
    assert "MFA enabled" in printed
    assert len(re.findall(r"^  \S+$", printed, re.M)) >= 10  # the backup codes
    assert "logged in as admin" in printed
    saved = json.loads(token_file.read_text())
    resp = await services.orch.get("/tasks", headers={"Authorization": f"Bearer {saved['token']}"})
    assert resp.status == 200

    # Later logins ask for the code when none was given on the command line.
    ask.prompts.clear()
    assert await cli._login(args_for(services), ask=ask) == 0
    assert ask.prompts == ["MFA code: "]


async def test_a_wrong_password_is_an_error_not_a_prompt(services: Services, token_file, monkeypatch):
    monkeypatch.setenv("PROVISIONING_PASSWORD", "not-the-password")
    with pytest.raises(client.ApiError) as err:
        await cli._login(args_for(services), ask=lambda p: pytest.fail(f"asked {p!r}"))
    assert err.value.status == 401
    assert not token_file.exists()


async def test_an_expired_access_token_is_refreshed_once_and_saved(
    services: Services, token_file, capsys, monkeypatch
):
    ask = Authenticator(services, capsys)
    assert await cli._login(args_for(services), ask=ask) == 0
    doc = json.loads(token_file.read_text())
    assert oct(token_file.stat().st_mode & 0o777) == "0o600"
    # The access token has gone stale (here: replaced by garbage); the refresh token holds.
    doc["token"] = "not-a-valid-token"
    token_file.write_text(json.dumps(doc))
    monkeypatch.delenv("PROVISIONING_TOKEN", raising=False)
    monkeypatch.setenv("PROVISIONING_CONTROL_CENTER_URL", str(services.cc.make_url("")).rstrip("/"))
    args = cli.build_parser().parse_args(["--url", str(services.orch.make_url("")).rstrip("/"), "tasks"])
    capsys.readouterr()
    assert await cli._client_command(args) == 0
    saved = json.loads(token_file.read_text())
    assert saved["token"] != "not-a-valid-token"
    assert saved["refresh_token"] != doc["refresh_token"]  # rotated on use
