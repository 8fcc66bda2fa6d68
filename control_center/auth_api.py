"""``/auth/*``: login, refresh, logout, MFA enrolment and management; the JWKS."""

from __future__ import annotations

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
    MfaCode,
    MfaDisable,
    RefreshRequest,
)
from control_center.sessions import RefreshTokenReused
from control_center.users import User
from shared.audit import audit_event
from shared.auth import principal_of
from shared.client import client_ip
from shared.errors import NotFound, Unauthorized
from shared.http import MESSAGE, Api, ok
from shared.keys import SETTINGS
from shared.security import SECURITY
from shared.tokens import MFA_SETUP_SCOPE

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
    """A new access token, from a refresh token (rotated) or the current access token."""
    security = request.app[SECURITY]
    sessions = request.app[SESSIONS]
    if body.refresh_token is not None:
        try:
            rotation = await sessions.rotate(body.refresh_token)
        except RefreshTokenReused as exc:
            await audit_event(
                request,
                "auth.refresh_token_reused",
                f"sessions/{exc.details.get('session_id')}",
                "denied",
                details={"session_id": exc.details.get("session_id")},
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
        if claims.get("scope") == MFA_SETUP_SCOPE or not sid:
            raise Unauthorized("this token cannot be refreshed")
        if security.revocations.is_revoked(claims["jti"], sid):
            raise Unauthorized("the token has been revoked")
        session = await sessions.active(sid)
        user = await _usable_user(request, claims["sub"], sid)
        issued = security.tokens.issue(
            user_id=user.id,
            username=user.username,
            roles=user.roles,
            amr=list(claims.get("amr", ["pwd"])),
            session_id=session["id"],
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


async def _usable_user(request: web.Request, user_id: str, session_id: str) -> User:
    try:
        user = await request.app[USERS].get(user_id)
    except NotFound:
        user = None
    if user is None or not user.enabled:
        await request.app[SESSIONS].revoke(session_id, reason="user_unavailable")
        raise Unauthorized("the session has ended; log in again")
    return user


@api.route("POST", "/auth/logout", resource="profile", action="logout", tags=TAGS, response=MESSAGE)
async def logout(request: web.Request) -> web.Response:
    """End this session: its refresh token and every access token it issued stop working."""
    principal = principal_of(request)
    sid = principal.claims.get("sid")
    sessions = request.app[SESSIONS]
    if sid:
        await sessions.revoke(str(sid), reason="logout")
    if principal.token_id and principal.expires_at:
        await sessions.revoke_token(principal.token_id, principal.expires_at)
    await audit_event(request, "auth.logout", f"sessions/{sid}", "success")
    return ok("Successfully logged out")


@api.route(
    "POST",
    "/auth/mfa/setup",
    resource="profile",
    action="mfa_enrol",
    tags=TAGS,
    response=MFA_SETUP,
    errors=(409,),
)
async def mfa_setup(request: web.Request) -> web.Response:
    """Start TOTP enrolment: the secret, its otpauth URI and a QR code (SVG)."""
    user = await current_user(request)
    enrolment = await request.app[MFA].setup(user)
    await audit_event(request, "auth.mfa_setup", f"users/{user.id}", "success")
    return ok({"secret": enrolment.secret, "otpauth_uri": enrolment.otpauth_uri, "qr_svg": enrolment.qr_svg})


@api.route(
    "POST",
    "/auth/mfa/enable",
    resource="profile",
    action="mfa_enrol",
    body=MfaCode,
    tags=TAGS,
    response=MFA_ENABLED,
    errors=(409,),
)
async def mfa_enable(request: web.Request, body: MfaCode) -> web.Response:
    """Finish enrolment with a first code; returns 10 single-use backup codes, once."""
    user = await current_user(request)
    codes = await request.app[MFA].enable(user, body.code)
    principal = principal_of(request)
    if principal.claims.get("scope") == MFA_SETUP_SCOPE and principal.token_id and principal.expires_at:
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
    await request.app[MFA].disable(user, body.password, body.code)
    await audit_event(request, "auth.mfa_disabled", f"users/{user.id}", "success")
    return ok("MFA disabled")


@api.route(
    "POST",
    "/auth/mfa/backup-codes",
    resource="profile",
    action="mfa",
    body=MfaCode,
    tags=TAGS,
    response=BACKUP_CODES,
    errors=(409,),
)
async def mfa_backup_codes(request: web.Request, body: MfaCode) -> web.Response:
    """Replace the backup codes (a current code proves the device); the old ones stop working."""
    user = await current_user(request)
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
