"""Password hashing: argon2id through libpass (imported as ``passlib``).

Hashing is meant to be slow (50-250 ms with the default parameters), so it runs
in a worker thread: the event loop keeps serving while a login is checked.
"""

from __future__ import annotations

import asyncio
import secrets
import string

from passlib.hash import argon2

from shared.errors import ValidationFailed
from shared.settings import Settings

GENERATED_PASSWORD_LENGTH = 20
_ALPHABET = string.ascii_letters + string.digits


class PasswordHasher:
    """argon2id with the configured cost; old hashes are upgraded on the next login."""

    def __init__(self, settings: Settings) -> None:
        self.min_length = settings.password_min_length
        self._argon2 = argon2.using(
            type="ID",
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
        )
        # Verified against when the user does not exist, so timing does not tell.
        self._dummy = self._argon2.hash(secrets.token_urlsafe(16))

    def check_policy(self, password: str, *, field: str = "password") -> None:
        """422 for a password too short to keep."""
        if len(password) < self.min_length:
            raise ValidationFailed(
                f"{field}: a password has at least {self.min_length} characters",
                details={
                    "fields": [
                        {
                            "field": field,
                            "type": "too_short",
                            "message": f"at least {self.min_length} characters",
                        }
                    ]
                },
            )

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._argon2.hash, password)

    async def verify(self, password: str, hashed: str | None) -> bool:
        target = hashed or self._dummy
        try:
            ok = await asyncio.to_thread(self._argon2.verify, password, target)
        except (ValueError, TypeError):
            return False
        return bool(ok) and hashed is not None

    async def waste_time(self, password: str) -> None:
        """Spend what a real check costs (an unknown or locked user)."""
        await self.verify(password, None)

    def needs_update(self, hashed: str) -> bool:
        return bool(self._argon2.needs_update(hashed))


def generate_password() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(GENERATED_PASSWORD_LENGTH))
