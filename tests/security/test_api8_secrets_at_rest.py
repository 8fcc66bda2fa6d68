"""API8 security misconfiguration: secrets at rest (issue 8, finding 1 c).

The attack: an operator's command ran ``grep -a -A1 'BEGIN PRIVATE KEY' <data
dir>/db/clog/*.clog`` and printed the JWT signing key; TOTP and webhook secrets
sat beside it. These tests run both services on a real file-backed store, then
grep its files the same way, and check what guards the key-encryption key.
"""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from provisioning.cli import main
from shared.security.backend import SECURITY, Security
from shared.store.secrets import SecretsError, encode_key, key_id, load_secret_box, new_key
from shared.store.writes import Stmt
from shared.web.app import open_store
from shared.webhooks.repository import WebhookRepository
from tests.helpers.file_services import file_services, file_settings, grep
from tests.helpers.services import ADMIN_PASSWORD, Secrets, Services, bearer


async def plant_secrets(services: Services) -> dict[str, bytes]:
    """The admin enrols TOTP and registers a webhook; returns every secret there is, as bytes."""
    token = await services.admin()
    resp = await services.cc.post(
        "/webhooks",
        headers=bearer(token),
        json={"url": "http://127.0.0.1:9/hook", "events": ["task.completed"], "description": "probe"},
    )
    doc = await resp.json()
    assert resp.status == 201, doc
    webhook_secret = doc["data"]["secret"]
    services.secrets.add(webhook_secret)
    private = services.cc.app[SECURITY].keys.signing_key.private_key
    assert private is not None
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    raw = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    totp = services.totp_secrets["admin"]
    return {
        "PEM armour": b"BEGIN PRIVATE KEY",
        "PEM body": pem.splitlines()[1],
        "raw signing key": raw,
        "TOTP secret": totp.encode(),
        "webhook secret": webhook_secret.encode(),
        "webhook key bytes": base64.b64decode(webhook_secret.removeprefix("whsec_")),
    }


async def test_grep_of_the_store_files_finds_no_secret(
    tmp_path: Path, aiohttp_client: Any, secrets: Secrets
) -> None:
    settings = file_settings(tmp_path, webhooks_allow_private=True)
    async with file_services(settings, aiohttp_client, secrets) as services:
        planted = await plant_secrets(services)
    data_dir = tmp_path / "data"
    # The grep works on these files: what is not secret is there to be found.
    assert grep(data_dir, b"http://127.0.0.1:9/hook")
    assert grep(data_dir, b"enc:v1:")
    for what, needle in planted.items():
        assert grep(data_dir, needle) == [], f"the {what} is readable in the store files"
    # ... and the key that opens them is not in the data directory at all.
    key_file = tmp_path / "secret.key"
    assert key_file.exists() and data_dir not in key_file.parents
    assert grep(data_dir, key_file.read_text().strip().encode()) == []


async def test_secrets_still_work_after_a_restart(
    tmp_path: Path, aiohttp_client: Any, secrets: Secrets
) -> None:
    settings = file_settings(tmp_path, webhooks_allow_private=True)
    async with file_services(settings, aiohttp_client, secrets) as first:
        await plant_secrets(first)
        kid = first.cc.app[SECURITY].keys.signing_key.kid
        webhook_id = (await WebhookRepository(first.store).all_webhooks())[0]["id"]
        webhook_secret = (await WebhookRepository(first.store).webhook(webhook_id) or {})["secret"]
    async with file_services(settings, aiohttp_client, secrets, previous=first) as again:
        assert again.cc.app[SECURITY].keys.signing_key.kid == kid
        status, doc = await again.login("admin", ADMIN_PASSWORD, again.code("admin"))  # TOTP opens
        assert status == 200, doc
        assert (await WebhookRepository(again.store).webhook(webhook_id) or {})["secret"] == webhook_secret


async def test_a_wrong_key_is_a_clear_start_error_never_a_new_key(
    tmp_path: Path, aiohttp_client: Any, secrets: Secrets, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = file_settings(tmp_path)
    async with file_services(settings, aiohttp_client, secrets) as services:
        kid = services.cc.app[SECURITY].keys.signing_key.kid
    right = load_secret_box(settings).current

    wrong = file_settings(tmp_path, secret_key=encode_key(new_key()))
    store = open_store(wrong)
    await store.open()
    try:
        with pytest.raises(SecretsError) as err:
            await Security(wrong).start(store)
        assert f"sealed with key-encryption key {right}" in err.value.message
        assert "configure the key this store was created with" in err.value.message
        rows = await store.query("SELECT id FROM jwt_key")
        assert [r["id"] for r in rows] == [kid]  # no new signing key was made
    finally:
        await store.close()

    # The key file gone: a new one is not written over a store sealed with the old one.
    key_file = tmp_path / "secret.key"
    saved = key_file.read_bytes()
    key_file.unlink()
    store = open_store(settings)
    await store.open()
    try:
        with pytest.raises(SecretsError, match="sealed with key-encryption key"):
            await Security(settings).start(store)
    finally:
        await store.close()
    assert not key_file.exists()
    key_file.write_bytes(saved)
    key_file.chmod(0o600)

    # And the command line says so in one line, without a traceback.
    monkeypatch.setenv("PROVISIONING_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("PROVISIONING_SECRET_KEY", encode_key(new_key()))
    assert await asyncio.to_thread(main, ["keys", "rotate"]) == 2


async def test_the_key_file_is_made_0600_beside_the_data_directory(
    tmp_path: Path, aiohttp_client: Any, secrets: Secrets
) -> None:
    settings = file_settings(tmp_path)
    key_file = tmp_path / "secret.key"
    assert not key_file.exists()
    async with file_services(settings, aiohttp_client, secrets):
        pass
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert load_secret_box(settings).current == key_id(base64.b64decode(key_file.read_text()))


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
async def test_a_key_file_others_can_read_is_refused(tmp_path: Path, mode: int) -> None:
    key_file = tmp_path / "secret.key"
    key_file.write_text(encode_key(new_key()) + "\n")
    key_file.chmod(mode)
    settings = file_settings(tmp_path)
    with pytest.raises(SecretsError) as err:
        open_store(settings)
    assert f"mode {mode:04o}" in err.value.message
    assert f"chmod 600 {key_file}" in err.value.message


async def test_a_key_file_inside_the_data_directory_is_refused(tmp_path: Path) -> None:
    settings = file_settings(tmp_path, secret_key_file=str(tmp_path / "data" / "secret.key"))
    with pytest.raises(SecretsError, match="inside the data directory"):
        open_store(settings)


@pytest.mark.parametrize("value", ["not base64!", base64.b64encode(b"short").decode()])
def test_a_malformed_key_is_refused_naming_its_origin(tmp_path: Path, value: str) -> None:
    with pytest.raises(SecretsError, match="PROVISIONING_SECRET_KEY"):
        load_secret_box(file_settings(tmp_path, secret_key=value))


async def test_plaintext_secrets_of_an_older_store_are_sealed_at_start(
    tmp_path: Path, aiohttp_client: Any, secrets: Secrets
) -> None:
    """A data directory written before secrets were encrypted keeps working, and its
    secrets end up sealed."""
    settings = file_settings(tmp_path, webhooks_allow_private=True)
    async with file_services(settings, aiohttp_client, secrets) as first:
        await plant_secrets(first)
        token = await first.admin()
        opened = {
            "jwt_key": await first.store.query("SELECT * FROM jwt_key"),
            "user": await first.store.query("SELECT * FROM user WHERE username = 'admin'"),
            "webhook": await WebhookRepository(first.store).all_webhooks(),
        }
        # Write them back as an older version stored them: in plaintext.
        key = first.cc.app[SECURITY].keys.signing_key
        old = {
            "jwt_key": (key.kid, "private_pem", key.to_row()["private_pem"]),
            "user": (opened["user"][0]["id"], "mfa_secret", first.totp_secrets["admin"]),
            "webhook": (opened["webhook"][0]["id"], "secret", opened["webhook"][0]["secret"]),
        }
        await first.store.write(
            *(
                Stmt(f"UPDATE type::thing($tb, $id) SET {f} = $v RETURN NONE", {"tb": tb, "id": i, "v": v})
                for tb, (i, f, v) in old.items()
            )
        )
        rows = await first.store.query("SELECT private_pem FROM jwt_key")
        assert rows[0]["private_pem"].startswith("-----BEGIN PRIVATE KEY")
    async with file_services(settings, aiohttp_client, secrets, previous=first) as again:
        for table, (record, field, plaintext) in old.items():
            [row] = await again.store.query(
                f"SELECT {field} FROM type::thing($tb, $id)", {"tb": table, "id": record}
            )
            assert row[field].startswith("enc:v1:"), (table, row)
            assert again.store.secrets.open(row[field], table, str(record), field) == plaintext
        # The old signing key still signs and verifies, the TOTP secret still opens.
        assert again.cc.app[SECURITY].keys.signing_key.kid == key.kid
        resp = await again.orch.get("/tasks", headers=bearer(token))
        assert resp.status == 200, await resp.text()
        status, doc = await again.login("admin", ADMIN_PASSWORD, again.code("admin"))
        assert status == 200, doc


async def test_a_sealed_secret_copied_to_another_row_does_not_open(
    tmp_path: Path, aiohttp_client: Any, secrets: Secrets
) -> None:
    """Associated data binds a ciphertext to its row: an attacker who can write the store
    cannot give their own account the admin's TOTP secret by copying it."""
    settings = file_settings(tmp_path)
    async with file_services(settings, aiohttp_client, secrets) as services:
        admin_token = await services.admin()
        _, _ = await services.user("mallory", "viewer", admin_token=admin_token)
        [admin] = await services.store.query("SELECT id, mfa_secret FROM user WHERE username = 'admin'")
        [mallory] = await services.store.query("SELECT id FROM user WHERE username = 'mallory'")
        with pytest.raises(SecretsError, match="altered or copied from another record"):
            services.store.secrets.open(admin["mfa_secret"], "user", str(mallory["id"]), "mfa_secret")
