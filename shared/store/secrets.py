"""Secrets at rest: sealed with a key-encryption key (KEK) that the store never holds.

The JWT signing keys, TOTP secrets and webhook secrets are written to the store
as ``enc:v1:<kid>:<nonce>:<ciphertext>``: AES-256-GCM under the KEK whose id is
``kid``, with associated data naming the table, the record and the field, so a
ciphertext copied onto another row (an attacker's own user, say) does not open.
The ``kid`` lets the KEK be rotated: a box knows several keys, seals with the
first and opens with any.

The KEK comes from ``PROVISIONING_SECRET_KEY`` (base64 of 32 bytes, several
comma-separated while rotating) or from a key file, by default
``<data_dir parent>/secret.key``: outside the data directory, so a copy of the
data directory (a backup, a command that can read it) never carries the key
that opens it. The file is created ``0600`` at the first start that needs it,
and a file readable by group or others is refused.

Which fields are secrets is :data:`SECRET_FIELDS`; the repositories of those
tables seal on write and open on read (:meth:`SecretBox.seal_fields`,
:meth:`SecretBox.open_fields`). A value that is not sealed is read as it is: it
was written before secrets were encrypted, and the start-up upgrade
(:mod:`shared.security.sealing`) seals it.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.errors import ProvisioningError
from shared.settings import Settings

PREFIX = "enc:"
VERSION = "v1"
KEY_BYTES = 32
NONCE_BYTES = 12
KID_CHARS = 16
ENV_NAME = "PROVISIONING_SECRET_KEY"
DEFAULT_KEY_FILE = "secret.key"
PRIVATE_MASK = 0o077  # group and other permission bits

# What is a secret at rest: table -> fields. The repositories of these tables seal
# and open them; the start-up upgrade and ``provisioning keys rotate --kek`` walk them.
SECRET_FIELDS: Mapping[str, tuple[str, ...]] = {
    "jwt_key": ("private_pem",),
    "user": ("mfa_secret", "mfa_pending_secret"),
    "webhook": ("secret", "previous_secret"),
}


class SecretsError(ProvisioningError):
    """The key-encryption key is missing, unsafe or wrong, or a sealed secret does not open."""

    status = 503
    code = "secrets_unavailable"


def key_id(key: bytes) -> str:
    """A key's public name: a hash prefix that tells keys apart and reveals nothing."""
    return hashlib.sha256(b"provisioning-kek\x00" + key).hexdigest()[:KID_CHARS]


def new_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def encode_key(key: bytes) -> str:
    return base64.b64encode(key).decode()


def decode_key(text: str, where: str) -> bytes:
    """One base64 key of 32 bytes; ``where`` names its origin in the error."""
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise SecretsError(f"{where}: a key-encryption key must be base64 of 32 bytes") from None
    if len(key) != KEY_BYTES:
        raise SecretsError(
            f"{where}: a key-encryption key must be 32 bytes, this one is {len(key)} "
            f"(make one with: head -c 32 /dev/urandom | base64)"
        )
    return key


def is_sealed(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


def sealed_kid(value: str) -> str | None:
    """The id of the KEK a sealed value was sealed with (None if not sealed)."""
    if not is_sealed(value):
        return None
    parts = value.split(":")
    return parts[2] if len(parts) == 5 else None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _aad(table: str, record: str, field: str) -> bytes:
    return f"provisioning:{table}:{record}:{field}".encode()


class SecretBox:
    """Seals and opens secrets with the KEKs it knows; the first one seals."""

    def __init__(
        self,
        keys: list[bytes],
        *,
        source: str,
        save: Callable[[], None] | None = None,
    ) -> None:
        if not keys:
            raise SecretsError(f"{source}: no key-encryption key")
        self._ciphers = {key_id(k): AESGCM(k) for k in keys}
        self.current = key_id(keys[0])
        self.source = source
        self._save = save  # writes a key file generated at this start, before its first use

    @classmethod
    def ephemeral(cls) -> SecretBox:
        """A key that lives as long as the process: for a store in memory."""
        return cls([new_key()], source="a key kept in memory (memory store)")

    @property
    def kids(self) -> tuple[str, ...]:
        return tuple(self._ciphers)

    def persist(self) -> None:
        """Write a newly generated key file now (done at the latest before the first seal)."""
        if self._save is not None:
            save, self._save = self._save, None
            save()

    def seal(self, plaintext: str, table: str, record: str, field: str) -> str:
        self.persist()
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[self.current].encrypt(nonce, plaintext.encode(), _aad(table, record, field))
        return f"{PREFIX}{VERSION}:{self.current}:{_b64(nonce)}:{_b64(sealed)}"

    def open(self, value: str, table: str, record: str, field: str) -> str:
        """The plaintext of a sealed value; a value that was never sealed comes back as it is."""
        if not is_sealed(value):
            return value
        where = f"{table}:{record}.{field}"
        parts = value.split(":")
        if len(parts) != 5 or parts[1] != VERSION:
            raise SecretsError(f"{where} is sealed in a format this version does not know")
        _, _, kid, nonce, sealed = parts
        cipher = self._ciphers.get(kid)
        if cipher is None:
            raise SecretsError(
                f"{where} was sealed with key-encryption key {kid}, but {self.source} "
                f"holds {', '.join(self.kids)}: configure the key this store was created with",
                details={"sealed_with": kid, "configured": list(self.kids)},
            )
        try:
            return cipher.decrypt(_unb64(nonce), _unb64(sealed), _aad(table, record, field)).decode()
        except (InvalidTag, ValueError, binascii.Error):
            raise SecretsError(
                f"{where} does not open with key-encryption key {kid}: it was altered or "
                "copied from another record"
            ) from None

    def needs_reseal(self, value: Any) -> bool:
        """Stored in plaintext, or sealed with a KEK other than the current one."""
        return isinstance(value, str) and bool(value) and sealed_kid(value) != self.current

    def seal_fields(self, table: str, record: str, row: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of a row (or patch) with its secret fields sealed."""
        out = dict(row)
        for name in SECRET_FIELDS.get(table, ()):
            value = out.get(name)
            if isinstance(value, str) and value and not is_sealed(value):
                out[name] = self.seal(value, table, record, name)
        return out

    def open_fields(self, table: str, row: dict[str, Any]) -> dict[str, Any]:
        """A row read from the store with its secret fields opened (in place; returns it)."""
        record = str(row.get("id", ""))
        for name in SECRET_FIELDS.get(table, ()):
            value = row.get(name)
            if isinstance(value, str) and is_sealed(value):
                row[name] = self.open(value, table, record, name)
        return row


# -- where the key-encryption key comes from --------------------------------------------


def key_file_path(settings: Settings) -> Path | None:
    """The key file in use: the configured one, else beside the data directory; None for a
    memory store that was given neither a key nor a file."""
    if settings.secret_key_file:
        return Path(settings.secret_key_file).expanduser().resolve()
    if settings.resolved_db_url.startswith("mem://"):
        return None
    return settings.data_dir.resolve().parent / DEFAULT_KEY_FILE


def load_secret_box(settings: Settings) -> SecretBox:
    """The KEKs for this store: from ``PROVISIONING_SECRET_KEY``, else the key file (made at
    first start), else, for a memory store, a key of its own."""
    if settings.secret_key:
        keys = [decode_key(p, ENV_NAME) for p in settings.secret_key.split(",") if p.strip()]
        return SecretBox(keys, source=ENV_NAME)
    path = key_file_path(settings)
    if path is None:
        return SecretBox.ephemeral()
    refuse_inside_data_dir(path, settings)
    if path.exists():
        return SecretBox(read_key_file(path), source=str(path))
    key = new_key()
    return SecretBox([key], source=str(path), save=lambda: create_key_file(path, key))


def refuse_inside_data_dir(path: Path, settings: Settings) -> None:
    data_dir = settings.data_dir.resolve()
    if path == data_dir or data_dir in path.parents:
        raise SecretsError(
            f"the key file {path} is inside the data directory {data_dir}: keep it outside, "
            "so that a copy of the data directory does not carry the key that opens it "
            "(set secret_key_file, PROVISIONING_SECRET_KEY_FILE)"
        )


def check_key_file(path: Path) -> None:
    """Refuse a key file that anyone but the service's user can read or replace."""
    st = path.stat()
    if st.st_mode & PRIVATE_MASK:
        raise SecretsError(
            f"the key file {path} is readable by group or others (mode "
            f"{st.st_mode & 0o777:04o}); make it private: chmod 600 {path}",
            details={"path": str(path), "mode": f"{st.st_mode & 0o777:04o}"},
        )
    if st.st_uid != os.geteuid():
        raise SecretsError(
            f"the key file {path} belongs to uid {st.st_uid}, not to the service's user "
            f"(uid {os.geteuid()}): chown it to the user that runs provisioning",
            details={"path": str(path), "owner": st.st_uid},
        )


def read_key_file(path: Path) -> list[bytes]:
    """The keys of a key file, one base64 key per line, the current one first."""
    check_key_file(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SecretsError(f"cannot read the key file {path}: {exc.strerror}") from None
    keys = [
        decode_key(line, f"{path} line {number}")
        for number, line in enumerate(text.splitlines(), 1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not keys:
        raise SecretsError(f"the key file {path} holds no key")
    return keys


def create_key_file(path: Path, key: bytes) -> None:
    """A new key file, ``0600``; never overwrites one (another process may have made it)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise SecretsError(
            f"the key file {path} appeared while this process started: start again to use it"
        ) from None
    with os.fdopen(fd, "w") as fh:
        fh.write(encode_key(key) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    _fsync_dir(path.parent)


def write_key_file(path: Path, keys: list[bytes]) -> None:
    """Replace a key file atomically (write beside it, then rename), ``0600``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write("".join(encode_key(k) + "\n" for k in keys))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
