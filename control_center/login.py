"""Logging in: password, lockout, MFA, then a session and its tokens.

A failed login never says whether the user exists, is locked or is disabled:
every refusal is the same 401 and costs the same argon2 verify. Consecutive
failures (wrong password or wrong code) lock the account for ``lockout_s``
after ``lockout_threshold`` of them; a success resets the count. Every outcome
is audited and announced (``UserLogin``, ``LoginFailed``) after it is stored.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

from control_center.mfa import MfaService
from control_center.passwords import PasswordHasher
from control_center.repositories import UserRepository
from control_center.sessions import SessionService
from control_center.users import User, UserService
from shared.audit import audit_event
from shared.errors import Unauthorized
from shared.events import EventBus
from shared.security import Security
from shared.settings import Settings
from shared.store import Store
from shared.tokens import MFA_SETUP_SCOPE, utcnow

log = logging.getLogger(__name__)

LOGIN_REFUSED = "invalid username, password or MFA code"


class MfaRequired(Unauthorized):
    """The password was right; the account needs a code too."""

    code = "mfa_required"


@dataclass(frozen=True)
class LoginResult:
    """Either tokens, or (MFA enrolment pending) a setup token."""

    user: User
    token: str | None = None
    expires_at: datetime | None = None
    refresh_token: str | None = None
    refresh_expires_at: datetime | None = None
    setup_token: str | None = None

    def to_json(self) -> dict[str, Any]:
        if self.setup_token is not None:
            return {
                "mfa_setup_required": True,
                "setup_token": self.setup_token,
                "expires_at": self.expires_at,
                "user": self.user.summary(),
            }
        return {
            "token": self.token,
            "expires_at": self.expires_at,
            "refresh_token": self.refresh_token,
            "refresh_expires_at": self.refresh_expires_at,
            "user": self.user.summary(),
        }


class LoginService:
    def __init__(
        self,
        store: Store,
        settings: Settings,
        security: Security,
        hasher: PasswordHasher,
        users: UserService,
        mfa: MfaService,
        sessions: SessionService,
        bus: EventBus,
    ) -> None:
        self.repo = UserRepository(store)
        self.settings = settings
        self.security = security
        self.hasher = hasher
        self.users = users
        self.mfa = mfa
        self.sessions = sessions
        self.bus = bus

    async def login(
        self, request: web.Request, *, ip: str, username: str, password: str, mfa_code: str | None
    ) -> LoginResult:
        user = await self.users.find(username)
        now = utcnow()
        if user is None:
            await self.hasher.waste_time(password)
            await self._refuse(request, None, username, "unknown_user")
        assert user is not None
        if user.locked(now):
            await self.hasher.waste_time(password)
            await self._refuse(request, user, username, "locked")
        if not await self.hasher.verify(password, user.password_hash):
            await self._fail(request, user, "wrong_password")
        if not user.enabled:
            await self._refuse(request, user, username, "disabled")
        if user.mfa_enabled:
            if not mfa_code:
                await audit_event(
                    request,
                    "auth.login",
                    f"users/{user.id}",
                    "failure",
                    user_id=user.id,
                    username=user.username,
                    details={"reason": "mfa_code_missing"},
                )
                raise MfaRequired(
                    "this account uses MFA: send mfa_code (a TOTP code or a backup code)",
                    details={"mfa_required": True},
                )
            kind = await self.mfa.consume(user, mfa_code)
            if kind is None:
                await self._fail(request, user, "wrong_mfa_code")
            amr = ["pwd", "otp"]
            method = kind
        elif self.mfa.required_for(user):
            return await self._enrolment(request, user)
        else:
            amr, method = ["pwd"], "password"
        return await self._succeed(request, user, amr, str(method), ip, password)

    async def _enrolment(self, request: web.Request, user: User) -> LoginResult:
        issued = self.security.tokens.issue(
            user_id=user.id,
            username=user.username,
            roles=user.roles,
            amr=["pwd"],
            session_id=None,
            scope=MFA_SETUP_SCOPE,
            ttl_s=self.settings.mfa_setup_token_ttl_s,
        )
        await audit_event(
            request,
            "auth.login",
            f"users/{user.id}",
            "mfa_setup_required",
            user_id=user.id,
            username=user.username,
        )
        return LoginResult(user, expires_at=issued.expires_at, setup_token=issued.token)

    async def _succeed(
        self, request: web.Request, user: User, amr: list[str], method: str, ip: str, password: str
    ) -> LoginResult:
        patch: dict[str, Any] = {"last_login": utcnow(), "failed_logins": 0}
        if self.hasher.needs_update(user.password_hash):
            patch["password_hash"] = await self.hasher.hash(password)
            log.info("upgraded a password hash to the current argon2 parameters", extra={"user_id": user.id})
        opened = await self.sessions.open(user.id, amr, ip, request.headers.get("User-Agent", ""))
        writes = [self.repo.merge(user.id, patch), self.repo.unset(user.id, ["locked_until"])]
        await self.repo.store.write(*writes)
        issued = self.security.tokens.issue(
            user_id=user.id, username=user.username, roles=user.roles, amr=amr, session_id=opened.session_id
        )
        await audit_event(
            request,
            "auth.login",
            f"users/{user.id}",
            "success",
            user_id=user.id,
            username=user.username,
            details={"method": method, "session_id": opened.session_id},
        )
        self.bus.publish("UserLogin", {"user_id": user.id, "username": user.username, "mfa": "otp" in amr})
        return LoginResult(
            user,
            token=issued.token,
            expires_at=issued.expires_at,
            refresh_token=opened.refresh_token,
            refresh_expires_at=opened.refresh_expires_at,
        )

    async def _fail(self, request: web.Request, user: User, reason: str) -> None:
        """A wrong secret for a real account: count it, lock at the threshold, refuse."""
        [rows] = await self.repo.store.write(self.repo.add_failure(user.id))
        failures = int(rows[0]["failed_logins"]) if rows else 0
        threshold = self.settings.lockout_threshold
        if threshold > 0 and failures >= threshold:
            until = utcnow() + timedelta(seconds=self.settings.lockout_s)
            await self.repo.store.write(self.repo.merge(user.id, {"locked_until": until, "failed_logins": 0}))
            await audit_event(
                request,
                "auth.lockout",
                f"users/{user.id}",
                "success",
                user_id=user.id,
                username=user.username,
                details={
                    "failures": failures,
                    "locked_until": until.isoformat(),
                    "lockout_s": self.settings.lockout_s,
                },
            )
        await self._refuse(request, user, user.username, reason, details={"consecutive_failures": failures})

    async def _refuse(
        self,
        request: web.Request,
        user: User | None,
        username: str,
        reason: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        facts = {"reason": reason, "username": username, **(details or {})}
        await audit_event(
            request,
            "auth.login",
            f"users/{user.id}" if user else "users",
            "failure",
            user_id=user.id if user else None,
            username=user.username if user else None,
            details=facts,
        )
        self.bus.publish("LoginFailed", {"username": username, "user_id": user.id if user else None})
        raise Unauthorized(LOGIN_REFUSED)
