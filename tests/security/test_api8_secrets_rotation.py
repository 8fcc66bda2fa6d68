"""API8 security misconfiguration: keys can be rotated (issue 8, finding 1 c).

A signing key that may have leaked must be replaceable without logging
everyone out: ``provisioning keys rotate`` adds a new signer, the old public key
stays in JWKS and verifies the tokens it signed until they have expired, then it
is gone. ``--kek`` seals every secret under a new key-encryption key.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest

from provisioning.cli import main
from shared.errors import Unauthorized
from shared.security.backend import SECURITY
from shared.security.tokens import retirement_delay_s
from shared.settings import Settings
from shared.store.secrets import key_id, read_key_file
from tests.helpers.file_services import file_services, file_settings
from tests.helpers.services import ADMIN_PASSWORD, Secrets, bearer


def kid_of(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


@dataclass
class Rig:
    """What each test here uses: a data directory, both services on it, and the CLI."""

    tmp_path: Path
    aiohttp_client: Any
    secrets: Secrets
    monkeypatch: pytest.MonkeyPatch
    capsys: pytest.CaptureFixture[str]

    def services(self, settings: Settings, previous: Any = None) -> Any:
        return file_services(settings, self.aiohttp_client, self.secrets, previous=previous)

    async def cli(self, settings: Settings, *argv: str) -> int:
        self.monkeypatch.setenv("PROVISIONING_DATA_DIR", str(settings.data_dir))
        return await asyncio.to_thread(main, list(argv))


@pytest.fixture
def rig(
    tmp_path: Path,
    aiohttp_client: Any,
    secrets: Secrets,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Rig:
    return Rig(tmp_path, aiohttp_client, secrets, monkeypatch, capsys)


async def jwks_kids(services: Any) -> list[str]:
    resp = await services.cc.get("/.well-known/jwks.json")
    return [k["kid"] for k in (await resp.json())["keys"]]


async def test_rotation_keeps_old_tokens_until_they_expire(rig: Rig) -> None:
    settings = file_settings(rig.tmp_path)
    async with rig.services(settings) as before:
        old_token = await before.admin()
        unused_old_token = await before.admin()  # never verified after the rotation
        old_kid = kid_of(old_token)
    assert await rig.cli(settings, "keys", "rotate") == 0
    out = rig.capsys.readouterr().out
    assert f"key {old_kid} no longer signs" in out

    async with rig.services(settings, previous=before) as after:
        ring = after.cc.app[SECURITY].keys
        new_kid = ring.signing_key.kid
        assert new_kid != old_kid and f"new signing key {new_kid}" in out
        # Old tokens still verify on both services ...
        for client, path in ((after.orch, "/tasks"), (after.cc, "/users")):
            resp = await client.get(path, headers=bearer(old_token))
            assert resp.status == 200, (path, await resp.text())
        # ... new ones carry the new kid, and JWKS publishes both.
        new_token = await after.admin()
        assert kid_of(new_token) == new_kid
        assert sorted(await jwks_kids(after)) == sorted([old_kid, new_kid])
        retire_at = ring.keys[old_kid].retire_at
        assert retire_at is not None
        assert retire_at.timestamp() >= time.time() + settings.access_token_ttl_s

        # Once every token the old key signed has expired, it is retired.
        later = time.time() + retirement_delay_s(settings) + 1
        ring.clock = lambda: later
        assert await jwks_kids(after) == [new_kid]
        with pytest.raises(Unauthorized, match="unknown or retired key"):
            await after.cc.app[SECURITY].tokens.verify(unused_old_token)
        await ring.prune()
        assert [r["id"] for r in await after.store.query("SELECT id FROM jwt_key")] == [new_kid]
        resp = await after.orch.get("/tasks", headers=bearer(new_token))
        assert resp.status == 200


async def test_rotation_refuses_while_the_service_holds_the_data_directory(rig: Rig) -> None:
    settings = file_settings(rig.tmp_path)
    async with rig.services(settings) as running:
        kid = running.cc.app[SECURITY].keys.signing_key.kid
        assert await rig.cli(settings, "keys", "rotate") == 2
        err = rig.capsys.readouterr().err
        assert "is in use by" in err and "stop the service" in err
        assert [r["id"] for r in await running.store.query("SELECT id FROM jwt_key")] == [kid]


async def test_kek_rotation_seals_every_secret_under_a_new_key(rig: Rig) -> None:
    settings = file_settings(rig.tmp_path, webhooks_allow_private=True)
    key_file = rig.tmp_path / "secret.key"
    async with rig.services(settings) as before:
        token = await before.admin()  # the admin enrols TOTP: a sealed secret
        resp = await before.cc.post(
            "/webhooks", headers=bearer(token), json={"url": "http://127.0.0.1:9/h", "events": ["*"]}
        )
        assert resp.status == 201
        rig.secrets.add((await resp.json())["data"]["secret"])
    [old_key] = read_key_file(key_file)

    assert await rig.cli(settings, "keys", "rotate", "--kek") == 0
    [new_key] = read_key_file(key_file)
    assert new_key != old_key and key_file.stat().st_mode & 0o777 == 0o600
    assert f"new key-encryption key {key_id(new_key)}" in rig.capsys.readouterr().out

    async with rig.services(settings, previous=before) as after:
        sealed = [
            value
            for table, field in (("jwt_key", "private_pem"), ("user", "mfa_secret"), ("webhook", "secret"))
            for row in await after.store.query(f"SELECT {field} FROM {table}")
            if (value := row.get(field))
        ]
        assert len(sealed) == 3
        assert all(v.startswith(f"enc:v1:{key_id(new_key)}:") for v in sealed)
        status, doc = await after.login("admin", ADMIN_PASSWORD, after.code("admin"))
        assert status == 200, doc
        resp = await after.orch.get("/tasks", headers=bearer(token))  # the signing key opened too
        assert resp.status == 200
