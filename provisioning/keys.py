"""``provisioning keys rotate``: a new JWT signing key, or a new key-encryption key.

Both work on the data directory of a stopped service: the embedded store holds
an exclusive lock while a service runs, and the command says so rather than
wait. (Against a SurrealDB server there is no lock; running services pick a
new signing key up within a minute, ``KEY_REFRESH_S``.)

``keys rotate`` adds a signing key that signs from now on. The keys that signed
until now stop signing at once but stay published in JWKS, and accepted, until
every token they signed has expired (the access token lifetime plus margins,
:func:`shared.security.tokens.retirement_delay_s`); the first start after that deletes them.

``keys rotate --kek`` seals every secret in the store under a new
key-encryption key. With a key file it is crash-safe: the new key is written
first, in front of the old one (a start with both re-seals whatever is left),
the secrets are re-sealed, then the old key is dropped from the file. With
``PROVISIONING_SECRET_KEY`` the operator puts the new key first in the
variable (``<new>,<old>``); the command re-seals under it.
"""

from __future__ import annotations

from datetime import UTC, datetime

from shared.errors import StoreLocked
from shared.security.repositories import KeyRepository
from shared.security.sealing import seal_stored_secrets
from shared.security.tokens import KeyRing, retirement_delay_s
from shared.settings import Settings
from shared.store.secrets import (
    ENV_NAME,
    SecretBox,
    SecretsError,
    key_file_path,
    key_id,
    new_key,
    read_key_file,
    write_key_file,
)
from shared.store.store import Store
from shared.web.app import open_store


async def _open(settings: Settings) -> Store:
    store = open_store(settings)
    try:
        await store.open()
    except StoreLocked as exc:
        raise StoreLocked(
            f"{exc.message}. `provisioning keys` works on a stopped service's data directory: "
            "stop the service, run the command, start it again",
            details=exc.details,
        ) from None
    return store


def _when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds") if moment else "never"


async def rotate_signing_key(settings: Settings) -> list[str]:
    """A new signer; the old keys retire when their tokens have expired. Returns what to print."""
    store = await _open(settings)
    try:
        await seal_stored_secrets(store)
        ring = KeyRing()
        await ring.load(KeyRepository(store), create=True)
        await ring.prune()
        new, retiring = await ring.rotate(retirement_delay_s(settings))
    finally:
        await store.close()
    lines = [f"new signing key {new.kid}: it signs every token from now on"]
    for key in retiring:
        lines.append(
            f"key {key.kid} no longer signs; it stays in JWKS and verifies the tokens it "
            f"signed until {_when(key.retire_at)}, then it is retired"
        )
    return lines


async def rotate_kek(settings: Settings) -> list[str]:
    """Every secret sealed under a new key-encryption key. Returns what to print."""
    store = await _open(settings)
    try:
        await seal_stored_secrets(store)  # everything opens with the keys we have, or stop here
        if settings.secret_key:
            return [
                f"every secret is sealed under {store.secrets.current}, the first key in {ENV_NAME}",
                f"to rotate, put a new key first ({ENV_NAME}=<new>,<old>; make one with "
                "`head -c 32 /dev/urandom | base64`) and run this again; then drop the old one",
            ]
        path = key_file_path(settings)
        if path is None:
            raise SecretsError(
                "a memory store keeps its key in memory: there is no key-encryption key to rotate"
            )
        old = read_key_file(path)
        key = new_key()
        write_key_file(path, [key, *old])  # both known: a crash from here on loses nothing
        store.secrets = SecretBox([key, *old], source=str(path))
        report = await seal_stored_secrets(store)
        write_key_file(path, [key])
    finally:
        await store.close()
    return [
        f"new key-encryption key {key_id(key)} in {path}",
        f"secrets sealed again under it: {report.resealed + report.sealed}; "
        f"the old key {', '.join(key_id(k) for k in old)} is gone from the file",
    ]
