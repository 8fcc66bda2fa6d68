"""Password hashing (argon2id through libpass, imported as ``passlib``) and the policy.

Hashing is meant to be slow (50-250 ms with the default parameters), so it runs
in a worker thread: the event loop keeps serving while a login is checked.

The policy refuses what a guesser tries first (NIST SP 800-63B §5.1.1.2): too
short, only whitespace, one to three distinct characters (``aaaaaaaaaaaa``),
the username (case-insensitively, also inside a longer password), and the
10,000 most common passwords (``wordlists/common-passwords.txt``, from zxcvbn; see
``wordlists/common-passwords.LICENSE``), also with digits and punctuation around
them (``Dragon2024!``).
"""

from __future__ import annotations

import asyncio
import functools
import secrets
import string
from importlib import resources

from passlib.hash import argon2

from shared.errors import ValidationFailed
from shared.settings import Settings

GENERATED_PASSWORD_LENGTH = 20
MIN_DISTINCT_CHARACTERS = 4
MIN_USERNAME_LENGTH_CHECKED = 3  # a shorter username would forbid too many passwords
MIN_COMMON_WORD_LENGTH = 4  # "Dragon2024!" is refused as "dragon"; "xyz2024!!!!!" is not
COMMON_PASSWORDS_FILE = "common-passwords.txt"
_ALPHABET = string.ascii_letters + string.digits
_AROUND_A_WORD = string.digits + string.punctuation + string.whitespace


@functools.cache
def common_passwords() -> frozenset[str]:
    """The shipped list, lowercased (read once)."""
    text = (resources.files("control_center") / "wordlists" / COMMON_PASSWORDS_FILE).read_text()
    return frozenset(line.strip().lower() for line in text.splitlines() if line.strip())


def password_problem(
    password: str, *, min_length: int, username: str | None = None
) -> tuple[str, str] | None:
    """Why a password may not be kept, as ``(type, message)``; None when it may."""
    if len(password) < min_length:
        return "too_short", f"at least {min_length} characters"
    if not password.strip():
        return "whitespace_only", "not only whitespace"
    if len(set(password)) < MIN_DISTINCT_CHARACTERS:
        return "too_simple", f"at least {MIN_DISTINCT_CHARACTERS} different characters"
    lowered = password.lower()
    if username and len(username) >= MIN_USERNAME_LENGTH_CHECKED and username.lower() in lowered:
        return "contains_username", "must not contain the username"
    common = common_passwords()
    word = lowered.strip(_AROUND_A_WORD)
    if lowered in common or (len(word) >= MIN_COMMON_WORD_LENGTH and word in common):
        return "common", "too common: it is on the list of the 10,000 most used passwords"
    return None


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
        # Verified against when the user does not exist, so timing does not tell. Made in
        # a thread by :meth:`prepare` as the service starts, not here: an argon2 hash is
        # ~0.2 s of CPU that would hold the event loop in the start's path.
        self._dummy: str | None = None

    async def prepare(self) -> None:
        """Make the hash an unknown user's password is checked against (at start, in the
        background; a check that comes first makes it itself)."""
        await self._dummy_hash()

    async def _dummy_hash(self) -> str:
        if self._dummy is not None:
            return self._dummy
        dummy: str = await asyncio.to_thread(self._argon2.hash, secrets.token_urlsafe(16))
        self._dummy = dummy
        return dummy

    def check_policy(self, password: str, *, username: str | None = None, field: str = "password") -> None:
        """422 naming ``field`` for a password the policy refuses."""
        problem = password_problem(password, min_length=self.min_length, username=username)
        if problem is not None:
            kind, message = problem
            raise ValidationFailed(
                f"{field}: {message}",
                details={"fields": [{"field": field, "type": kind, "message": message}]},
            )

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._argon2.hash, password)

    async def verify(self, password: str, hashed: str | None) -> bool:
        target = hashed or await self._dummy_hash()
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
    """20 random letters and digits (~119 bits); drawn again in the rare case the policy refuses."""
    while True:
        password = "".join(secrets.choice(_ALPHABET) for _ in range(GENERATED_PASSWORD_LENGTH))
        if password_problem(password, min_length=GENERATED_PASSWORD_LENGTH, username="admin") is None:
            return password
