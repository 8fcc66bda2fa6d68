"""``/auth/*``: login, refresh, logout, MFA enrolment and management; the JWKS."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from control_center.keys import LOGIN, MFA, SESSIONS, USERS
from control_center.models import (
    BACKUP_CODES,
    JWKS,
    LOGIN_RESULT,
    MFA_ENABLED,
    MFA_SETUP,
    REFRESH_RESULT,
    LoginRequest,
    MfaBackupCodes,
    MfaDisable,
    MfaEnable,
    MfaSetup,
    RefreshRequest,
)
from control_center.sessions import RefreshTokenReused
from control_center.users import User
from shared.errors import NotFound, Unauthorized
from shared.security.audit import audit_event
from shared.security.auth import principal_of
from shared.security.backend import SECURITY
from shared.security.tokens import MFA_SETUP_SCOPE, utcnow
from shared.web.client import client_ip
from shared.web.envelope import ok
from shared.web.keys import SETTINGS
from shared.web.routing import MESSAGE, Api

api = Api()
TAGS = ("auth",)


async def current_user(request: web.Request) -> User:
    """The stored user behind the request's token."""
    try:
        user = await request.app[USERS].get(principal_of(request).user_id)
    except NotFound:
        raise Unauthorized("the user of this token no longer exists") from None
    if not user.enabled:
        raise Unauthorized("this account is disabled")
    return user


@api.route(
    "POST",
    "/auth/login",
    public=True,
    resource="auth",
    action="login",
    body=LoginRequest,
    tags=TAGS,
    response=LOGIN_RESULT,
    errors=(401, 429),
)
async def login(request: web.Request, body: LoginRequest) -> web.Response:
    """Log in: tokens, or a setup token while MFA enrolment is pending."""
    ip = client_ip(request, request.app[SETTINGS].trusted_proxies)
    result = await request.app[LOGIN].login(
        request, ip=ip, username=body.username, password=body.password, mfa_code=body.mfa_code
    )
    return ok(result.to_json())


@api.route(
    "POST",
    "/auth/refresh",
    public=True,
    resource="auth",
    action="refresh",
    body=RefreshRequest,
    tags=TAGS,
    response=REFRESH_RESULT,
    errors=(401, 429),
)
async def refresh(request: web.Request, body: RefreshRequest) -> web.Response:
    """A new access token, from a refresh token (rotated) or a still valid access token.

    The access-token form (the seed's) never renews an expired token and never
    issues one that outlives the session: the session's lifetime is set by the
    refresh token, so renewing this way cannot keep a session alive forever."""
    security = request.app[SECURITY]
    sessions = request.app[SESSIONS]
    if body.refresh_token is not None:
        try:
            rotation = await sessions.rotate(body.refresh_token)
        except RefreshTokenReused as exc:
            owner = await _session_owner(request, exc.details.get("session_id"))
            await audit_event(
                request,
                "auth.refresh_token_reused",
                f"sessions/{exc.details.get('session_id')}",
                "denied",
                details={"session_id": exc.details.get("session_id")},
                user_id=owner.id if owner else None,
                username=owner.username if owner else None,
            )
            raise
        session = rotation.session
        user = await _usable_user(request, session["user_id"], session["id"])
        issued = security.tokens.issue(
            user_id=user.id,
            username=user.username,
            roles=user.roles,
            amr=list(session.get("amr", ["pwd"])),
            session_id=session["id"],
        )
        data: dict[str, Any] = {
            "token": issued.token,
            "expires_at": issued.expires_at,
            "refresh_token": rotation.refresh_token,
            "refresh_expires_at": rotation.refresh_expires_at,
        }
    else:
        assert body.token is not None
        claims = await security.tokens.decode(body.token)
        sid = claims.get("sid")
        holder = (str(claims["sub"]), str(claims.get("username", claims["sub"])))  # signature checked
        if claims.get("scope") == MFA_SETUP_SCOPE or not sid:
            raise Unauthorized("this token cannot be refreshed", reason="not_refreshable", user=holder)
        # decode() allows a few seconds of clock skew; renewal allows none.
        if float(claims["exp"]) <= time.time():
            raise Unauthorized(
                "the token has expired; use the refresh token or log in again", reason="expired", user=holder
            )
        if security.revocations.is_revoked(claims["jti"], sid):
            raise Unauthorized("the token has been revoked", reason="revoked", user=holder)
        session = await sessions.active(sid)
        user = await _usable_user(request, claims["sub"], sid)
        left_s = int((session["expires_at"] - utcnow()).total_seconds())
        if left_s < 1:
            raise Unauthorized("the session has ended; log in again")
        issued = security.tokens.issue(
            user_id=user.id,
            username=user.username,
            roles=user.roles,
            amr=list(claims.get("amr", ["pwd"])),
            session_id=session["id"],
            ttl_s=min(request.app[SETTINGS].access_token_ttl_s, left_s),
        )
        # The presented token is replaced, not joined: it stops working now.
        await sessions.revoke_token(claims["jti"], float(claims["exp"]))
        await sessions.touch(session["id"])
        data = {"token": issued.token, "expires_at": issued.expires_at}
    await audit_event(
        request,
        "auth.refresh",
        f"sessions/{session['id']}",
        "success",
        user_id=user.id,
        username=user.username,
        details={"with": "refresh_token" if body.refresh_token else "token"},
    )
    return ok(data)


async def _session_owner(request: web.Request, session_id: Any) -> User | None:
    """The user a session belongs to, for the audit record of its refresh token's reuse."""
    session = await request.app[SESSIONS].repo.get(str(session_id)) if session_id else None
    try:
        return await request.app[USERS].get(session["user_id"]) if session else None
    except NotFound:
        return None


async def _usable_user(request: web.Request, user_id: str, session_id: str) -> User:
    try:
        user = await request.app[USERS].get(user_id)
    except NotFound:
        user = None
    if user is None or not user.enabled:
        await request.app[SESSIONS].revoke(session_id, reason="user_unavailable", user_id=user_id)
        raise Unauthorized("the session has ended; log in again")
    return user


@api.route("POST", "/auth/logout", resource="profile", action="logout", tags=TAGS, response=MESSAGE)
async def logout(request: web.Request) -> web.Response:
    """End this session: its refresh token and every access token it issued stop working."""
    principal = principal_of(request)
    sid = principal.claims.get("sid")
    sessions = request.app[SESSIONS]
    if sid:
        await sessions.revoke(str(sid), reason="logout", user_id=principal.user_id)
    if principal.token_id and principal.expires_at:
        await sessions.revoke_token(principal.token_id, principal.expires_at)
    await audit_event(request, "auth.logout", f"sessions/{sid}", "success")
    return ok("Successfully logged out")


def _with_setup_token(request: web.Request) -> bool:
    return principal_of(request).claims.get("scope") == MFA_SETUP_SCOPE


async def _reauthenticate(request: web.Request, user: User, password: str) -> None:
    ip = client_ip(request, request.app[SETTINGS].trusted_proxies)
    await request.app[LOGIN].reauthenticate(request, user, ip=ip, password=password)


@api.route(
    "POST",
    "/auth/mfa/setup",
    resource="profile",
    action="mfa_enrol",
    body=MfaSetup,
    tags=TAGS,
    response=MFA_SETUP,
    errors=(409,),
)
async def mfa_setup(request: web.Request, body: MfaSetup) -> web.Response:
    """Start TOTP enrolment (the password again): the secret, its otpauth URI and a QR code (SVG).

    An account that must use MFA enrols only with the setup token of a fresh login."""
    user = await current_user(request)
    request.app[MFA].check_enrolment(user, with_setup_token=_with_setup_token(request))
    await _reauthenticate(request, user, body.password)
    enrolment = await request.app[MFA].setup(user)
    await audit_event(request, "auth.mfa_setup", f"users/{user.id}", "success")
    return ok({"secret": enrolment.secret, "otpauth_uri": enrolment.otpauth_uri, "qr_svg": enrolment.qr_svg})


@api.route(
    "POST",
    "/auth/mfa/enable",
    resource="profile",
    action="mfa_enrol",
    body=MfaEnable,
    tags=TAGS,
    response=MFA_ENABLED,
    errors=(409,),
)
async def mfa_enable(request: web.Request, body: MfaEnable) -> web.Response:
    """Finish enrolment with the password and a first code; returns 10 single-use backup codes, once."""
    user = await current_user(request)
    with_setup_token = _with_setup_token(request)
    request.app[MFA].check_enrolment(user, with_setup_token=with_setup_token)
    await _reauthenticate(request, user, body.password)
    codes = await request.app[MFA].enable(user, body.code)
    principal = principal_of(request)
    if with_setup_token and principal.token_id and principal.expires_at:
        await request.app[SESSIONS].revoke_token(principal.token_id, principal.expires_at)
    await audit_event(request, "auth.mfa_enabled", f"users/{user.id}", "success")
    return ok({"backup_codes": codes, "message": "MFA is enabled; log in again with mfa_code"})


@api.route(
    "POST",
    "/auth/mfa/disable",
    resource="profile",
    action="mfa",
    body=MfaDisable,
    tags=TAGS,
    response=MESSAGE,
    errors=(409,),
)
async def mfa_disable(request: web.Request, body: MfaDisable) -> web.Response:
    """Turn MFA off (password and a current code); required roles enrol again at login."""
    user = await current_user(request)
    await _reauthenticate(request, user, body.password)
    await request.app[MFA].disable(user, body.code)
    await audit_event(request, "auth.mfa_disabled", f"users/{user.id}", "success")
    return ok("MFA disabled")


@api.route(
    "POST",
    "/auth/mfa/backup-codes",
    resource="profile",
    action="mfa",
    body=MfaBackupCodes,
    tags=TAGS,
    response=BACKUP_CODES,
    errors=(409,),
)
async def mfa_backup_codes(request: web.Request, body: MfaBackupCodes) -> web.Response:
    """Replace the backup codes (password and a current code); the old ones stop working."""
    user = await current_user(request)
    await _reauthenticate(request, user, body.password)
    codes = await request.app[MFA].regenerate_backup_codes(user, body.code)
    await audit_event(request, "auth.mfa_backup_codes", f"users/{user.id}", "success")
    return ok({"backup_codes": codes})


@api.route(
    "GET",
    "/.well-known/jwks.json",
    public=True,
    resource="auth",
    action="jwks",
    tags=TAGS,
    response=JWKS,
    raw=True,
)
async def jwks(request: web.Request) -> web.Response:
    """The public keys that verify access tokens (RFC 7517), for services elsewhere."""
    doc = request.app[SECURITY].keys.jwks()
    return web.json_response(doc, headers={"Cache-Control": "max-age=300"})
