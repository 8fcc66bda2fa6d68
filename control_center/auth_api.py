"""``/auth/*``: login, refresh, logout, MFA enrolment and management; the JWKS."""

from __future__ import annotations

from aiohttp import web

from control_center.keys import LOGIN, PROFILE
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
from control_center.views import enrolment_view, login_view, refreshed_view
from shared.security.actor import actor_of
from shared.security.backend import SECURITY
from shared.web.envelope import ok
from shared.web.routing import MESSAGE, Api

api = Api()
TAGS = ("auth",)


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
    result = await request.app[LOGIN].login(
        actor_of(request), username=body.username, password=body.password, mfa_code=body.mfa_code
    )
    return ok(login_view(result))


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
    refreshed = await request.app[LOGIN].refresh(
        actor_of(request), refresh_token=body.refresh_token, token=body.token
    )
    return ok(refreshed_view(refreshed))


@api.route("POST", "/auth/logout", resource="profile", action="logout", tags=TAGS, response=MESSAGE)
async def logout(request: web.Request) -> web.Response:
    """End this session: its refresh token and every access token it issued stop working."""
    await request.app[PROFILE].logout(actor_of(request))
    return ok("Successfully logged out")


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
    enrolment = await request.app[PROFILE].mfa_setup(actor_of(request), body.password)
    return ok(enrolment_view(enrolment))


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
    codes = await request.app[PROFILE].mfa_enable(actor_of(request), body.password, body.code)
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
    await request.app[PROFILE].mfa_disable(actor_of(request), body.password, body.code)
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
    codes = await request.app[PROFILE].regenerate_backup_codes(actor_of(request), body.password, body.code)
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
