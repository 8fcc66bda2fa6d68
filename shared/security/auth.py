"""The authentication/authorization hook every non-public route passes through.

Both services install :func:`auth_middleware`; what it consults is an
:class:`AuthBackend` kept on the app. Until the control center provides one,
:class:`OpenAccess` admits everyone (and the services say so at start).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web

from shared.web.routing import route_spec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Principal:
    """Who is asking: from a verified token, or the anonymous open-access principal."""

    user_id: str
    username: str
    roles: tuple[str, ...]
    mfa: bool = False
    token_id: str | None = None
    expires_at: float | None = None
    claims: dict[str, Any] = field(default_factory=dict)


ANONYMOUS = Principal(user_id="anonymous", username="anonymous", roles=("admin",))


class AuthBackend(Protocol):
    """Plug-in point: turn a request into a principal, then allow or refuse the action."""

    async def authenticate(self, request: web.Request) -> Principal:
        """Return the caller or raise ``Unauthorized``."""
        ...

    async def authorize(self, principal: Principal, resource: str, action: str, request: web.Request) -> None:
        """Return if allowed, else raise ``Forbidden`` naming the missing permission."""
        ...


class OpenAccess:
    """Admits everyone as an anonymous admin. For development before the control center."""

    async def authenticate(self, request: web.Request) -> Principal:
        return ANONYMOUS

    async def authorize(self, principal: Principal, resource: str, action: str, request: web.Request) -> None:
        return None


AUTH_BACKEND = web.AppKey("auth_backend", AuthBackend)
PRINCIPAL = web.RequestKey("principal", Principal)


@web.middleware
async def auth_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Authenticate and authorize every route that is not declared public."""
    spec = route_spec(request)
    if spec is None or spec.public:
        return await handler(request)
    backend = request.app[AUTH_BACKEND]
    principal = await backend.authenticate(request)
    request[PRINCIPAL] = principal
    assert spec.resource is not None and spec.action is not None
    await backend.authorize(principal, spec.resource, spec.action, request)
    return await handler(request)


def principal_of(request: web.Request) -> Principal:
    """The caller of a request that passed the auth middleware."""
    found = request.get(PRINCIPAL)
    return found if isinstance(found, Principal) else ANONYMOUS
