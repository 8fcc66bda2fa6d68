"""Rate limits: auth per IP, token refresh per IP, general per user, batch submissions per user.

Moving windows from the ``limits`` library, so a shared storage
(``PROVISIONING_RATE_LIMIT_STORAGE=async+redis://…``) can replace process
memory when there are several replicas. Every limited response carries
``X-RateLimit-Limit/Remaining/Reset``; a refusal is a 429 in the envelope with
``Retry-After``.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from limits import RateLimitItem, parse
from limits.aio.storage import Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from shared.errors import RateLimited
from shared.security.auth import PRINCIPAL
from shared.settings import Settings
from shared.web.client import client_ip
from shared.web.keys import SETTINGS
from shared.web.middlewares import EXTRA_HEADERS, SUBMITTED, add_response_headers
from shared.web.routing import route_spec

AUTH_BUCKET = "auth"
REFRESH_BUCKET = "refresh"
DEFAULT_BUCKET = "default"
BATCH_BUCKET = "batch"
# Routes whose attempts count against the per-IP auth limit: (resource, action).
AUTH_LIMITED = frozenset({("auth", "login"), ("profile", "mfa_enrol"), ("profile", "mfa")})
# ``POST /auth/refresh``: public, so counted per address (its own bucket: clients refresh
# far more often than people log in).
REFRESH_LIMITED = frozenset({("auth", "refresh")})
# Accepted submissions count against the batch limit.
SUBMISSIONS = frozenset({("batch", "execute"), ("workflows", "create")})


def parse_limit(text: str) -> RateLimitItem | None:
    """``"5/minute"`` in the ``limits`` notation; ``"0"`` or empty disables the limit."""
    text = text.strip()
    if text in ("", "0", "off", "none"):
        return None
    return parse(text)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_epoch_s: int

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(max(0, self.remaining)),
            "X-RateLimit-Reset": str(self.reset_epoch_s),
        }


class RateLimits:
    """The seed's three limits, and one on token refresh, over one storage."""

    def __init__(self, settings: Settings) -> None:
        self.items: dict[str, RateLimitItem | None] = {
            AUTH_BUCKET: parse_limit(settings.rate_limit_auth),
            REFRESH_BUCKET: parse_limit(settings.rate_limit_refresh),
            DEFAULT_BUCKET: parse_limit(settings.rate_limit_default),
            BATCH_BUCKET: parse_limit(settings.rate_limit_batch),
        }
        self.storage_uri = settings.rate_limit_storage
        self._storage: Storage | None = None
        self._limiter: MovingWindowRateLimiter | None = None

    def open(self) -> None:
        storage = storage_from_string(self.storage_uri)
        if not isinstance(storage, Storage):
            raise ValueError(
                f"rate limit storage {self.storage_uri!r} is not an async storage; "
                "use async+memory:// or async+redis://…"
            )
        self._storage = storage
        self._limiter = MovingWindowRateLimiter(storage)

    async def close(self) -> None:
        # The memory storage keeps an expiry task; do not leave it pending on a closed loop.
        timer = getattr(self._storage, "timer", None)
        if timer is not None and not timer.done():
            timer.cancel()
            with contextlib.suppress(BaseException):
                await timer
        self._storage = None
        self._limiter = None

    def enabled(self, bucket: str) -> bool:
        return self.items.get(bucket) is not None and self._limiter is not None

    async def hit(self, bucket: str, key: str) -> Decision:
        """Count one request; ``allowed`` is False when the window is full."""
        return await self._check(bucket, key, consume=True)

    async def peek(self, bucket: str, key: str) -> Decision:
        """Whether one more would be allowed, without counting it."""
        return await self._check(bucket, key, consume=False)

    async def _check(self, bucket: str, key: str, *, consume: bool) -> Decision:
        item = self.items[bucket]
        assert item is not None and self._limiter is not None
        if consume:
            allowed = await self._limiter.hit(item, bucket, key)
        else:
            allowed = await self._limiter.test(item, bucket, key)
        stats = await self._limiter.get_window_stats(item, bucket, key)
        return Decision(allowed, item.amount, stats.remaining, math.ceil(stats.reset_time))


RATE_LIMITS = web.AppKey("rate_limits", RateLimits)


def _refuse(bucket: str, decision: Decision, who: str) -> RateLimited:
    retry_after = max(1, decision.reset_epoch_s - int(time.time()))
    headers = decision.headers() | {"Retry-After": str(retry_after)}
    return RateLimited(
        f"rate limit exceeded: at most {decision.limit} {bucket} requests per window for "
        f"this {who}; retry in {retry_after} s",
        details={"limit": decision.limit, "bucket": bucket, "retry_after_s": retry_after, "headers": headers},
    )


async def limit_user(request: web.Request, user_id: str) -> None:
    """Count one request of ``user_id`` under the general limit (429 past it); for routes
    that authenticate themselves (the MCP endpoint) as for every other."""
    limits = request.app[RATE_LIMITS]
    if limits.enabled(DEFAULT_BUCKET):
        decision = await limits.hit(DEFAULT_BUCKET, user_id)
        add_response_headers(request, decision.headers())
        if not decision.allowed:
            raise _refuse(DEFAULT_BUCKET, decision, "user")


@web.middleware
async def rate_limit_headers_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """``X-RateLimit-*`` on every response. Where no limit was applied (public routes,
    refused credentials) they describe the caller's address under the general limit,
    without counting the request: a health check must never be throttled."""
    try:
        return await handler(request)
    finally:
        limits = request.app.get(RATE_LIMITS)
        if (
            "X-RateLimit-Limit" not in request.get(EXTRA_HEADERS, {})
            and limits is not None
            and limits.enabled(DEFAULT_BUCKET)
        ):
            ip = client_ip(request, request.app[SETTINGS].trusted_proxies)
            with contextlib.suppress(Exception):
                decision = await limits.peek(DEFAULT_BUCKET, f"address:{ip}")
                add_response_headers(request, decision.headers())


@web.middleware
async def rate_limit_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Apply the limit that fits the route; headers on every limited response."""
    spec = route_spec(request)
    if spec is None:
        return await handler(request)
    limits = request.app[RATE_LIMITS]
    route = (spec.resource or "", spec.action or "")
    for bucket, routes in ((AUTH_BUCKET, AUTH_LIMITED), (REFRESH_BUCKET, REFRESH_LIMITED)):
        if route in routes and limits.enabled(bucket):
            ip = client_ip(request, request.app[SETTINGS].trusted_proxies)
            decision = await limits.hit(bucket, ip)
            add_response_headers(request, decision.headers())
            if not decision.allowed:
                raise _refuse(bucket, decision, "address")
            return await handler(request)
    principal = request.get(PRINCIPAL)
    if spec.public or principal is None:
        return await handler(request)
    user = principal.user_id
    await limit_user(request, user)
    if route in SUBMISSIONS and limits.enabled(BATCH_BUCKET):
        decision = await limits.peek(BATCH_BUCKET, user)
        if not decision.allowed:
            raise _refuse(BATCH_BUCKET, decision, "user")
        response = await handler(request)
        if request.get(SUBMITTED):
            decision = await limits.hit(BATCH_BUCKET, user)
            for name, value in decision.headers().items():
                response.headers[name] = value
        return response
    return await handler(request)
