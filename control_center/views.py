"""Every shape the control center's API answers with, built from records and rows.

Handlers call a service, then one of these; nothing else turns a user, a policy, an
audit record, a webhook or a delivery into JSON. What must never leave the service
(password hashes, TOTP secrets, webhook secrets) is left out here, field by field.
``control_center/models.py`` holds the matching response schemas.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from control_center.users import User
from shared.security.audit import HASHED_FIELDS
from shared.security.policy import Rule
from shared.security.tokens import utcnow
from shared.store.codec import iso
from shared.webhooks.repository import PENDING
from shared.webhooks.subscriptions import Webhook

if TYPE_CHECKING:
    from control_center.login import LoginResult, Refreshed
    from control_center.mfa import Enrolment
    from control_center.permissions import Permissions

# -- users and logins ------------------------------------------------------------------------


def user_summary(user: User) -> dict[str, Any]:
    """The seed's login ``user`` object."""
    return {"id": user.id, "username": user.username, "email": user.email, "roles": list(user.roles)}


def user_view(user: User) -> dict[str, Any]:
    """``/users`` entries and ``/users/me``."""
    return {
        **user_summary(user),
        "enabled": user.enabled,
        "created_at": iso(user.created_at),
        "last_login": iso(user.last_login),
        "mfa_enabled": user.mfa_enabled,
        "backup_codes_left": len(user.backup_codes) if user.mfa_enabled else 0,
        "locked_until": iso(user.locked_until) if user.locked(utcnow()) else None,
    }


def user_created_view(user: User) -> dict[str, Any]:
    return {**user_summary(user), "enabled": user.enabled}


def login_view(result: LoginResult, *, refresh_in_cookie: bool = False) -> dict[str, Any]:
    """Tokens, or (MFA enrolment pending) a setup token; without the refresh token when
    it travels in the console's cookie instead."""
    if result.setup_token is not None:
        return {
            "mfa_setup_required": True,
            "setup_token": result.setup_token,
            "expires_at": result.expires_at,
            "user": user_summary(result.user),
        }
    out = {
        "token": result.token,
        "expires_at": result.expires_at,
        "refresh_token": result.refresh_token,
        "refresh_expires_at": result.refresh_expires_at,
        "user": user_summary(result.user),
    }
    if refresh_in_cookie:
        del out["refresh_token"]
    return out


def refreshed_view(refreshed: Refreshed, *, refresh_in_cookie: bool = False) -> dict[str, Any]:
    """A new access token; with the next refresh token when one was spent, unless it
    travels in the console's cookie."""
    out: dict[str, Any] = {"token": refreshed.token, "expires_at": refreshed.expires_at}
    if refreshed.refresh_token is not None and not refresh_in_cookie:
        out["refresh_token"] = refreshed.refresh_token
        out["refresh_expires_at"] = refreshed.refresh_expires_at
    return out


def permissions_view(permissions: Permissions) -> dict[str, Any]:
    """``/auth/me/permissions``: who is asking, and each pair they may use."""
    principal = permissions.principal
    return {
        "user": {"id": principal.user_id, "username": principal.username, "roles": list(principal.roles)},
        "permissions": [
            {"resource": p.resource, "action": p.action, "conditional": p.conditional}
            for p in permissions.allowed
        ],
    }


def enrolment_view(enrolment: Enrolment) -> dict[str, Any]:
    return {"secret": enrolment.secret, "otpauth_uri": enrolment.otpauth_uri, "qr_svg": enrolment.qr_svg}


# -- policies ----------------------------------------------------------------------------------


def policy_view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "version": row["version"],
        "description": row.get("description"),
        "rules": [Rule.from_doc(r).to_doc() for r in row.get("rules", [])],
        "enabled": bool(row.get("enabled", True)),
        "revision": row.get("revision", 1),
        "created_at": iso(row.get("created_at")),
        "updated_at": iso(row.get("updated_at")),
        "created_by": row.get("created_by"),
        "updated_by": row.get("updated_by"),
    }


def policy_version_view(row: dict[str, Any]) -> dict[str, Any]:
    """A previous version of a policy: the policy as it was, and the version's own id."""
    view = policy_view({**row, "id": row.get("policy_id")})
    view["version_id"] = row["id"]
    return view


# -- audit -------------------------------------------------------------------------------------

AUDIT_COLUMNS = (*HASHED_FIELDS, "hash")  # every field of a record, in the chain's order


def audit_record_view(row: dict[str, Any]) -> dict[str, Any]:
    view = {name: row.get(name) for name in AUDIT_COLUMNS}
    view["details"] = row.get("details") or {}
    return view


# -- webhooks ----------------------------------------------------------------------------------


def webhook_view(webhook: Webhook, *, secret: str | None = None) -> dict[str, Any]:
    """A webhook subscription; its secret only when given (the answer that creates or
    rotates it: shown once, nowhere else)."""
    grace = webhook.previous_secret_expires_at
    out: dict[str, Any] = {
        "id": webhook.id,
        "url": webhook.url,
        "events": list(webhook.events),
        "description": webhook.description,
        "enabled": webhook.enabled,
        "source": webhook.source,
        "consecutive_failures": webhook.consecutive_failures,
        "disabled_reason": webhook.disabled_reason,
        "paused": webhook.paused,
        "paused_reason": webhook.paused_reason,
        "previous_secret_expires_at": (
            iso(datetime.fromtimestamp(grace, UTC)) if grace and grace > time.time() else None
        ),
        "created_at": iso(webhook.created_at),
        "updated_at": iso(webhook.updated_at),
        "created_by": webhook.created_by,
        "last_success_at": iso(webhook.last_success_at),
        "last_failure_at": iso(webhook.last_failure_at),
    }
    if secret is not None:
        out["secret"] = secret
    return out


def delivery_view(row: dict[str, Any], attempts: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A delivery; with its payload when the row holds it, and its attempts when given."""
    out: dict[str, Any] = {
        "id": str(row["id"]),
        "webhook_id": row.get("webhook_id"),
        "event": row.get("event"),
        "status": row.get("status"),
        "attempt": int(row.get("attempts") or 0),
        "status_code": row.get("last_status_code"),
        "latency_ms": row.get("last_latency_ms"),
        "error": row.get("last_error"),
        "created_at": iso(row.get("created_at")),
        "delivered_at": iso(row.get("delivered_at")),
        "next_attempt_at": (
            iso(datetime.fromtimestamp(float(row["due_at"]), UTC))
            if row.get("status") == PENDING and row.get("due_at")
            else None
        ),
        "redelivered_from": row.get("redelivered_from"),
    }
    if "body" in row:
        out["payload"] = json.loads(row["body"])
    if attempts is not None:
        out["attempts"] = [
            {
                "attempt": a.get("attempt"),
                "at": iso(a.get("at")),
                "status_code": a.get("status_code"),
                "latency_ms": a.get("latency_ms"),
                "error": a.get("error"),
                "response": a.get("response"),
            }
            for a in attempts
        ]
    return out
