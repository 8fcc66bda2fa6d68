"""Who a token may stand for: a user that exists, is enabled and holds every role claimed.

A signature proves only that the token came from someone holding the signing
key. Before a verified token is honoured, its subject is looked up: the user
must exist, be enabled, carry the token's username and hold each of its roles.
So a token minted for an invented user, for a disabled one, or claiming
``admin`` for a viewer is refused (401) even though its signature is good.

The lookup is cached per user so the request path stays a dictionary read. An
entry is dropped at once when the control center changes, disables or deletes
that user (:meth:`Subjects.forget`); processes that share only the database
re-read every cached user in one query on their ``auth_sync_s`` loop
(:meth:`Subjects.refresh`), and an entry is never trusted longer than
:data:`SUBJECT_TTL_S`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from shared.errors import Unauthorized
from shared.security.auth import Principal
from shared.security.repositories import SubjectRepository

SUBJECT_TTL_S = 30.0  # the longest a looked-up user is trusted without a new look
MAX_ENTRIES = 20_000
REFUSED = "the token's user does not exist, is disabled or does not hold the roles it claims"


@dataclass(frozen=True)
class Subject:
    """A user as far as tokens care."""

    user_id: str
    username: str
    roles: frozenset[str]
    enabled: bool

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Subject:
        return cls(
            user_id=str(row["id"]),
            username=str(row.get("username", "")),
            roles=frozenset(str(r) for r in row.get("roles") or ()),
            enabled=bool(row.get("enabled", True)),
        )

    def admits(self, principal: Principal) -> bool:
        return (
            self.enabled
            and self.username == principal.username
            and all(role in self.roles for role in principal.roles)
        )


class Subjects:
    """The per-user cache behind the subject check."""

    def __init__(self, ttl_s: float = SUBJECT_TTL_S) -> None:
        self.ttl_s = ttl_s
        self._repo: SubjectRepository | None = None
        # user id -> (the user, or None if there is none; monotonic time it was read)
        self._cache: dict[str, tuple[Subject | None, float]] = {}
        self._generation: dict[str, int] = {}  # bumped by forget(): a read in flight is stale

    def bind(self, repo: SubjectRepository) -> None:
        self._repo = repo

    def admits(self, principal: Principal) -> bool:
        """The fast path: True only if a fresh cached entry admits the principal."""
        entry = self._cache.get(principal.user_id)
        if entry is None or entry[0] is None or time.monotonic() - entry[1] > self.ttl_s:
            return False
        return entry[0].admits(principal)

    async def check(self, principal: Principal) -> None:
        """Refuse (401) a principal whose user is missing, disabled or lacks a claimed role."""
        if self.admits(principal):
            return
        entry = self._cache.get(principal.user_id)
        if entry is None or time.monotonic() - entry[1] > self.ttl_s:
            subject = (await self._load([principal.user_id])).get(principal.user_id)
        else:
            subject = entry[0]
        if subject is None or not subject.admits(principal):
            raise Unauthorized(REFUSED, details={"reason": "subject"}, reason="subject")

    async def get(self, user_id: str) -> Subject | None:
        """The user as it is now (a fresh cached entry, else read), or None if there is none."""
        entry = self._cache.get(user_id)
        if entry is not None and time.monotonic() - entry[1] <= self.ttl_s:
            return entry[0]
        return (await self._load([user_id])).get(user_id)

    def forget(self, user_id: str) -> None:
        """The user changed: look again at the next request."""
        self._cache.pop(user_id, None)
        self._generation[user_id] = self._generation.get(user_id, 0) + 1

    async def refresh(self) -> None:
        """Re-read every cached user in one query (what another process may have changed)."""
        if self._cache:
            await self._load(list(self._cache))

    async def _load(self, user_ids: list[str]) -> dict[str, Subject | None]:
        if self._repo is None:
            raise Unauthorized("tokens cannot be checked: security is not started")
        generations = {uid: self._generation.get(uid, 0) for uid in user_ids}
        rows = await self._repo.users(user_ids)
        found: dict[str, Subject | None] = dict.fromkeys(user_ids)
        for row in rows:
            user = Subject.from_row(row)
            found[user.user_id] = user
        now = time.monotonic()
        if len(self._cache) + len(found) > MAX_ENTRIES:
            self._cache.clear()
        for uid, subject in found.items():
            if self._generation.get(uid, 0) == generations[uid]:  # not changed while we read
                self._cache[uid] = (subject, now)
        return found
