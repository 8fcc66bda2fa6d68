"""The caller's own account: who they are, their password, MFA enrolment and codes, logout.

Each change that a stolen access token must not make asks for the password again
(:meth:`LoginService.reauthenticate`, whose failures count towards the lockout),
and each is audited here, through the caller's :class:`~shared.security.actor.Actor`.
"""

from __future__ import annotations

from control_center.login import LoginService
from control_center.mfa import Enrolment, MfaService
from control_center.sessions import SessionService
from control_center.users import User, UserService
from shared.errors import NotFound, Unauthorized
from shared.security.actor import Actor
from shared.security.audit import AuditLog
from shared.security.auth import ANONYMOUS
from shared.security.tokens import MFA_SETUP_SCOPE


class ProfileService:
    """What a user does to their own account."""

    def __init__(
        self,
        users: UserService,
        mfa: MfaService,
        login: LoginService,
        sessions: SessionService,
        audit: AuditLog,
    ) -> None:
        self.users = users
        self.mfa = mfa
        self.login = login
        self.sessions = sessions
        self.audit = audit

    async def current(self, actor: Actor) -> User:
        """The stored user behind the actor's token; 401 if it is gone or disabled."""
        try:
            user = await self.users.get((actor.principal or ANONYMOUS).user_id)
        except NotFound:
            raise Unauthorized("the user of this token no longer exists") from None
        if not user.enabled:
            raise Unauthorized("this account is disabled")
        return user

    async def change_password(self, actor: Actor, current: str, new: str) -> None:
        """Change one's own password; the caller's other sessions end."""
        user = await self.current(actor)
        await self.users.change_own_password(user.id, current, new, keep_session=_session_id(actor))
        await self.audit.record_as(actor, "users.password_changed", f"users/{user.id}", "success")

    async def logout(self, actor: Actor, refresh_token: str | None = None) -> None:
        """End this session: its refresh token and every access token it issued stop working.

        ``refresh_token`` (the console's cookie) ends its session too, if it is the
        caller's: the one a token without a session cannot name, or one that differs."""
        principal = actor.principal or ANONYMOUS
        sid = principal.claims.get("sid")
        if sid:
            await self.sessions.revoke(str(sid), reason="logout", user_id=principal.user_id)
        holder = await self.sessions.holder_of(refresh_token) if refresh_token else None
        if holder is not None and holder[0] != sid and holder[1] == principal.user_id:
            await self.sessions.revoke(holder[0], reason="logout", user_id=principal.user_id)
            sid = sid or holder[0]
        if principal.token_id and principal.expires_at:
            await self.sessions.revoke_token(principal.token_id, principal.expires_at)
        await self.audit.record_as(actor, "auth.logout", f"sessions/{sid}", "success")

    async def mfa_setup(self, actor: Actor, password: str) -> Enrolment:
        """Start TOTP enrolment; an account that must use MFA enrols only with the setup
        token of a fresh login."""
        user = await self.current(actor)
        self.mfa.check_enrolment(user, with_setup_token=_with_setup_token(actor))
        await self.login.reauthenticate(actor, user, password=password)
        enrolment = await self.mfa.setup(user)
        await self.audit.record_as(actor, "auth.mfa_setup", f"users/{user.id}", "success")
        return enrolment

    async def mfa_enable(self, actor: Actor, password: str, code: str) -> list[str]:
        """Finish enrolment with a first code; returns the backup codes (shown once). A
        setup token has done its work then, and stops working."""
        user = await self.current(actor)
        with_setup_token = _with_setup_token(actor)
        self.mfa.check_enrolment(user, with_setup_token=with_setup_token)
        await self.login.reauthenticate(actor, user, password=password)
        codes = await self.mfa.enable(user, code)
        principal = actor.principal or ANONYMOUS
        if with_setup_token and principal.token_id and principal.expires_at:
            await self.sessions.revoke_token(principal.token_id, principal.expires_at)
        await self.audit.record_as(actor, "auth.mfa_enabled", f"users/{user.id}", "success")
        return codes

    async def mfa_disable(self, actor: Actor, password: str, code: str) -> None:
        user = await self.current(actor)
        await self.login.reauthenticate(actor, user, password=password)
        await self.mfa.disable(user, code)
        await self.audit.record_as(actor, "auth.mfa_disabled", f"users/{user.id}", "success")

    async def regenerate_backup_codes(self, actor: Actor, password: str, code: str) -> list[str]:
        user = await self.current(actor)
        await self.login.reauthenticate(actor, user, password=password)
        codes = await self.mfa.regenerate_backup_codes(user, code)
        await self.audit.record_as(actor, "auth.mfa_backup_codes", f"users/{user.id}", "success")
        return codes


def _session_id(actor: Actor) -> str | None:
    sid = (actor.principal or ANONYMOUS).claims.get("sid")
    return str(sid) if sid else None


def _with_setup_token(actor: Actor) -> bool:
    return (actor.principal or ANONYMOUS).claims.get("scope") == MFA_SETUP_SCOPE
