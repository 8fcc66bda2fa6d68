"""API tokens: named, long-lived bearer tokens for automation and AI assistants.

A token reads ``pvt_<key>_<secret>``: ``key`` (8 characters) is its public id and
the record's id, shown in lists; ``secret`` has 256 bits of entropy. The store
keeps only the SHA-256 of the whole token, compared in constant time. A token
stands for its user as the user is *now* (roles, enabled), never more: an
optional list of ``resource:action`` scopes narrows it further, and the policy
still decides every request (:meth:`shared.security.backend.SecurityBackend.authorize`).

Revoking one denylists ``api:<key>`` through :class:`~shared.security.tokens.Revocations`,
so the processes sharing a store refuse it at once and the others within
``auth_sync_s``, exactly like a logout. Verified tokens are cached (by the digest of
their text) for at most :data:`CACHE_TTL_S`; revocation, expiry and the user's state
are checked on every use.

Every use is audited: the first use of a token in a window of
``api_token_audit_window_s`` is recorded at once, the others of the window as one
record with their count (:class:`UsageTally`), which also adds them to the token's
``uses`` and ``last_used_at``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import re
import secrets
import string
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.errors import StoreError, Unauthorized
from shared.security.audit import AuditEntry, AuditLog
from shared.security.auth import Principal
from shared.security.repositories import ApiTokenRepository
from shared.security.subjects import Subjects
from shared.security.tokens import API_TOKEN_PREFIX, CLOCK_SKEW_S, Revocations

log = logging.getLogger(__name__)

PREFIX = API_TOKEN_PREFIX
KEY_CHARS = 8
KEY_ALPHABET = string.ascii_lowercase + string.digits
SECRET_BYTES = 32
TOKEN_TYPE = "api"
JTI_PREFIX = "api:"
CACHE_TTL_S = 30.0  # the longest a verified token's row is trusted without a new read
CACHE_MAX_ENTRIES = 10_000
_SHAPE = re.compile(rf"^{PREFIX}([a-z0-9]{{{KEY_CHARS}}})_([A-Za-z0-9_-]{{43}})$")
USE_ACTION = "auth.api_token.use"


def looks_like_api_token(token: str) -> bool:
    """Whether a bearer value is meant as an API token (the rest are JWTs)."""
    return token.startswith(PREFIX)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> tuple[str, str]:
    """A fresh token: ``(key, token)``; the token is shown once and never stored."""
    key = "".join(secrets.choice(KEY_ALPHABET) for _ in range(KEY_CHARS))
    return key, f"{PREFIX}{key}_{secrets.token_urlsafe(SECRET_BYTES)}"


def display_prefix(key: str) -> str:
    """What lists show of a token: enough to recognise it, nothing to use."""
    return f"{PREFIX}{key}"


def jti_of(key: str) -> str:
    """The denylist id of a token (beside JWT ids in ``token_revocation``)."""
    return f"{JTI_PREFIX}{key}"


def parse_scope(scope: str) -> tuple[str, str]:
    """``resource:action`` → ``(resource, action)``; the resource may hold ``:`` (``ext:hello``)."""
    resource, sep, action = scope.rpartition(":")
    if not sep or not resource or not action:
        raise ValueError(f"a scope is resource:action, not {scope!r}")
    return resource, action


def scope_allows(scopes: list[str] | tuple[str, ...], resource: str, action: str) -> bool:
    """Whether a token's scopes cover ``resource:action`` (``*`` matches any)."""
    for scope in scopes:
        r, a = parse_scope(scope)
        if r in ("*", resource) and a in ("*", action):
            return True
    return False


@dataclass
class _Cached:
    principal: Principal
    checked_at: float  # monotonic


class ApiTokens:
    """Verifies API tokens against the store (through a short cache)."""

    def __init__(self, revocations: Revocations, subjects: Subjects) -> None:
        self.revocations = revocations
        self.subjects = subjects
        self.repo: ApiTokenRepository | None = None
        self._cache: dict[str, _Cached] = {}
        self.clock: Callable[[], float] = time.time  # tests move time with this

    def bind(self, repo: ApiTokenRepository) -> None:
        self.repo = repo

    def forget(self, key: str) -> None:
        """Drop a token from the cache (revoked: the denylist refuses it anyway)."""
        jti = jti_of(key)
        self._cache = {d: c for d, c in self._cache.items() if c.principal.token_id != jti}

    async def verify(self, token: str) -> Principal:
        """The principal an API token stands for, or ``Unauthorized``."""
        match = _SHAPE.match(token)
        if match is None:
            raise Unauthorized("the API token is malformed", reason="malformed")
        key = match.group(1)
        token_digest = digest(token)
        now = self.clock()
        cached = self._cache.get(token_digest)
        if cached is not None and time.monotonic() - cached.checked_at <= CACHE_TTL_S:
            principal = cached.principal
            _refuse_if_unusable(
                (principal.user_id, principal.username),
                revoked=self.revocations.is_revoked(principal.token_id, None),
                expires_at=principal.expires_at,
                now=now,
            )
            if self.subjects.admits(principal):
                return principal
        self._cache.pop(token_digest, None)
        if self.repo is None:
            raise Unauthorized("tokens cannot be checked: security is not started")
        row = await self.repo.get(key)
        if row is None or not hmac.compare_digest(str(row.get("hash", "")), token_digest):
            raise Unauthorized("the API token is not valid", reason="invalid")
        user = (str(row["user_id"]), str(row.get("username", "")))
        expires_at = row["expires_at"].timestamp()
        _refuse_if_unusable(
            user,
            revoked=row.get("revoked_at") is not None or self.revocations.is_revoked(jti_of(key), None),
            expires_at=expires_at,
            now=now,
        )
        subject = await self.subjects.get(user[0])
        if subject is None or not subject.enabled:
            raise Unauthorized(
                "the API token's user does not exist or is disabled",
                details={"reason": "subject"},
                reason="subject",
            )
        scopes = row.get("scopes")
        claims: dict[str, Any] = {
            "sub": subject.user_id,
            "username": subject.username,
            "jti": jti_of(key),
            # Streams end at once when this "session" is announced revoked (shared/events/streams.py).
            "sid": jti_of(key),
            "exp": int(expires_at),
            "token_type": TOKEN_TYPE,
            "token_name": row.get("name"),
            "amr": ["api_token", *(["otp"] if row.get("mfa") else [])],
        }
        if scopes is not None:
            claims["scopes"] = list(scopes)
        principal = Principal(
            user_id=subject.user_id,
            username=subject.username,
            roles=tuple(sorted(subject.roles)),
            mfa=bool(row.get("mfa")),
            token_id=jti_of(key),
            expires_at=expires_at,
            claims=claims,
        )
        if len(self._cache) >= CACHE_MAX_ENTRIES:
            self._cache.clear()
        self._cache[token_digest] = _Cached(principal, time.monotonic())
        return principal


def _refuse_if_unusable(
    user: tuple[str, str], *, revoked: bool, expires_at: float | None, now: float
) -> None:
    if revoked:
        raise Unauthorized("the API token has been revoked", reason="revoked", user=user)
    if expires_at is not None and expires_at + CLOCK_SKEW_S <= now:
        raise Unauthorized(
            "the API token has expired", details={"reason": "expired"}, reason="expired", user=user
        )


@dataclass
class _Window:
    started_s: float
    count: int = 0  # uses after the first
    last_at: datetime | None = None
    routes: dict[str, None] = field(default_factory=dict)


class UsageTally:
    """Audits every use of an API token, one record per token and window plus the first use."""

    ROUTES = 5  # distinct routes a summary lists

    def __init__(self, audit: AuditLog, window_s: float) -> None:
        self.audit = audit
        self.window_s = window_s
        self.repo: ApiTokenRepository | None = None
        self._windows: dict[str, tuple[AuditEntry, _Window]] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self, repo: ApiTokenRepository) -> None:
        self.repo = repo
        self._task = asyncio.create_task(self._flush_loop(), name="api-token-uses")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush(everything=True)

    async def used(self, principal: Principal, entry: AuditEntry, route: str) -> None:
        """One use of ``principal``'s API token (``entry`` says by whom, from where)."""
        key = str(principal.token_id)
        now = asyncio.get_running_loop().time()
        found = self._windows.get(key)
        if found is not None and now - found[1].started_s >= self.window_s:
            del self._windows[key]
            await self._summarise(key, *found)
            found = None
        if found is not None:
            window = found[1]
            window.count += 1
            window.last_at = datetime.now(UTC)
            if len(window.routes) < self.ROUTES:
                window.routes[route] = None
            return
        self._windows[key] = (entry, _Window(now))
        await self._record(key, entry, 1, {"route": route, "window_s": self.window_s})

    async def flush(self, *, everything: bool = False) -> None:
        """Write the counts of the windows that ended (or of all)."""
        now = asyncio.get_running_loop().time()
        for key, (entry, window) in list(self._windows.items()):
            if everything or now - window.started_s >= self.window_s:
                if self._windows.get(key, (None, None))[1] is window:
                    del self._windows[key]
                await self._summarise(key, entry, window)

    async def _summarise(self, key: str, entry: AuditEntry, window: _Window) -> None:
        if window.count == 0:
            return
        details = {
            "routes": list(window.routes),
            "last_at": window.last_at.isoformat() if window.last_at else None,
            "window_s": self.window_s,
        }
        await self._record(key, entry, window.count, details)

    async def _record(self, key: str, entry: AuditEntry, count: int, details: dict[str, Any]) -> None:
        token_key = key.removeprefix(JTI_PREFIX)
        record = AuditEntry(
            action=USE_ACTION,
            resource=f"api_token:{token_key}",
            result="success",
            user_id=entry.user_id,
            username=entry.username,
            details={**details, "key_prefix": display_prefix(token_key), "count": count},
            ip=entry.ip,
            request_id=entry.request_id if count == 1 else None,
            service=entry.service,
        )
        try:
            await self.audit.record(record)
            if self.repo is not None:
                await self.repo.store.write(self.repo.count_uses(token_key, count, datetime.now(UTC)))
        except StoreError as exc:
            log.error("could not audit API token uses", extra={"count": count, "error": str(exc)})

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(min(max(self.window_s / 4, 0.05), 5.0))
            try:
                await self.flush()
            except Exception:  # keep counting later windows
                log.exception("could not write the counts of API token uses")
