"""Password hashing (argon2id through libpass, imported as ``passlib``) and the policy.

Hashing is meant to be slow (50-250 ms with the default parameters), so it runs
in a worker thread: the event loop keeps serving while a login is checked. And it
is meant to take memory (``argon2_memory_kib``, 64 MiB by default): with
``password_hash_in_child`` (the default where ``fork`` exists) each hash and check
runs in a forked child that ends with it, so those 64 MiB are never the service's
(its peak RSS would otherwise be its own plus 64 MiB at every login).

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
import gc
import json
import os
import secrets
import signal
import string
from collections.abc import Callable
from importlib import resources
from typing import Any

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
        self._settings = settings
        self.in_child = settings.password_hash_in_child and hasattr(os, "fork")
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
        dummy: str = await self._run(self._argon2.hash, secrets.token_urlsafe(16))
        self._dummy = dummy
        return dummy

    @functools.cached_property
    def _argon2(self) -> Any:
        """passlib's argon2id with the configured cost (imported at the first use: a
        service that no one logs in to never loads it)."""
        from passlib.hash import argon2

        settings = self._settings
        return argon2.using(
            type="ID",
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
        )

    async def _run(self, function: Callable[..., Any], *args: str) -> Any:
        """``function(*args)`` in a worker thread; with :attr:`in_child`, in a forked child."""
        if self.in_child:
            return await asyncio.to_thread(in_child, function, *args)
        return await asyncio.to_thread(function, *args)

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
        hashed: str = await self._run(self._argon2.hash, password)
        return hashed

    async def verify(self, password: str, hashed: str | None) -> bool:
        target = hashed or await self._dummy_hash()
        try:
            ok = await self._run(self._argon2.verify, password, target)
        except (ValueError, TypeError):
            return False
        return bool(ok) and hashed is not None

    async def waste_time(self, password: str) -> None:
        """Spend what a real check costs (an unknown or locked user)."""
        await self.verify(password, None)

    def needs_update(self, hashed: str) -> bool:
        return bool(self._argon2.needs_update(hashed))


def in_child(function: Callable[..., Any], *args: str) -> Any:
    """``function(*args)`` in a forked child, its JSON answer read back through a pipe
    (blocking: call it in a worker thread). The child is only this thread, runs nothing
    but ``function`` and ends with ``os._exit``; a ``ValueError`` or ``TypeError`` it
    raises is raised here again, anything else is a ``RuntimeError``."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child (coverage does not follow it)
        status = 1
        try:
            gc.disable()  # no finalizer of the parent's objects runs here
            signal.set_wakeup_fd(-1)  # the parent's event loop hears no signal of ours
            os.close(read_fd)
            try:
                answer: list[Any] = ["ok", function(*args)]
            except (ValueError, TypeError) as exc:
                answer = ["error", type(exc).__name__, str(exc)]
            data = json.dumps(answer).encode()
            while data:
                data = data[os.write(write_fd, data) :]
            status = 0
        finally:
            os._exit(status)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    if status != 0 or not data:
        raise RuntimeError(f"the password hashing child ended with status {status}")
    answer = json.loads(data)
    if answer[0] == "error":
        raise (ValueError if answer[1] == "ValueError" else TypeError)(answer[2])
    return answer[1]


def generate_password() -> str:
    """20 random letters and digits (~119 bits); drawn again in the rare case the policy refuses."""
    while True:
        password = "".join(secrets.choice(_ALPHABET) for _ in range(GENERATED_PASSWORD_LENGTH))
        if password_problem(password, min_length=GENERATED_PASSWORD_LENGTH, username="admin") is None:
            return password
