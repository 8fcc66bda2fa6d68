"""``create_app(settings)`` for the control center."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

from aiohttp import web

from control_center import (
    audit_api,
    auth_api,
    console_api,
    events_api,
    policies_api,
    tokens_api,
    users_api,
    webhooks_api,
)
from control_center.events import VOCABULARY
from control_center.keys import (
    API_TOKENS,
    HASHER,
    LOGIN,
    MFA,
    PERMISSIONS,
    POLICIES,
    PROFILE,
    SESSIONS,
    USERS,
    WEBHOOKS,
)
from control_center.login import LoginService
from control_center.mfa import MfaService
from control_center.models import document_password_length
from control_center.passwords import PasswordHasher
from control_center.permissions import PermissionService
from control_center.policies import PolicyService
from control_center.profile import ProfileService
from control_center.sessions import SessionService
from control_center.tokens import ApiTokenService
from control_center.users import UserService
from shared.events.bus import EventBus
from shared.events.streams import install as install_streams
from shared.security.auth import AuthBackend
from shared.security.backend import SECURITY
from shared.settings import Settings
from shared.store.store import Store
from shared.web.app import base_app
from shared.web.keys import BUS, SETTINGS, STORE
from shared.web.openapi import add_standard_routes
from shared.web.routing import Api
from shared.webhooks import WebhookService

log = logging.getLogger(__name__)


def build_api() -> Api:
    api = Api()

    async def health(request: web.Request) -> str:
        return "Control Center is healthy"

    def customize(request: web.Request, doc: dict[str, Any]) -> None:
        document_password_length(request.app[SETTINGS].password_min_length, doc)
        webhooks_api.document_event_patterns(request.app, doc)
        auth_api.document_refresh_cookie(doc)

    add_standard_routes(api, title="provisioning control center", health=health, customize=customize)
    for module in (
        auth_api,
        tokens_api,
        users_api,
        policies_api,
        audit_api,
        webhooks_api,
        events_api,
        console_api,
    ):
        api.include(module.api)
    return api


async def services_ctx(app: web.Application) -> AsyncIterator[None]:
    """Build the services on the open store, then make sure an admin exists."""
    settings, store, bus, security = app[SETTINGS], app[STORE], app[BUS], app[SECURITY]
    hasher = PasswordHasher(settings)
    sessions = SessionService(store, security, settings, bus)
    users = UserService(store, hasher, sessions, bus, security.subjects)
    mfa = MfaService(store, settings, hasher, sessions, bus, security.audit)
    login = LoginService(store, settings, security, hasher, users, mfa, sessions, bus)
    app[HASHER] = hasher
    app[SESSIONS] = sessions
    app[USERS] = users
    app[MFA] = mfa
    app[LOGIN] = login
    app[PROFILE] = ProfileService(users, mfa, login, sessions, security.audit)
    app[POLICIES] = PolicyService(security, bus)
    app[WEBHOOKS] = WebhookService(settings, store, bus)
    app[API_TOKENS] = ApiTokenService(store, settings, security, users, bus)
    await users.bootstrap_admin(settings.admin_password, data_dir=settings.data_dir)
    # Off the start's path: neither waits for the other, nor the service for them.
    background = [
        asyncio.create_task(hasher.prepare(), name="password-hasher"),
        asyncio.create_task(sessions.purge_forever(), name="expired-sessions"),
    ]
    yield
    for task in background:
        task.cancel()
    for task in background:
        with contextlib.suppress(asyncio.CancelledError):
            await task


def create_app(
    settings: Settings,
    *,
    store: Store | None = None,
    bus: EventBus | None = None,
    auth: AuthBackend | None = None,
    console_dir: Path | None = None,
    permissions: Iterable[tuple[str, str]] | None = None,
) -> web.Application:
    """The control center application; opens its own store unless one is shared.
    ``console_dir``: the console bundle to serve (default: the packaged one);
    ``permissions``: the (resource, action) pairs ``/auth/me/permissions`` decides
    (default: the control center's own; ``provisioning up`` adds the orchestrator's)."""
    api = build_api()
    app = base_app(settings, service="control_center", api=api, store=store, bus=bus, auth=auth)
    vocabulary = api.permissions() if permissions is None else permissions
    app[PERMISSIONS] = PermissionService(app[SECURITY].policy, vocabulary)
    app.cleanup_ctx.append(services_ctx)
    app[BUS].registry.register(VOCABULARY)
    install_streams(app, events_api.CONFIG)
    console_api.install(app, console_dir)
    return app
