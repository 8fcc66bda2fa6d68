"""The control center's event vocabulary: its security and admin events, all of the
``security`` kind (``audit:read``), none sent as a webhook; and which of them end
the live streams of the session or user they name.

To add an event: a member of :class:`EventType` and an entry in
:data:`VOCABULARY`. ``create_app`` registers the vocabulary with the bus (see
shared/events/registry.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from shared.events.registry import EventSpec, Kind, Revocation, Vocabulary
from shared.webhooks.subscriptions import CHANGED_EVENT


class EventType(StrEnum):
    USER_LOGIN = "UserLogin"
    USER_LOGOUT = "UserLogout"
    LOGIN_FAILED = "LoginFailed"
    ACCOUNT_LOCKED = "AccountLocked"
    MFA_ENROLLED = "MfaEnrolled"
    MFA_CHANGED = "MfaChanged"
    TOKEN_REFRESHED = "TokenRefreshed"
    TOKEN_REUSE_DETECTED = "TokenReuseDetected"
    SESSION_REVOKED = "SessionRevoked"
    USER_CREATED = "UserCreated"
    USER_CHANGED = "UserChanged"
    USER_DELETED = "UserDeleted"
    POLICY_CHANGED = "PolicyChanged"
    AUDIT_LOGGED = "AuditLogged"
    # Published by the webhooks (shared/webhooks) whose management API this service hosts.
    WEBHOOK_CHANGED = CHANGED_EVENT


SECURITY = Kind("security", "audit", "read")


def _reason(data: Mapping[str, Any]) -> str:
    return str(data.get("reason") or data.get("change") or "revoked")


def session_revoked(data: Mapping[str, Any]) -> Revocation | None:
    """Logout, session revoke, refresh-token reuse, a user disabled, deleted or given other
    roles: the streams opened with that session's tokens end."""
    session_id = data.get("session_id")
    return Revocation(_reason(data), session_id=session_id) if session_id is not None else None


def user_revoked(data: Mapping[str, Any]) -> Revocation | None:
    """A ``UserChanged`` with ``revoked`` set: every stream of that user ends."""
    user_id = data.get("user_id")
    if not data.get("revoked") or user_id is None:
        return None
    return Revocation(_reason(data), user_id=user_id)


_REVOKES = {EventType.SESSION_REVOKED: session_revoked, EventType.USER_CHANGED: user_revoked}

VOCABULARY = Vocabulary(
    "control_center",
    kinds=(SECURITY,),
    events=tuple(EventSpec(t, SECURITY.name, revokes=_REVOKES.get(t)) for t in EventType),
)
