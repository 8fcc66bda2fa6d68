"""Bringing the secrets already in a store under the current key-encryption key.

Run at every start (:meth:`shared.security.backend.Security.start`) and by
``provisioning keys rotate --kek``. It walks every field of
:data:`shared.store.secrets.SECRET_FIELDS`: a value stored in plaintext (a data
directory from before secrets were encrypted) or sealed with an older KEK is
opened and sealed again under the current one, each with a compare-and-set so a
concurrent change is never overwritten. It is idempotent: a second run finds
nothing to do.

Before anything is written, every sealed value must open: a store sealed under
a KEK this process was not given stops the start with a message naming both
keys, and a new key file is never written over such a store (so a missing key
file cannot silently become a new key).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from shared.security.repositories import SecretFieldRepository
from shared.store.secrets import SECRET_FIELDS, is_sealed
from shared.store.store import Store
from shared.store.writes import Write

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SealReport:
    """What a run found: values sealed from plaintext, and values moved to the current KEK."""

    sealed: int
    resealed: int


async def seal_stored_secrets(store: Store) -> SealReport:
    """Seal every plaintext secret and re-seal every secret under an older KEK."""
    box = store.secrets
    repo = SecretFieldRepository(store)
    writes: list[Write] = []
    sealed = resealed = 0
    for table, fields in SECRET_FIELDS.items():
        for row in await repo.rows(table, fields):
            record = str(row["id"])
            for field in fields:
                value = row.get(field)
                if not box.needs_reseal(value):
                    continue
                assert isinstance(value, str)
                plaintext = box.open(value, table, record, field)  # raises on a foreign KEK
                if is_sealed(value):
                    resealed += 1
                else:
                    sealed += 1
                again = box.seal(plaintext, table, record, field)
                writes.append(repo.replace(table, record, field, value, again))
    box.persist()  # every sealed value opened: a new key file is safe to write now
    if writes:
        await store.write(*writes)
        log.warning(
            "sealed secrets that were stored in plaintext or under an older key",
            extra={"sealed": sealed, "resealed": resealed, "key": box.current},
        )
    if sealed:
        log.warning(
            "secrets were stored in plaintext until now and may remain in the store's history "
            "files: rotate the signing key (provisioning keys rotate) and the webhook secrets, "
            "and have users enrol MFA again, if the data directory may have been read"
        )
    return SealReport(sealed, resealed)
