"""The secret box on its own: the sealed format, what binds a ciphertext to its row, several
keys while rotating, and where the key comes from."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.settings import load_settings
from shared.store.secrets import (
    SecretBox,
    SecretsError,
    encode_key,
    is_sealed,
    key_file_path,
    key_id,
    load_secret_box,
    new_key,
    read_key_file,
    sealed_kid,
)


def test_seal_and_open() -> None:
    key = new_key()
    box = SecretBox([key], source="test")
    sealed = box.seal("JBSWY3DPEHPK3PXP", "user", "u1", "mfa_secret")
    assert is_sealed(sealed) and sealed.startswith(f"enc:v1:{key_id(key)}:")
    assert "JBSWY3DPEHPK3PXP" not in sealed
    assert box.open(sealed, "user", "u1", "mfa_secret") == "JBSWY3DPEHPK3PXP"
    assert box.seal("x", "user", "u1", "mfa_secret") != box.seal("x", "user", "u1", "mfa_secret")


@pytest.mark.parametrize(
    ("table", "record", "field"),
    [("user", "u2", "mfa_secret"), ("user", "u1", "mfa_pending_secret"), ("webhook", "u1", "secret")],
)
def test_a_ciphertext_opens_only_where_it_was_sealed(table: str, record: str, field: str) -> None:
    box = SecretBox([new_key()], source="test")
    sealed = box.seal("secret", "user", "u1", "mfa_secret")
    with pytest.raises(SecretsError, match="altered or copied from another record"):
        box.open(sealed, table, record, field)


def test_a_tampered_ciphertext_does_not_open() -> None:
    box = SecretBox([new_key()], source="test")
    sealed = box.seal("secret", "user", "u1", "mfa_secret")
    flipped = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
    with pytest.raises(SecretsError):
        box.open(flipped, "user", "u1", "mfa_secret")


def test_several_keys_while_rotating() -> None:
    old, new = new_key(), new_key()
    sealed_old = SecretBox([old], source="old").seal("s", "webhook", "w", "secret")
    both = SecretBox([new, old], source="both")
    assert both.open(sealed_old, "webhook", "w", "secret") == "s"
    assert both.needs_reseal(sealed_old) and both.needs_reseal("plaintext")
    assert not both.needs_reseal(both.seal("s", "webhook", "w", "secret"))
    assert sealed_kid(both.seal("s", "webhook", "w", "secret")) == key_id(new)
    with pytest.raises(SecretsError, match=f"sealed with key-encryption key {key_id(old)}"):
        SecretBox([new], source="new only").open(sealed_old, "webhook", "w", "secret")


def test_fields_are_sealed_and_opened_by_table() -> None:
    box = SecretBox([new_key()], source="test")
    row = box.seal_fields("webhook", "wh_1", {"id": "wh_1", "url": "http://x", "secret": "whsec_a"})
    assert row["url"] == "http://x" and is_sealed(row["secret"])
    assert box.seal_fields("webhook", "wh_1", row) == row  # sealing is not done twice
    assert box.open_fields("webhook", dict(row))["secret"] == "whsec_a"
    assert box.open_fields("webhook", {"id": "wh_1", "secret": "legacy"})["secret"] == "legacy"


def test_keys_from_the_environment_first_one_seals(tmp_path: Path) -> None:
    new, old = new_key(), new_key()
    settings = load_settings(data_dir=tmp_path / "data", secret_key=f"{encode_key(new)}, {encode_key(old)}")
    box = load_secret_box(settings)
    assert box.current == key_id(new) and set(box.kids) == {key_id(new), key_id(old)}


def test_key_file_location_and_format(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "data")
    assert key_file_path(settings) == tmp_path.resolve() / "secret.key"
    assert key_file_path(load_settings(db_url="mem://")) is None
    path = tmp_path / "k"
    keys = [new_key(), new_key()]
    path.write_text(f"# rotating\n{encode_key(keys[0])}\n\n{encode_key(keys[1])}\n")
    path.chmod(0o600)
    assert read_key_file(path) == keys
    path.write_text("# nothing here\n")
    with pytest.raises(SecretsError, match="holds no key"):
        read_key_file(path)


def test_a_new_key_file_is_written_only_when_first_needed(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "data")
    box = load_secret_box(settings)
    assert not (tmp_path / "secret.key").exists()
    box.seal("s", "user", "u", "mfa_secret")
    assert (tmp_path / "secret.key").stat().st_mode & 0o777 == 0o600
    assert load_secret_box(settings).current == box.current
