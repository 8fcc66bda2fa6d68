"""``/auth/*``: login, refresh, logout, MFA enrolment and management; the JWKS."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from aiohttp import web

from control_center.keys import LOGIN, PROFILE
from control_center.keys import PERMISSIONS as PERMISSION_SERVICE
from control_center.models import (
    BACKUP_CODES,
    EXACTLY_ONE,
    JWKS,
    LOGIN_RESULT,
    MFA_ENABLED,
    MFA_SETUP,
    PERMISSIONS,
    REFRESH_RESULT,
    LoginRequest,
    MfaBackupCodes,
    MfaDisable,
    MfaEnable,
    MfaSetup,
    RefreshRequest,
)
from control_center.views import enrolment_view, login_view, permissions_view, refreshed_view
from shared.errors import Forbidden, Unauthorized, ValidationFailed
from shared.security.actor import actor_of
from shared.security.backend import SECURITY
from shared.security.tokens import utcnow
from shared.web.cors import allowed_origin, is_secure
from shared.web.envelope import ok
from shared.web.keys import SETTINGS
from shared.web.middlewares import add_response_headers
from shared.web.routing import MESSAGE, Api

api = Api()
TAGS = ("auth",)

# -- the console's refresh cookie ------------------------------------------------------------
# The console keeps its access token in memory and its refresh token in this cookie,
# which no script can read and the browser sends only to /auth on this origin
# (docs/console.md, "Session and CSRF").
REFRESH_COOKIE = "provisioning_refresh"
COOKIE_HEADER = "X-Refresh-Cookie"
COOKIE_PATH = "/auth"
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9_-]{1,1024}")


def wants_cookie(request: web.Request) -> bool:
    """The caller (the console) asks for the refresh token as a cookie."""
    return request.headers.get(COOKIE_HEADER, "").strip() == "1"


def _well_formed(value: str | None) -> str | None:
    return value if value is not None and _TOKEN_CHARS.fullmatch(value) else None


def _cookie(request: web.Request, value: str, max_age_s: int) -> str:
    secure = "; Secure" if is_secure(request, request.app[SETTINGS]) else ""
    return (
        f"{REFRESH_COOKIE}={value}; HttpOnly; SameSite=Strict; Path={COOKIE_PATH}; "
        f"Max-Age={max(0, max_age_s)}{secure}"
    )


def set_refresh_cookie(request: web.Request, resp: web.Response, token: str, expires_at: datetime) -> None:
    resp.headers["Set-Cookie"] = _cookie(request, token, int((expires_at - utcnow()).total_seconds()))


def cleared_cookie(request: web.Request) -> str:
    return _cookie(request, "", 0)


def cookie_refresh_token(request: web.Request) -> str:
    """The refresh cookie of a request from this service's own pages (or an origin of
    ``cors_origins``): a page elsewhere cannot spend it (CSRF). Without a cookie the
    body was simply incomplete (422, as for any API client)."""
    cookie = request.cookies.get(REFRESH_COOKIE)
    if cookie is None:
        raise ValidationFailed(
            f"invalid request body: {EXACTLY_ONE} (or send the {REFRESH_COOKIE} cookie)",
            details={"fields": [{"field": "refresh_token", "message": EXACTLY_ONE}]},
        )
    origin = request.headers.get("Origin")
    if origin is None or allowed_origin(request, origin) is None:
        raise Forbidden(
            "a refresh with the cookie must come from the console's own origin (Origin header)",
            details={"origin": (origin or "")[:200]},
        )
    token = _well_formed(cookie)
    if token is None:
        add_response_headers(request, {"Set-Cookie": cleared_cookie(request)})
        raise Unauthorized("the refresh token is not valid")
    return token


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
    """Log in: tokens, or a setup token while MFA enrolment is pending.

    With ``X-Refresh-Cookie: 1`` (the console) the refresh token is set as an HttpOnly
    cookie instead of returned in the body."""
    result = await request.app[LOGIN].login(
        actor_of(request), username=body.username, password=body.password, mfa_code=body.mfa_code
    )
    in_cookie = wants_cookie(request) and result.refresh_token is not None
    resp = ok(login_view(result, refresh_in_cookie=in_cookie))
    if in_cookie:
        assert result.refresh_token is not None and result.refresh_expires_at is not None
        set_refresh_cookie(request, resp, result.refresh_token, result.refresh_expires_at)
    return resp


@api.route(
    "POST",
    "/auth/refresh",
    public=True,
    resource="auth",
    action="refresh",
    body=RefreshRequest,
    tags=TAGS,
    response=REFRESH_RESULT,
    errors=(401, 403, 429),
)
async def refresh(request: web.Request, body: RefreshRequest) -> web.Response:
    """A new access token, from a refresh token (rotated) or a still valid access token.

    The access-token form (the seed's) never renews an expired token and never
    issues one that outlives the session: the session's lifetime is set by the
    refresh token, so renewing this way cannot keep a session alive forever."""
    refresh_token, from_cookie = body.refresh_token, False
    if body.empty:
        refresh_token, from_cookie = cookie_refresh_token(request), True
    try:
        refreshed = await request.app[LOGIN].refresh(
            actor_of(request), refresh_token=refresh_token, token=body.token
        )
    except Unauthorized:
        if from_cookie:  # spent, expired or revoked: the browser should drop it
            add_response_headers(request, {"Set-Cookie": cleared_cookie(request)})
        raise
    in_cookie = refreshed.refresh_token is not None and (from_cookie or wants_cookie(request))
    resp = ok(refreshed_view(refreshed, refresh_in_cookie=in_cookie))
    if in_cookie:
        assert refreshed.refresh_token is not None and refreshed.refresh_expires_at is not None
        set_refresh_cookie(request, resp, refreshed.refresh_token, refreshed.refresh_expires_at)
    return resp


@api.route("POST", "/auth/logout", resource="profile", action="logout", tags=TAGS, response=MESSAGE)
async def logout(request: web.Request) -> web.Response:
    """End this session: its refresh token and every access token it issued stop working.

    The console's refresh cookie is cleared, and its session ended too if it is another
    of the caller's."""
    cookie = request.cookies.get(REFRESH_COOKIE)
    await request.app[PROFILE].logout(actor_of(request), refresh_token=_well_formed(cookie))
    resp = ok("Successfully logged out")
    if cookie is not None or wants_cookie(request):
        resp.headers["Set-Cookie"] = cleared_cookie(request)
    return resp


@api.route("GET", "/auth/me/permissions", resource="profile", action="read", tags=TAGS, response=PERMISSIONS)
async def my_permissions(request: web.Request) -> web.Response:
    """The resource/action pairs of both services the caller's policies allow (the console
    offers only these); ``conditional``: allowed only when a condition holds."""
    return ok(permissions_view(request.app[PERMISSION_SERVICE].of(actor_of(request))))


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


def document_refresh_cookie(doc: dict[str, Any]) -> None:
    """The console's cookie mode in the OpenAPI document: the request header that asks
    for it, the cookie, and the ``Set-Cookie`` of the answers that set or clear it."""
    ask = {
        "name": COOKIE_HEADER,
        "in": "header",
        "required": False,
        "description": "1: the refresh token is set as the HttpOnly cookie, not returned in the body",
        "schema": {"type": "string", "enum": ["1"]},
    }
    cookie = {
        "name": REFRESH_COOKIE,
        "in": "cookie",
        "required": False,
        "description": "the console's refresh token (HttpOnly, SameSite=Strict, Path=/auth)",
        "schema": {"type": "string"},
    }
    set_cookie = {
        "Set-Cookie": {
            "description": f"{REFRESH_COOKIE}=…; HttpOnly; SameSite=Strict; Path={COOKIE_PATH}; Max-Age=…",
            "schema": {"type": "string"},
        }
    }
    for method, path, params in (
        ("post", "/auth/login", [ask]),
        ("post", "/auth/refresh", [ask, cookie]),
        ("post", "/auth/logout", [ask, cookie]),
    ):
        op = doc["paths"][path][method]
        op.setdefault("parameters", []).extend(params)
        op["responses"]["200"]["headers"] = set_cookie
    refresh = doc["paths"]["/auth/refresh"]["post"]
    refresh["description"] = (
        "With the refresh cookie, send {} (or no body) and an Origin header of the console's own "
        "origin (else 403): the cookie is rotated and the body holds the new access token only."
    )
