"""Sessions and refresh tokens.

A login opens a session. Its refresh token is random, stored only as a
SHA-256, valid for ``refresh_token_ttl_s`` and rotated on every use: the spent
one is marked used and a new one is issued. Presenting a spent refresh token
again means someone kept a copy, so the whole session is revoked (OAuth 2.0
Security BCP, refresh token rotation). Revoking a session also denylists its
id, which refuses every access token issued under it until they expire, and
announces ``SessionRevoked`` on the bus: every open event stream of the
session closes at once (shared/events/streams.py), not at its next heartbeat.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from control_center.events import EventType
from control_center.repositories import SessionRepository
from shared.errors import ProvisioningError, Unauthorized
from shared.events.bus import EventBus
from shared.security.backend import Security
from shared.security.tokens import CLOCK_SKEW_S, utcnow
from shared.settings import Settings
from shared.store.store import Store

log = logging.getLogger(__name__)

REFRESH_TOKEN_BYTES = 32


def hash_refresh_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class OpenedSession:
    session_id: str
    refresh_token: str
    refresh_expires_at: datetime


@dataclass(frozen=True)
class Rotation:
    """A refresh that succeeded: the session, its user and the next refresh token."""

    session: dict[str, Any]
    refresh_token: str
    refresh_expires_at: datetime


class RefreshTokenReused(Unauthorized):
    """A spent refresh token came back: the session has been revoked."""

    code = "refresh_token_reused"


class SessionService:
    def __init__(self, store: Store, security: Security, settings: Settings, bus: EventBus) -> None:
        self.repo = SessionRepository(store)
        self.security = security
        self.settings = settings
        self.bus = bus

    def _new_refresh(
        self,
        session_id: str,
        user_id: str,
        now: datetime,
    ) -> tuple[str, datetime, dict[str, Any]]:
        token = secrets.token_urlsafe(REFRESH_TOKEN_BYTES)
        expires = now + timedelta(seconds=self.settings.refresh_token_ttl_s)
        row = {
            "id": hash_refresh_token(token),
            "session_id": session_id,
            "user_id": user_id,
            "created_at": now,
            "expires_at": expires,
        }
        return token, expires, row

    async def open(
        self,
        user_id: str,
        amr: list[str],
        ip: str,
        user_agent: str,
    ) -> OpenedSession:
        now = utcnow()
        session_id = uuid.uuid4().hex
        token, expires, refresh_row = self._new_refresh(session_id, user_id, now)
        await self.repo.store.write(
            self.repo.create(
                {
                    "id": session_id,
                    "user_id": user_id,
                    "amr": amr,
                    "created_at": now,
                    "last_used_at": now,
                    "expires_at": expires,
                    "ip": ip,
                    "user_agent": user_agent[:200],
                }
            ),
            self.repo.add_refresh_token(refresh_row),
        )
        return OpenedSession(session_id, token, expires)

    async def active(self, session_id: str | None) -> dict[str, Any]:
        """The session if it is neither revoked nor expired, else ``Unauthorized``."""
        session = await self.repo.get(session_id) if session_id else None
        if session is None or session.get("revoked_at") is not None or session["expires_at"] <= utcnow():
            raise Unauthorized("the session has ended; log in again")
        return session

    async def rotate(self, refresh_token: str) -> Rotation:
        """Spend a refresh token and issue the next; a spent one revokes the session."""
        token_hash = hash_refresh_token(refresh_token)
        row = await self.repo.refresh_token(token_hash)
        now = utcnow()
        if row is None:
            raise Unauthorized("the refresh token is not valid")
        if row.get("used_at") is not None:
            await self.revoke(row["session_id"], reason="refresh_token_reused", user_id=row.get("user_id"))
            raise RefreshTokenReused(
                "this refresh token was already used; the session has been revoked",
                details={"session_id": row["session_id"]},
            )
        if row["expires_at"] <= now:
            raise Unauthorized("the refresh token has expired; log in again")
        session = await self.active(row["session_id"])
        token, expires, new_row = self._new_refresh(session["id"], row["user_id"], now)
        spent, *_ = await self.repo.store.write(
            self.repo.use_refresh_token(token_hash, now),
            self.repo.add_refresh_token(new_row),
            self.repo.merge(session["id"], {"last_used_at": now, "expires_at": expires}),
        )
        if not spent:  # a concurrent refresh spent it first: treat as reuse
            await self.revoke(session["id"], reason="refresh_token_reused", user_id=row.get("user_id"))
            raise RefreshTokenReused(
                "this refresh token was already used; the session has been revoked",
                details={"session_id": session["id"]},
            )
        return Rotation(session, token, expires)

    async def holder_of(self, refresh_token: str) -> tuple[str, str] | None:
        """``(session id, user id)`` of a refresh token, spent or not; None if unknown."""
        row = await self.repo.refresh_token(hash_refresh_token(refresh_token))
        if row is None:
            return None
        return str(row["session_id"]), str(row.get("user_id"))

    async def touch(self, session_id: str) -> None:
        await self.repo.store.write(self.repo.merge(session_id, {"last_used_at": utcnow()}))

    async def revoke(self, session_id: str, *, reason: str, user_id: str | None = None) -> None:
        """End a session: refresh refused, its access tokens denylisted, its streams closed."""
        now = utcnow()
        await self.repo.store.write(
            self.repo.merge(session_id, {"revoked_at": now, "revoked_reason": reason})
        )
        await self.security.revoke(until=self._access_horizon(now), sid=session_id)
        self.bus.publish(
            EventType.SESSION_REVOKED, {"session_id": session_id, "user_id": user_id, "reason": reason}
        )

    async def revoke_all(self, user_id: str, *, reason: str, keep: str | None = None) -> int:
        """End every open session of a user (but ``keep``); returns how many."""
        sessions = await self.repo.open_for_user(user_id, utcnow())
        ended = 0
        for session in sessions:
            if session["id"] != keep:
                await self.revoke(session["id"], reason=reason, user_id=user_id)
                ended += 1
        return ended

    async def purge_expired(self, chunk: int) -> int:
        """Forget the sessions, refresh tokens and token revocations nobody can use any
        more, ``chunk`` of each per commit so other writes go in between; how many went."""
        total = 0
        while True:
            results = await self.repo.store.write(*self.repo.purge_expired(utcnow(), chunk))
            gone = [int(n or 0) for n in results]
            total += sum(gone)
            if max(gone) < chunk:
                break
        return total + await self.security.revocations.purge_expired(chunk)

    async def purge_forever(self) -> None:
        """:meth:`purge_expired` in the background while the service runs: first
        ``retention_start_delay_s`` after start (never in the start's path, where a year of
        logins would be deleted before the service answers), then every
        ``expired_purge_interval_s``. A failed pass is logged and tried again at the next."""
        await asyncio.sleep(self.settings.retention_start_delay_s)
        while True:
            try:
                gone = await self.purge_expired(self.settings.retention_chunk)
                if gone:
                    log.info("purged expired sessions, refresh tokens and revocations", extra={"rows": gone})
            except ProvisioningError as exc:
                log.warning("could not purge expired sessions", extra={"error": str(exc)})
            await asyncio.sleep(self.settings.expired_purge_interval_s)

    async def forget_user(self, user_id: str) -> None:
        await self.revoke_all(user_id, reason="user_deleted")
        await self.repo.store.write(*self.repo.delete_for_user(user_id))

    async def revoke_token(self, jti: str, expires_at: float) -> None:
        """Denylist one access token until it expires."""
        until = datetime.fromtimestamp(expires_at + CLOCK_SKEW_S, tz=utcnow().tzinfo)
        await self.security.revoke(until=until, jti=jti)

    def _access_horizon(self, now: datetime) -> datetime:
        # No access token issued before ``now`` outlives this.
        return now + timedelta(seconds=self.settings.access_token_ttl_s + CLOCK_SKEW_S)
