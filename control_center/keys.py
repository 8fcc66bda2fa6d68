"""Typed application keys of the control center's services (each built once, in
``control_center.app.services_ctx``)."""

from __future__ import annotations

from aiohttp import web

from control_center.login import LoginService
from control_center.mfa import MfaService
from control_center.passwords import PasswordHasher
from control_center.permissions import PermissionService
from control_center.policies import PolicyService
from control_center.profile import ProfileService
from control_center.sessions import SessionService
from control_center.users import UserService
from shared.webhooks import WebhookService

HASHER = web.AppKey("password_hasher", PasswordHasher)
SESSIONS = web.AppKey("sessions", SessionService)
USERS = web.AppKey("users", UserService)
MFA = web.AppKey("mfa", MfaService)
LOGIN = web.AppKey("login", LoginService)
PROFILE = web.AppKey("profile", ProfileService)
POLICIES = web.AppKey("policies", PolicyService)
WEBHOOKS = web.AppKey("webhooks", WebhookService)
PERMISSIONS = web.AppKey("permissions", PermissionService)
