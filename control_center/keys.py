"""Typed application keys of the control center's services."""

from __future__ import annotations

from aiohttp import web

from control_center.login import LoginService
from control_center.mfa import MfaService
from control_center.passwords import PasswordHasher
from control_center.policies import PolicyService
from control_center.sessions import SessionService
from control_center.users import UserService

HASHER = web.AppKey("password_hasher", PasswordHasher)
SESSIONS = web.AppKey("sessions", SessionService)
USERS = web.AppKey("users", UserService)
MFA = web.AppKey("mfa", MfaService)
LOGIN = web.AppKey("login", LoginService)
POLICIES = web.AppKey("policies", PolicyService)
