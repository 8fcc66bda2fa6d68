"""The actor: who acts and from where, as a value a service can take instead of a request.

A handler turns its request into an :class:`Actor` (:func:`actor_of`) and passes it
to a service; the service applies its rules (a policy condition reads the actor's
address, method and path), names the actor in what it records, and writes its own
audit records through :meth:`shared.security.audit.AuditLog.record_as`. A service
never sees ``web.Request``, so it can be called and tested without HTTP.

The one mutable part is :class:`AuditMark`, shared by every actor of one request:
a service that recorded its own audit record marks it, and the audit middleware
then does not repeat the request as a generic record.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web

from shared.security.auth import PRINCIPAL, Principal
from shared.web.client import client_ip
from shared.web.keys import SERVICE_KEY, SETTINGS
from shared.web.middlewares import REQUEST_ID


class AuditMark:
    """Whether something already wrote this request's audit record."""

    __slots__ = ("recorded",)

    def __init__(self) -> None:
        self.recorded = False


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts (``principal``; ``None`` before anyone authenticated, as on ``/auth/login``)
    and the facts of the request a rule or an audit record may use."""

    principal: Principal | None
    ip: str | None = None
    request_id: str | None = None
    service: str | None = None
    method: str = ""
    path: str = ""
    user_agent: str = ""
    mark: AuditMark = field(default_factory=AuditMark, compare=False, repr=False)

    @property
    def user_id(self) -> str | None:
        return self.principal.user_id if self.principal is not None else None

    @property
    def username(self) -> str | None:
        return self.principal.username if self.principal is not None else None


AUDIT_MARK = web.RequestKey("audit_mark", AuditMark)


def actor_of(request: web.Request) -> Actor:
    """The actor of a request: its principal (once the auth middleware ran), client
    address (behind trusted proxies only), request id, service, method, path and agent."""
    mark = request.get(AUDIT_MARK)
    if mark is None:
        mark = request[AUDIT_MARK] = AuditMark()
    principal = request.get(PRINCIPAL)
    return Actor(
        principal=principal if isinstance(principal, Principal) else None,
        ip=client_ip(request, request.app[SETTINGS].trusted_proxies),
        request_id=request.get(REQUEST_ID),
        service=request.app.get(SERVICE_KEY),
        method=request.method,
        path=request.path,
        user_agent=request.headers.get("User-Agent", ""),
        mark=mark,
    )


def audited(request: web.Request) -> bool:
    """Whether a service already recorded this request's audit record through its actor."""
    mark = request.get(AUDIT_MARK)
    return mark is not None and mark.recorded
