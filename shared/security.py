"""The security both services share: tokens, policy, revocations, audit and rate limits.

:class:`Security` bundles them over one store and is shared by every app of a
process that uses that store (``provisioning up`` runs both services on one),
so a policy change, a logout or a disabled user takes effect in both at once.
Processes that share only the database pick such changes up within
``auth_sync_s`` (default 2 s) by polling the policy revision and the
revocations. :class:`SecurityBackend` is the :class:`~shared.auth.AuthBackend`
the auth middleware consults.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import weakref
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from shared.audit import AuditLog
from shared.auth import ANONYMOUS, AUTH_BACKEND, OpenAccess, Principal
from shared.client import client_ip
from shared.errors import Forbidden, StoreError, Unauthorized
from shared.http import SERVICE_KEY, add_response_headers
from shared.keys import STORE
from shared.policy import PolicyEngine, RoleSet, policy_writes, read_default_rules, read_model
from shared.ratelimit import RateLimits
from shared.security_repos import KeyRepository, PolicyRepository, RevocationRepository
from shared.settings import Settings
from shared.store import Store
from shared.tokens import MFA_SETUP_SCOPE, KeyRing, Revocations, TokenService, utcnow

log = logging.getLogger(__name__)

DEFAULT_POLICY_ID = "default"
# What a token limited to MFA enrolment may do.
MFA_SETUP_ROUTES = frozenset({("profile", "mfa_enrol")})
BEARER = "bearer"


class Security:
    """Per-store security services, started once however many apps share them."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.keys = KeyRing()
        self.revocations = Revocations()
        self.tokens = TokenService(settings, self.keys, self.revocations)
        self.policy = PolicyEngine(read_model(settings.policies_dir))
        self.audit = AuditLog()
        self.rate_limits = RateLimits(settings)
        self.backend = SecurityBackend(self)
        self.store: Store | None = None
        self._users = 0
        self._sync_task: asyncio.Task[None] | None = None

    @property
    def policies(self) -> PolicyRepository:
        assert self.store is not None, "security is not started"
        return PolicyRepository(self.store)

    async def start(self, store: Store) -> None:
        """Load keys (creating the first), revocations and policy (seeding the default)."""
        self._users += 1
        if self._users > 1:
            return
        self.store = store
        await self.keys.load(KeyRepository(store), create=True)
        await self.revocations.load(RevocationRepository(store))
        await seed_default_policy(PolicyRepository(store), self.settings)
        await self.policy.load(PolicyRepository(store))
        await self.audit.start(store)
        self.rate_limits.open()
        if self.settings.auth_sync_s > 0:
            self._sync_task = asyncio.create_task(self._sync_loop(), name="security-sync")

    async def stop(self) -> None:
        self._users -= 1
        if self._users > 0:
            return
        if self._sync_task is not None:
            self._sync_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sync_task
            self._sync_task = None
        await self.audit.stop()
        await self.rate_limits.close()

    async def ctx(self, app: web.Application) -> AsyncIterator[None]:
        """``cleanup_ctx`` entry: runs after the store is open, stops before it closes."""
        await self.start(app[STORE])
        yield
        await self.stop()

    async def _sync_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.auth_sync_s)
            try:
                await self.sync()
            except StoreError as exc:
                log.warning("could not sync policy and revocations", extra={"error": str(exc)})

    async def sync(self) -> None:
        """Pick up what other processes changed: the policy revision and revocations."""
        if await self.policies.revision() != self.policy.revision:
            await self.policy.load(self.policies)
        await self.revocations.sync()

    async def reload_policy(self) -> None:
        """After a policy change was persisted: the next request uses it."""
        await self.policy.load(self.policies)

    async def revoke(self, *, until: datetime, jti: str | None = None, sid: str | None = None) -> None:
        await self.revocations.revoke(until=until, jti=jti, sid=sid)
        if jti:
            self.tokens.forget(jti)


async def seed_default_policy(repo: PolicyRepository, settings: Settings) -> None:
    """At first start, ``policies/policy.csv`` becomes the policy document ``default``."""
    if await repo.revision() > 0:
        return
    rules = read_default_rules(settings.policies_dir)
    now = utcnow()
    row = {
        "name": "default",
        "version": "1.0.0",
        "revision": 1,
        "enabled": True,
        "description": "the defaults shipped in policies/policy.csv",
        "rules": [r.to_doc() for r in rules],
        "created_at": now,
        "updated_at": now,
        "created_by": "system",
    }
    try:
        await repo.store.write(*policy_writes(repo, DEFAULT_POLICY_ID, row, rules, create=True))
        log.info("loaded the default policy", extra={"rules": len(rules)})
    except StoreError:  # another process seeded it first
        log.info("the default policy was seeded by another process")


_SHARED: weakref.WeakKeyDictionary[Store, Security] = weakref.WeakKeyDictionary()


def security_for(settings: Settings, store: Store | None) -> Security:
    """The :class:`Security` of a store shared by several apps, or a new one."""
    if store is None:
        return Security(settings)
    found = _SHARED.get(store)
    if found is None:
        found = _SHARED[store] = Security(settings)
    return found


SECURITY = web.AppKey("security", Security)


class SecurityBackend:
    """Bearer JWT authentication and Casbin authorization."""

    def __init__(self, security: Security) -> None:
        self.security = security

    async def authenticate(self, request: web.Request) -> Principal:
        token = bearer_token(request)
        if token is None:
            add_response_headers(request, {"WWW-Authenticate": 'Bearer realm="provisioning"'})
            raise Unauthorized(
                "authentication required: send Authorization: Bearer <token> "
                "(POST /auth/login on the control center issues one)"
            )
        try:
            return await self.security.tokens.verify(token)
        except Unauthorized:
            add_response_headers(
                request, {"WWW-Authenticate": 'Bearer realm="provisioning", error="invalid_token"'}
            )
            raise

    async def authorize(self, principal: Principal, resource: str, action: str, request: web.Request) -> None:
        if principal.claims.get("scope") == MFA_SETUP_SCOPE and (resource, action) not in MFA_SETUP_ROUTES:
            raise Forbidden(
                "this token is good only for MFA enrolment: POST /auth/mfa/setup, "
                "then POST /auth/mfa/enable, then log in again",
                details={"resource": resource, "action": action},
            )
        engine = self.security.policy
        subjects = subjects_of(principal)
        plan = engine.plan(subjects, resource, action)
        if plan.decision is True:
            return
        if plan.decision is None:
            context = await condition_context(request, principal, plan.roots, self.security.settings)
            if engine.decide(subjects, resource, action, context):
                return
        details: dict[str, Any] = {"resource": resource, "action": action, "roles": list(principal.roles)}
        message = (
            f"permission denied: {resource}:{action} is not granted to "
            f"{principal.username} (roles: {', '.join(principal.roles) or 'none'})"
        )
        conditions = engine.conditions_for(subjects, resource, action)
        if conditions:
            details["allowed_when"] = conditions
            message += "; it is allowed only when " + " or ".join(conditions)
        raise Forbidden(message, details=details)


def subjects_of(principal: Principal) -> tuple[str, ...]:
    return (*principal.roles, f"user:{principal.username}")


def bearer_token(request: web.Request) -> str | None:
    """``Authorization: Bearer …``; on GET also ``?token=`` (browsers' EventSource and
    WebSocket cannot send headers)."""
    header = request.headers.get("Authorization")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != BEARER or not token.strip():
            raise Unauthorized("the Authorization header must be 'Bearer <token>'")
        return token.strip()
    if request.method == "GET":
        return request.query.get("token") or None
    return None


async def condition_context(
    request: web.Request, principal: Principal, roots: frozenset[str], settings: Settings
) -> dict[str, Any]:
    """What a policy condition may read about this request."""
    now = datetime.now(UTC)
    context: dict[str, Any] = {
        "user": {
            "id": principal.user_id,
            "username": principal.username,
            "role": RoleSet(principal.roles),
            "roles": list(principal.roles),
            "mfa": principal.mfa,
        },
        "request": {
            "ip": client_ip(request, settings.trusted_proxies),
            "method": request.method,
            "path": request.path,
            "service": request.app.get(SERVICE_KEY),
        },
        "time": {
            "hour": now.hour,
            "minute": now.minute,
            "weekday": now.weekday(),
            "date": now.date().isoformat(),
        },
        "batch": {"environment": None, "check_mode": False, "name": None},
    }
    if "batch" in roots:
        context["batch"] = await batch_facts(request)
    return context


async def batch_facts(request: web.Request) -> dict[str, Any]:
    """What a submission says about itself. The body stays cached for the handler."""
    facts: dict[str, Any] = {"environment": None, "check_mode": False, "name": None}
    if not request.body_exists:  # the body may have been read (and checked) already
        return facts
    try:
        doc = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError):
        return facts  # the handler answers 400
    if isinstance(doc, dict):
        facts["environment"] = doc.get("environment")
        facts["check_mode"] = doc.get("check_mode") is True
        facts["name"] = doc.get("name")
    return facts


async def principal_for_token(app: web.Application, token: str | None) -> Principal:
    """For routes that authenticate themselves (a WebSocket's first message): the
    principal of a token, under whichever backend the app runs."""
    backend = app[AUTH_BACKEND]
    if isinstance(backend, OpenAccess):
        return ANONYMOUS
    if not isinstance(backend, SecurityBackend):
        raise Unauthorized("this service cannot verify tokens outside a request")
    if not token:
        raise Unauthorized("authentication required")
    return await backend.security.tokens.verify(token)
