"""API tokens for automation and AI assistants: create, list and revoke (``/auth/tokens``).

A user creates tokens for themself from a session: never from another API token,
and, when the user's role requires MFA, only from a session opened with MFA (so a
stolen password alone cannot mint a token that needs no code). The token is shown
once; the store keeps its SHA-256 (``shared/security/api_tokens.py`` verifies it).
Optional scopes narrow a token to ``resource:action`` pairs the user's roles may be
granted; a scope the user could never hold is refused, and every use is still decided
by the policy for the user as they are then, so a token never exceeds its user.

The owner lists and revokes their own tokens; whoever holds ``tokens:manage`` (admins)
lists everyone's and revokes any. Revocation denylists the token at once in every
service sharing the store, and within ``auth_sync_s`` in the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from control_center.events import EventType
from control_center.users import UserService
from shared.errors import Conflict, Forbidden, NotFound, StoreError, ValidationFailed
from shared.events.bus import EventBus
from shared.security.actor import Actor
from shared.security.api_tokens import TOKEN_TYPE, digest, display_prefix, jti_of, new_token, parse_scope
from shared.security.auth import ANONYMOUS, Principal
from shared.security.backend import Security, subjects_of
from shared.security.repositories import ApiTokenRepository
from shared.security.tokens import CLOCK_SKEW_S, utcnow
from shared.settings import Settings
from shared.store.store import Store

MANAGE = ("tokens", "manage")  # the permission to see and revoke other users' tokens
CREATE_ATTEMPTS = 3  # a new key that collides with an existing one is drawn again


@dataclass(frozen=True)
class ApiToken:
    """A token as stored (never its secret)."""

    id: str
    name: str
    user_id: str
    username: str
    scopes: tuple[str, ...] | None
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None
    uses: int = 0
    mfa: bool = False

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> ApiToken:
        scopes = row.get("scopes")
        return cls(
            id=str(row["id"]),
            name=str(row.get("name", "")),
            user_id=str(row["user_id"]),
            username=str(row.get("username", "")),
            scopes=None if scopes is None else tuple(str(s) for s in scopes),
            created_at=row["created_at"],
            expires_at=row["expires_at"],
            revoked_at=row.get("revoked_at"),
            last_used_at=row.get("last_used_at"),
            uses=int(row.get("uses") or 0),
            mfa=bool(row.get("mfa")),
        )

    @property
    def prefix(self) -> str:
        return display_prefix(self.id)


@dataclass(frozen=True)
class CreatedToken:
    record: ApiToken
    token: str  # shown once


class ApiTokenService:
    """Create, list and revoke API tokens on behalf of an actor."""

    def __init__(
        self, store: Store, settings: Settings, security: Security, users: UserService, bus: EventBus
    ) -> None:
        self.repo = ApiTokenRepository(store)
        self.settings = settings
        self.security = security
        self.users = users
        self.bus = bus

    async def create(
        self, actor: Actor, *, name: str, expires_in_days: int, scopes: list[str] | None
    ) -> CreatedToken:
        principal = actor.principal or ANONYMOUS
        if principal.claims.get("token_type") == TOKEN_TYPE or not principal.claims.get("sid"):
            raise Forbidden(
                "API tokens are created from a login session, not with another token",
                details={"reason": "session_required"},
            )
        user = await self.users.get(principal.user_id)
        if not principal.mfa and (
            user.mfa_enabled or any(r in self.settings.mfa_required_roles for r in user.roles)
        ):
            raise Forbidden(
                "creating an API token needs a session opened with MFA: log in with your code",
                details={"reason": "mfa_required"},
            )
        if expires_in_days > self.settings.api_token_max_days:
            raise ValidationFailed(
                f"expires_in_days may be at most {self.settings.api_token_max_days}",
                details={"fields": [{"field": "expires_in_days", "message": "too long"}]},
            )
        if scopes is not None:
            self._check_scopes(principal, scopes)
        now = utcnow()
        if await self.repo.active_count(user.id, now) >= self.settings.api_tokens_per_user:
            raise Conflict(
                f"{user.username} already holds {self.settings.api_tokens_per_user} active API tokens; "
                "revoke one first"
            )
        row: dict[str, Any] = {
            "name": name,
            "user_id": user.id,
            "username": user.username,
            "created_at": now,
            "expires_at": now + timedelta(days=expires_in_days),
            "mfa": principal.mfa,
            "uses": 0,
            "created_from": principal.claims.get("sid"),
        }
        if scopes is not None:
            row["scopes"] = list(dict.fromkeys(scopes))
        for attempt in range(CREATE_ATTEMPTS):
            key, token = new_token()
            try:
                await self.repo.store.write(self.repo.create(key, {**row, "hash": digest(token)}))
            except StoreError:
                if attempt + 1 == CREATE_ATTEMPTS:
                    raise
                continue
            record = ApiToken.from_row({**row, "id": key})
            await self.security.audit.record_as(
                actor,
                "auth.api_token.create",
                f"api_token:{key}",
                "success",
                details={
                    "token": record.prefix,
                    "name": name,
                    "scopes": row.get("scopes"),
                    "days": expires_in_days,
                },
            )
            return CreatedToken(record, token)
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _check_scopes(self, principal: Principal, scopes: list[str]) -> None:
        """Each scope must be one the user's roles may be granted (conditions decide at use)."""
        engine = self.security.policy
        subjects = subjects_of(principal)
        bad = []
        for index, scope in enumerate(scopes):
            resource, action = parse_scope(scope)
            if engine.plan(subjects, resource, action).decision is False:
                bad.append({"field": f"scopes.{index}", "message": f"{scope} is not granted to you"})
        if bad:
            raise ValidationFailed(
                "a token's scopes must lie within your own rights: "
                + ", ".join(f"{b['field']} ({b['message']})" for b in bad),
                details={"fields": bad},
            )

    def manages(self, actor: Actor) -> bool:
        """Whether the actor may see and revoke other users' tokens."""
        principal = actor.principal or ANONYMOUS
        return self.security.policy.plan(subjects_of(principal), *MANAGE).decision is True

    async def page(
        self, actor: Actor, *, user_id: str | None, everyone: bool, active: bool, limit: int, offset: int
    ) -> tuple[list[ApiToken], int]:
        """The caller's tokens; with ``tokens:manage`` another user's (``user_id``) or all."""
        principal = actor.principal or ANONYMOUS
        if (everyone or (user_id is not None and user_id != principal.user_id)) and not self.manages(actor):
            raise Forbidden(
                "listing other users' API tokens needs tokens:manage",
                details={"resource": MANAGE[0], "action": MANAGE[1]},
            )
        owner = None if everyone and user_id is None else (user_id or principal.user_id)
        rows, total = await self.repo.page(
            user_id=owner, active_at=utcnow() if active else None, limit=limit, offset=offset
        )
        return [ApiToken.from_row(r) for r in rows], total

    async def revoke(self, actor: Actor, token_id: str) -> ApiToken:
        """Revoke a token (the owner, or with ``tokens:manage``): refused from now on."""
        principal = actor.principal or ANONYMOUS
        row = await self.repo.get(token_id)
        if row is None or (row["user_id"] != principal.user_id and not self.manages(actor)):
            raise NotFound(f"no API token with id {token_id}")
        record = ApiToken.from_row(row)
        if record.revoked_at is not None:
            raise Conflict(f"the API token {record.prefix} is already revoked")
        now = utcnow()
        [changed] = await self.repo.store.write(self.repo.revoke(token_id, now, principal.username))
        if not changed:
            raise Conflict(f"the API token {record.prefix} is already revoked")
        until = max(record.expires_at, now) + timedelta(seconds=CLOCK_SKEW_S)
        await self.security.revoke(until=until, jti=jti_of(token_id))
        # Its open streams end now, not at their next heartbeat (the token's "session" is its jti).
        self.bus.publish(
            EventType.SESSION_REVOKED,
            {"session_id": jti_of(token_id), "user_id": None, "reason": "api_token_revoked"},
        )
        await self.security.audit.record_as(
            actor,
            "auth.api_token.revoke",
            f"api_token:{token_id}",
            "success",
            details={"key_prefix": record.prefix, "owner": record.username},
        )
        return ApiToken.from_row({**row, "revoked_at": now})
