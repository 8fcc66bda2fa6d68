"""Hashes and checks in a forked child (``password_hash_in_child``, the product's
default; the rest of the suite hashes in a thread, see ``tests/conftest.py``): the
child answers what the function returned or raised, and a hash made there checks
here and the other way round."""

from __future__ import annotations

from pathlib import Path

import pytest

from control_center.passwords import PasswordHasher, in_child
from shared.settings import load_settings
from tests.helpers.services import FAST_ARGON2


def hasher(tmp_path: Path, *, child: bool) -> PasswordHasher:
    """Argon2 at the suite's cheap cost: where the hash is made is tested, not its cost (the
    default's 64 MiB twice over made six hashes and checks take ~1.8 s)."""
    settings = load_settings(db_url="mem://", data_dir=tmp_path, password_hash_in_child=child, **FAST_ARGON2)
    return PasswordHasher(settings)


async def test_a_hash_made_in_a_child_checks_there_and_in_the_service(tmp_path: Path) -> None:
    forked, threaded = hasher(tmp_path, child=True), hasher(tmp_path, child=False)
    assert forked.in_child and not threaded.in_child
    hashed = await forked.hash("Correct-horse-9")
    assert hashed.startswith("$argon2id$")
    assert await forked.verify("Correct-horse-9", hashed)
    assert not await forked.verify("Wrong-horse-9", hashed)
    assert not await forked.verify("Correct-horse-9", "not a hash")  # the child's ValueError
    assert not await forked.verify("Correct-horse-9", None)  # an unknown user: the dummy hash
    assert await threaded.verify("Correct-horse-9", hashed)
    assert await forked.verify("Other-horse-9", await threaded.hash("Other-horse-9"))


def test_the_child_answers_what_the_function_returned_or_raised() -> None:
    assert in_child(str.upper, "abc") == "ABC"
    with pytest.raises(ValueError, match="invalid literal"):
        in_child(int, "not a number")
    with pytest.raises(RuntimeError, match="ended with status"):
        in_child(lambda text: 1 / len(text[:0]), "anything")  # ZeroDivisionError: not answered
