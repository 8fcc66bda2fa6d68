"""The security both services share: tokens, policy, revocations, audit and rate limits.

:class:`Security` bundles them over one store and is shared by every app of a
process that uses that store (``provisioning up`` runs both services on one),
so a policy change, a logout or a disabled user takes effect in both at once.
Processes that share only the database pick such changes up within
``auth_sync_s`` (default 2 s) by polling the policy revision and the
revocations (and the users tokens stand for, ``shared/security/subjects.py``).
:class:`SecurityBackend` is the :class:`~shared.security.auth.AuthBackend` the auth
middleware consults. At start, secrets stored in plaintext or under an older
key-encryption key are sealed under the current one (``shared/security/sealing.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from shared.errors import (
    BadRequest,
    Forbidden,
    StoreError,
    Unauthorized,
    UnsupportedMediaType,
    ValidationFailed,
)
from shared.security.actor import Actor
from shared.security.api_tokens import JTI_PREFIX as API_JTI_PREFIX
from shared.security.api_tokens import TOKEN_TYPE as API_TOKEN_TYPE
from shared.security.api_tokens import ApiTokens, UsageTally, scope_allows
from shared.security.audit import AuditLog, entry_for
from shared.security.auth import ANONYMOUS, AUTH_BACKEND, OpenAccess, Principal
from shared.security.conditions import NO_OPERATION, OperationFacts, RoleSet, fold, operations_of
from shared.security.policy import (
    PREVIOUS_DEFAULT_FINGERPRINTS,
    PolicyEngine,
    Rule,
    next_version,
    policy_writes,
    read_default_rules,
    read_model,
    rules_fingerprint,
)
from shared.security.ratelimit import RateLimits
from shared.security.repositories import (
    ApiTokenRepository,
    KeyRepository,
    PolicyRepository,
    RevocationRepository,
    SubjectRepository,
)
from shared.security.sealing import seal_stored_secrets
from shared.security.subjects import Subjects
from shared.security.tokens import KEY_REFRESH_S, MFA_SETUP_SCOPE, KeyRing, Revocations, TokenService, utcnow
from shared.settings import Settings
from shared.store.secrets import SecretsError
from shared.store.store import Store
from shared.web.client import client_ip
from shared.web.keys import SERVICE_KEY, STORE
from shared.web.middlewares import add_response_headers
from shared.web.routing import route_spec
from shared.web.validation import json_body

log = logging.getLogger(__name__)

DEFAULT_POLICY_ID = "default"
# What a token limited to MFA enrolment may do.
MFA_SETUP_ROUTES = frozenset({("profile", "mfa_enrol")})
BEARER = "bearer"
# Per-operation policy decisions between two yields to the event loop.
OPERATION_DECISIONS_PER_YIELD = 64


class Security:
    """Per-store security services, started once however many apps share them."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.keys = KeyRing()
        self.revocations = Revocations()
        self.subjects = Subjects()
        self.api_tokens = ApiTokens(self.revocations, self.subjects)
        self.tokens = TokenService(settings, self.keys, self.revocations, self.subjects, self.api_tokens)
        self.policy = PolicyEngine(read_model(settings.policies_dir))
        self.audit = AuditLog(
            refusal_window_s=settings.audit_refusal_window_s, refusal_keys=settings.audit_refusal_keys
        )
        self.token_uses = UsageTally(self.audit, settings.api_token_audit_window_s)
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
        await seal_stored_secrets(store)
        await self.keys.load(KeyRepository(store), create=True)
        await self.keys.prune()
        self.subjects.bind(SubjectRepository(store))
        await self.revocations.load(RevocationRepository(store))
        await seed_default_policy(PolicyRepository(store), self.settings)
        await self.policy.load(PolicyRepository(store))
        await self.audit.start(store)
        self.api_tokens.bind(ApiTokenRepository(store))
        self.token_uses.start(ApiTokenRepository(store))
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
        await self.token_uses.stop()
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
            except (StoreError, SecretsError) as exc:
                log.warning("could not sync policy and revocations", extra={"error": str(exc)})

    async def sync(self) -> None:
        """Pick up what other processes changed: the policy revision, revocations, the
        users tokens stand for, and (less often) the signing keys."""
        if await self.policies.revision() != self.policy.revision:
            await self.policy.load(self.policies)
        await self.revocations.sync()
        await self.subjects.refresh()
        await self.keys.reload_if_stale(KEY_REFRESH_S)

    async def reload_policy(self) -> None:
        """After a policy change was persisted: the next request uses it."""
        await self.policy.load(self.policies)

    async def revoke(self, *, until: datetime, jti: str | None = None, sid: str | None = None) -> None:
        await self.revocations.revoke(until=until, jti=jti, sid=sid)
        if jti:
            self.tokens.forget(jti)
            if jti.startswith(API_JTI_PREFIX):
                self.api_tokens.forget(jti.removeprefix(API_JTI_PREFIX))


def default_policy_row(rules: list[Rule]) -> dict[str, Any]:
    """The first revision of the ``default`` policy document holding ``rules``."""
    now = utcnow()
    return {
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


async def seed_default_policy(repo: PolicyRepository, settings: Settings) -> None:
    """At first start, ``policies/policy.csv`` becomes the policy document ``default``;
    later, :func:`upgrade_default_policy`."""
    if await repo.revision() > 0:
        await upgrade_default_policy(repo, settings)
        return
    rules = read_default_rules(settings.policies_dir)
    row = default_policy_row(rules)
    try:
        await repo.store.write(*policy_writes(repo, DEFAULT_POLICY_ID, row, rules, create=True))
        log.info("loaded the default policy", extra={"rules": len(rules)})
    except StoreError:  # another process seeded it first
        log.info("the default policy was seeded by another process")


async def upgrade_default_policy(repo: PolicyRepository, settings: Settings) -> None:
    """A data directory whose ``default`` policy is still one an earlier release shipped
    gets this release's (the old one kept as a version, like any change); an edited one is
    left alone, with a warning if none of its rules looks at what operations run."""
    current = await repo.get(DEFAULT_POLICY_ID)
    if current is None:
        return
    stored = [Rule.from_doc(d) for d in current.get("rules", [])]
    shipped = read_default_rules(settings.policies_dir)
    fingerprint = rules_fingerprint(stored)
    if fingerprint == rules_fingerprint(shipped):
        return
    if fingerprint not in PREVIOUS_DEFAULT_FINGERPRINTS:
        if not any("operation." in (r.condition or "") for r in stored):
            log.warning(
                "the default policy was edited and none of its rules reads operation facts: "
                "roles it lets submit batches can run any program; compare it with "
                "policies/policy.csv (docs/security.md, Policy conditions)"
            )
        return
    row = {k: v for k, v in current.items() if k != "id"}
    row.update(
        {
            "rules": [r.to_doc() for r in shipped],
            "version": next_version(str(current.get("version", "1.0.0"))),
            "revision": int(current.get("revision", 1)) + 1,
            "updated_at": utcnow(),
            "updated_by": "system",
        }
    )
    await repo.store.write(
        *policy_writes(repo, DEFAULT_POLICY_ID, row, shipped, create=False, previous=current)
    )
    log.info("upgraded the default policy to this release's", extra={"version": row["version"]})


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
                "(POST /auth/login on the control center issues one)",
                reason="missing",
            )
        try:
            principal = await self.security.tokens.verify(token)
        except Unauthorized:
            add_response_headers(
                request, {"WWW-Authenticate": 'Bearer realm="provisioning", error="invalid_token"'}
            )
            raise
        if principal.claims.get("token_type") == API_TOKEN_TYPE:
            entry = entry_for(request, "", "", "", user_id=principal.user_id, username=principal.username)
            spec = route_spec(request)
            route = f"{request.method} {spec.path if spec is not None else request.path}"
            await self.security.token_uses.used(principal, entry, route[:200])
        return principal

    async def authorize(self, principal: Principal, resource: str, action: str, request: web.Request) -> None:
        settings = self.security.settings

        async def context(roots: frozenset[str]) -> dict[str, Any]:
            return await condition_context(request, principal, roots, settings)

        async def document() -> Any:
            return await submission(request)

        await self.decide(principal, resource, action, context=context, document=document, path=request.path)

    async def authorize_actor(
        self, actor: Actor, resource: str, action: str, *, document: Any = None, path: str | None = None
    ) -> None:
        """Authorize what ``actor`` asks outside an HTTP route of its own (a tool call), with
        the same policy and conditions: ``document`` is the body the mirrored route would
        get (a batch: its operations are decided one by one), ``path`` that route's path."""
        principal = actor.principal or ANONYMOUS
        route = path or actor.path

        async def context(roots: frozenset[str]) -> dict[str, Any]:
            facts = conditions_for(
                principal, ip=actor.ip or "", method=actor.method, path=route, service=actor.service
            )
            if "batch" in roots:
                facts["batch"] = batch_facts_of(document)
            return facts

        async def given() -> Any:
            return document

        await self.decide(principal, resource, action, context=context, document=given, path=route)

    async def decide(
        self,
        principal: Principal,
        resource: str,
        action: str,
        *,
        context: Callable[[frozenset[str]], Awaitable[dict[str, Any]]],
        document: Callable[[], Awaitable[Any]],
        path: str,
    ) -> None:
        """Allow (return) or refuse (``Forbidden``) ``resource:action`` for a principal:
        an API token's scopes first, then the policy and its conditions."""
        scopes = principal.claims.get("scopes")
        if isinstance(scopes, list) and not scope_allows(scopes, resource, action):
            raise Forbidden(
                f"permission denied: this API token's scopes do not include {resource}:{action}",
                details={"resource": resource, "action": action, "scopes": scopes},
            )
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
        refused: OperationFacts | None = None
        if plan.decision is None:
            settings = self.security.settings
            facts = await context(plan.roots)
            if "operation" not in plan.roots:
                if engine.decide(subjects, resource, action, facts):
                    return
            else:
                # Allowed only if allowed for every operation of the body: decided once per
                # distinct set of the facts the conditions read, yielding now and then.
                operations = operations_of(await document(), path, settings.commands_allow) or [NO_OPERATION]
                decided: set[tuple[Any, ...]] = set()
                for op in operations:
                    key = op.key(plan.operation_fields)
                    if key in decided:
                        continue
                    if not engine.decide(subjects, resource, action, {**facts, "operation": op.facts()}):
                        refused = op
                        break
                    decided.add(key)
                    if len(decided) % OPERATION_DECISIONS_PER_YIELD == 0:
                        await asyncio.sleep(0)
                if refused is None:
                    return
        details: dict[str, Any] = {"resource": resource, "action": action, "roles": list(principal.roles)}
        message = (
            f"permission denied: {resource}:{action} is not granted to "
            f"{principal.username} (roles: {', '.join(principal.roles) or 'none'})"
        )
        if refused is not None and refused is not NO_OPERATION:
            message += f" for {refused.describe()}"
            details["operation"] = {
                k: v
                for k, v in {
                    "id": refused.op_id,
                    "index": refused.index,
                    "type": refused.type,
                    "provider": refused.provider,
                    "program": refused.program,
                }.items()
                if v is not None
            }
            if refused.program is not None and not refused.program_allowed:
                details["reason"] = (
                    f"program {refused.program!r} is not in the command allowlist "
                    f"([commands] allow: {', '.join(self.security.settings.commands_allow) or 'empty'})"
                )
                message += f"; {details['reason']}"
        conditions = engine.conditions_for(subjects, resource, action)
        if conditions:
            details["allowed_when"] = conditions
            message += "; it is allowed only when " + " or ".join(conditions)
        raise Forbidden(message, details=details)


def subjects_of(principal: Principal) -> tuple[str, ...]:
    return (*principal.roles, f"user:{principal.username}")


# Marks the handlers of stream routes, the only ones that take ``?token=``.
QUERY_TOKEN_ATTR = "__accepts_query_token__"


def accept_query_token(handler: Any) -> None:
    """Let a route's handler be authenticated by ``?token=`` (``GET /ws``, ``GET /events``):
    browsers' WebSocket and EventSource cannot send an Authorization header."""
    setattr(handler, QUERY_TOKEN_ATTR, True)


def bearer_token(request: web.Request) -> str | None:
    """``Authorization: Bearer …``; on a stream route's GET also ``?token=``.

    Anywhere else a token in the URL is refused (401): URLs end up in proxy
    logs, browser history and Referer headers."""
    header = request.headers.get("Authorization")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != BEARER or not token.strip():
            raise Unauthorized("the Authorization header must be 'Bearer <token>'", reason="malformed")
        return token.strip()
    if "token" not in request.query:
        return None
    if request.method == "GET" and getattr(request.match_info.handler, QUERY_TOKEN_ATTR, False):
        return request.query.get("token") or None
    raise Unauthorized(
        "?token= is accepted only on the event streams (GET /ws, GET /events); "
        "send Authorization: Bearer <token>"
    )


async def condition_context(
    request: web.Request, principal: Principal, roots: frozenset[str], settings: Settings
) -> dict[str, Any]:
    """What a policy condition may read about this request (docs/control-center.md,
    "Policy documents", lists every fact and its normalisation). ``operation`` holds
    the facts of no operation; :meth:`SecurityBackend.authorize` fills it per operation."""
    context = conditions_for(
        principal,
        ip=client_ip(request, settings.trusted_proxies),
        method=request.method,
        path=request.path,
        service=request.app.get(SERVICE_KEY),
    )
    if "batch" in roots:
        context["batch"] = await batch_facts(request)
    return context


def actor_conditions(actor: Actor) -> dict[str, Any]:
    """What a policy condition may read about what an actor asks, for a service that
    decides on its own (no submission: ``batch`` holds no facts)."""
    return conditions_for(
        actor.principal or ANONYMOUS,
        ip=actor.ip or "",
        method=actor.method,
        path=actor.path,
        service=actor.service,
    )


def conditions_for(
    principal: Principal, *, ip: str, method: str, path: str, service: str | None
) -> dict[str, Any]:
    """The condition facts of a principal asking from ``ip`` with ``method`` on ``path``."""
    now = datetime.now(UTC)
    return {
        "user": {
            "id": principal.user_id,
            "username": principal.username,
            "role": RoleSet(principal.roles),
            "roles": list(principal.roles),
            "mfa": principal.mfa,
        },
        "request": {"ip": ip, "method": method, "path": path, "service": service},
        "time": {
            "hour": now.hour,
            "minute": now.minute,
            "weekday": now.weekday(),
            "date": now.date().isoformat(),
        },
        "batch": {"environment": None, "check_mode": False, "name": None},
        "operation": NO_OPERATION.facts(),
    }


async def batch_facts(request: web.Request) -> dict[str, Any]:
    """What a submission says about itself (:func:`batch_facts_of` its body)."""
    return batch_facts_of(await submission(request))


def batch_facts_of(doc: Any) -> dict[str, Any]:
    """What a submission body says about itself. ``environment`` is normalised (NFKC, format
    characters dropped, trimmed, case-folded: ``" Prod"`` is ``prod``); ``name`` is as sent."""
    facts: dict[str, Any] = {"environment": None, "check_mode": False, "name": None}
    if isinstance(doc, dict):
        environment, name = doc.get("environment"), doc.get("name")
        facts["environment"] = fold(environment) if isinstance(environment, str) else None
        facts["check_mode"] = doc.get("check_mode") is True
        facts["name"] = name if isinstance(name, str) else None
    return facts


async def submission(request: web.Request) -> Any:
    """The request's JSON body, parsed and checked once for every fact and the handler
    (``shared.web.validation.json_body`` caches it); None without a body. A body too large to read
    whole is refused here: the facts are never taken from part of it."""
    if not request.body_exists:
        return None
    try:
        _, doc = await json_body(request)
    except (BadRequest, UnsupportedMediaType, ValidationFailed):
        return None  # the handler answers with the same refusal
    return doc


async def principal_for_token(app: web.Application, token: str | None) -> Principal:
    """For routes that authenticate themselves (a WebSocket's first message): the
    principal of a token, under whichever backend the app runs."""
    backend = app[AUTH_BACKEND]
    if isinstance(backend, OpenAccess):
        return ANONYMOUS
    if not isinstance(backend, SecurityBackend):
        raise Unauthorized("this service cannot verify tokens outside a request")
    if not token:
        raise Unauthorized("authentication required", reason="missing")
    return await backend.security.tokens.verify(token)
