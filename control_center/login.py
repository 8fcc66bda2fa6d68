"""Logging in: password, lockout, MFA, then a session and its tokens.

A failed login never says whether the user exists, is locked or is disabled:
every refusal is the same 401 and costs the same argon2 verify. Every outcome
is audited and announced (``UserLogin``, ``LoginFailed``) after it is stored.

Lockout. Consecutive failures (wrong password or wrong code) are counted per
(account, client address): at ``lockout_threshold`` the account is locked for
``lockout_s``, but only for that address, so whoever guesses from one address
cannot lock the owner out everywhere. All addresses together lock the account
everywhere only at ``lockout_account_threshold`` (much higher: a guesser with
many addresses). The last enabled admin is never locked out when logging in
from ``lockout_trusted_addresses`` (default: loopback), so the host can always
recover. A success from an address clears that address's count and the
account's.

An unknown username may be a password typed into the wrong field: audit
records and ``LoginFailed`` keep only its first two characters and a SHA-256
prefix (:func:`masked_username`), never the text.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from control_center.events import EventType
from control_center.mfa import MfaService
from control_center.passwords import PasswordHasher
from control_center.repositories import UserRepository
from control_center.sessions import RefreshTokenReused, SessionService
from control_center.users import Role, User, UserService
from shared.errors import NotFound, Unauthorized
from shared.events.bus import EventBus
from shared.security.actor import Actor
from shared.security.backend import Security
from shared.security.tokens import MFA_SETUP_SCOPE, utcnow
from shared.settings import Settings
from shared.store.store import Store

log = logging.getLogger(__name__)

LOGIN_REFUSED = "invalid username, password or MFA code"
PASSWORD_REFUSED = "the password is not correct"
MASK_PREFIX_CHARS = 2
MASK_DIGEST_CHARS = 12


def masked_username(username: str) -> str:
    """What is kept of a username that matched no account: ``"ad…sha256:3f0c…"``.

    Enough to tell repeated attempts apart and to recognise a mistyped name,
    not enough to read a password someone typed into the username field."""
    digest = hashlib.sha256(username.encode("utf-8", "surrogatepass")).hexdigest()[:MASK_DIGEST_CHARS]
    return f"{username[:MASK_PREFIX_CHARS]}…sha256:{digest}"


def address_in(ip: str, networks: tuple[str, ...]) -> bool:
    """Whether ``ip`` is one of ``networks`` (addresses or CIDRs); False for what is no address."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    for network in networks:
        try:
            if address in ipaddress.ip_network(network, strict=False):
                return True
        except ValueError:
            continue
    return False


class MfaRequired(Unauthorized):
    """The password was right; the account needs a code too."""

    code = "mfa_required"


@dataclass(frozen=True)
class LoginResult:
    """Either tokens, or (MFA enrolment pending) a setup token
    (``control_center.views.login_view`` shapes it)."""

    user: User
    token: str | None = None
    expires_at: datetime | None = None
    refresh_token: str | None = None
    refresh_expires_at: datetime | None = None
    setup_token: str | None = None


@dataclass(frozen=True)
class Refreshed:
    """A new access token; with the next refresh token when a refresh token was spent."""

    token: str
    expires_at: datetime
    refresh_token: str | None = None
    refresh_expires_at: datetime | None = None


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

    async def login(self, actor: Actor, *, username: str, password: str, mfa_code: str | None) -> LoginResult:
        """Password, lockout, MFA: tokens, or a setup token; else the one 401 (audited)."""
        ip = actor.ip or ""
        user = await self.users.find(username)
        if user is None:
            await self.hasher.waste_time(password)
            await self._refuse(actor, None, masked_username(username), "unknown_user")
        assert user is not None
        if await self._locked(user, ip):
            await self.hasher.waste_time(password)
            await self._refuse(actor, user, user.username, "locked")
        if not await self.hasher.verify(password, user.password_hash):
            await self._fail(actor, user, ip, "wrong_password")
        if not user.enabled:
            await self._refuse(actor, user, user.username, "disabled")
        if user.mfa_enabled:
            if not mfa_code:
                await self.security.audit.record_as(
                    actor,
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
                await self._fail(actor, user, ip, "wrong_mfa_code")
            amr = ["pwd", "otp"]
            method = kind
        elif self.mfa.required_for(user):
            return await self._enrolment(actor, user)
        else:
            amr, method = ["pwd"], "password"
        return await self._succeed(actor, user, amr, str(method), ip, password)

    async def reauthenticate(self, actor: Actor, user: User, *, password: str) -> None:
        """The account's password again, for a change that a stolen token must not make
        (MFA enrolment, disabling, backup codes). Failures count towards the lockout."""
        ip = actor.ip or ""
        if await self._locked(user, ip):
            await self.hasher.waste_time(password)
            await self._refuse(
                actor, user, user.username, "locked", action="auth.reauthenticate", message=PASSWORD_REFUSED
            )
        if not await self.hasher.verify(password, user.password_hash):
            await self._fail(
                actor, user, ip, "wrong_password", action="auth.reauthenticate", message=PASSWORD_REFUSED
            )

    async def refresh(
        self, actor: Actor, *, refresh_token: str | None = None, token: str | None = None
    ) -> Refreshed:
        """A new access token, from a refresh token (rotated) or a still valid access token.

        The access-token form (the seed's) never renews an expired token and never
        issues one that outlives the session: the session's lifetime is set by the
        refresh token, so renewing this way cannot keep a session alive forever."""
        tokens = self.security.tokens
        if refresh_token is not None:
            try:
                rotation = await self.sessions.rotate(refresh_token)
            except RefreshTokenReused as exc:
                session_id = exc.details.get("session_id")
                owner = await self._session_owner(session_id)
                await self.security.audit.record_as(
                    actor,
                    "auth.refresh_token_reused",
                    f"sessions/{session_id}",
                    "denied",
                    details={"session_id": session_id},
                    user_id=owner.id if owner else None,
                    username=owner.username if owner else None,
                )
                raise
            session = rotation.session
            user = await self._usable_user(session["user_id"], session["id"])
            issued = tokens.issue(
                user_id=user.id,
                username=user.username,
                roles=user.roles,
                amr=list(session.get("amr", ["pwd"])),
                session_id=session["id"],
            )
            refreshed = Refreshed(
                issued.token, issued.expires_at, rotation.refresh_token, rotation.refresh_expires_at
            )
        else:
            assert token is not None  # the request model asks for exactly one of them
            claims = await tokens.decode(token)
            sid = claims.get("sid")
            holder = (str(claims["sub"]), str(claims.get("username", claims["sub"])))  # signature checked
            if claims.get("scope") == MFA_SETUP_SCOPE or not sid:
                raise Unauthorized("this token cannot be refreshed", reason="not_refreshable", user=holder)
            # decode() allows a few seconds of clock skew; renewal allows none.
            if float(claims["exp"]) <= time.time():
                raise Unauthorized(
                    "the token has expired; use the refresh token or log in again",
                    reason="expired",
                    user=holder,
                )
            if self.security.revocations.is_revoked(claims["jti"], sid):
                raise Unauthorized("the token has been revoked", reason="revoked", user=holder)
            session = await self.sessions.active(sid)
            user = await self._usable_user(claims["sub"], sid)
            left_s = int((session["expires_at"] - utcnow()).total_seconds())
            if left_s < 1:
                raise Unauthorized("the session has ended; log in again")
            issued = tokens.issue(
                user_id=user.id,
                username=user.username,
                roles=user.roles,
                amr=list(claims.get("amr", ["pwd"])),
                session_id=session["id"],
                ttl_s=min(self.settings.access_token_ttl_s, left_s),
            )
            # The presented token is replaced, not joined: it stops working now.
            await self.sessions.revoke_token(claims["jti"], float(claims["exp"]))
            await self.sessions.touch(session["id"])
            refreshed = Refreshed(issued.token, issued.expires_at)
        await self.security.audit.record_as(
            actor,
            "auth.refresh",
            f"sessions/{session['id']}",
            "success",
            user_id=user.id,
            username=user.username,
            details={"with": "refresh_token" if refresh_token is not None else "token"},
        )
        return refreshed

    async def _session_owner(self, session_id: Any) -> User | None:
        """The user a session belongs to, for the audit record of its refresh token's reuse."""
        session = await self.sessions.repo.get(str(session_id)) if session_id else None
        try:
            return await self.users.get(session["user_id"]) if session else None
        except NotFound:
            return None

    async def _usable_user(self, user_id: str, session_id: str) -> User:
        """The session's user if it still exists and is enabled; else the session ends (401)."""
        try:
            user: User | None = await self.users.get(user_id)
        except NotFound:
            user = None
        if user is None or not user.enabled:
            await self.sessions.revoke(session_id, reason="user_unavailable", user_id=user_id)
            raise Unauthorized("the session has ended; log in again")
        return user

    async def _enrolment(self, actor: Actor, user: User) -> LoginResult:
        issued = self.security.tokens.issue(
            user_id=user.id,
            username=user.username,
            roles=user.roles,
            amr=["pwd"],
            session_id=None,
            scope=MFA_SETUP_SCOPE,
            ttl_s=self.settings.mfa_setup_token_ttl_s,
        )
        await self.security.audit.record_as(
            actor,
            "auth.login",
            f"users/{user.id}",
            "mfa_setup_required",
            user_id=user.id,
            username=user.username,
        )
        return LoginResult(user, expires_at=issued.expires_at, setup_token=issued.token)

    async def _succeed(
        self, actor: Actor, user: User, amr: list[str], method: str, ip: str, password: str
    ) -> LoginResult:
        patch: dict[str, Any] = {"last_login": utcnow(), "failed_logins": 0}
        if self.hasher.needs_update(user.password_hash):
            patch["password_hash"] = await self.hasher.hash(password)
            log.info("upgraded a password hash to the current argon2 parameters", extra={"user_id": user.id})
        opened = await self.sessions.open(user.id, amr, ip, actor.user_agent)
        await self.repo.store.write(
            self.repo.merge(user.id, patch),
            self.repo.unset(user.id, ["locked_until"]),
            self.repo.clear_address(user.id, ip),
        )
        issued = self.security.tokens.issue(
            user_id=user.id, username=user.username, roles=user.roles, amr=amr, session_id=opened.session_id
        )
        await self.security.audit.record_as(
            actor,
            "auth.login",
            f"users/{user.id}",
            "success",
            user_id=user.id,
            username=user.username,
            details={"method": method, "session_id": opened.session_id},
        )
        self.bus.publish(
            EventType.USER_LOGIN, {"user_id": user.id, "username": user.username, "mfa": "otp" in amr}
        )
        return LoginResult(
            user,
            token=issued.token,
            expires_at=issued.expires_at,
            refresh_token=opened.refresh_token,
            refresh_expires_at=opened.refresh_expires_at,
        )

    async def _locked(self, user: User, ip: str) -> bool:
        """Locked for this address, or everywhere; never the last admin on a trusted address."""
        now = utcnow()
        if not user.locked(now):
            until = await self.repo.address_lock(user.id, ip)
            if until is None or until <= now:
                return False
        return not await self._never_locked(user, ip)

    async def _never_locked(self, user: User, ip: str) -> bool:
        """The last enabled admin, from a trusted address: locking it would lock out the host."""
        return (
            user.enabled
            and Role.ADMIN in user.roles
            and address_in(ip, self.settings.lockout_trusted_addresses)
            and await self.repo.enabled_admins() <= 1
        )

    async def _fail(
        self,
        actor: Actor,
        user: User,
        ip: str,
        reason: str,
        *,
        action: str = "auth.login",
        message: str = LOGIN_REFUSED,
    ) -> None:
        """A wrong secret for a real account: count it, lock at a threshold, refuse."""
        now = utcnow()
        window_start = now - timedelta(seconds=self.settings.lockout_s)
        account_rows, address_rows, _ = await self.repo.store.write(
            self.repo.add_failure(user.id),
            self.repo.add_address_failure(user.id, ip, now, window_start),
            self.repo.clear_stale_failures(user.id, now, window_start),
        )
        account_failures = int(account_rows[0]["failed_logins"]) if account_rows else 0
        address_failures = int(address_rows[0]["failures"]) if address_rows else 0
        until = now + timedelta(seconds=self.settings.lockout_s)
        threshold = self.settings.lockout_threshold
        if threshold > 0 and address_failures >= threshold:
            await self.repo.store.write(self.repo.lock_address(user.id, ip, until))
            await self._audit_lockout(actor, user, "address", address_failures, until)
        ceiling = self.settings.lockout_account_threshold
        if ceiling > 0 and account_failures >= ceiling:
            await self.repo.store.write(self.repo.merge(user.id, {"locked_until": until, "failed_logins": 0}))
            await self._audit_lockout(actor, user, "account", account_failures, until)
        await self._refuse(
            actor,
            user,
            user.username,
            reason,
            details={"consecutive_failures": address_failures, "account_failures": account_failures},
            action=action,
            message=message,
        )

    async def _audit_lockout(
        self, actor: Actor, user: User, scope: str, failures: int, until: datetime
    ) -> None:
        await self.security.audit.record_as(
            actor,
            "auth.lockout",
            f"users/{user.id}",
            "success",
            user_id=user.id,
            username=user.username,
            details={
                "scope": scope,  # "address": for the client address only; "account": everywhere
                "failures": failures,
                "locked_until": until.isoformat(),
                "lockout_s": self.settings.lockout_s,
            },
        )

    async def _refuse(
        self,
        actor: Actor,
        user: User | None,
        username: str,
        reason: str,
        details: dict[str, Any] | None = None,
        *,
        action: str = "auth.login",
        message: str = LOGIN_REFUSED,
    ) -> None:
        """Audit, announce and raise the 401. ``username`` is the account's name, or the
        masked text of one that matched no account."""
        facts = {"reason": reason, "username": username, **(details or {})}
        await self.security.audit.record_as(
            actor,
            action,
            f"users/{user.id}" if user else "users",
            "failure",
            user_id=user.id if user else None,
            username=user.username if user else None,
            details=facts,
        )
        self.bus.publish(EventType.LOGIN_FAILED, {"username": username, "user_id": user.id if user else None})
        raise Unauthorized(message)
