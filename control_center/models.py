"""Request models of the control center API (seed 004), validated before any handler runs."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, ConfigDict, Field, WithJsonSchema, field_validator, model_validator
from pydantic.json_schema import SkipJsonSchema

from control_center.users import Role
from shared.web.routing import (
    ANY,
    BOOL,
    DATETIME,
    INT,
    STR,
    JsonSchema,
    Model,
    OffsetPageQuery,
    PageQuery,
    absent_not_null,
    array,
    named,
    nullable,
    obj,
)

USERNAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$"
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
MAX_SECRET_LENGTH = 1024
PASSWORD_RULES = (
    "at least password_min_length (default 12) characters, at least 4 different ones, not only "
    "whitespace, not containing the username, not one of the 10,000 most common passwords"
)

# The policy engine's grammar (shared/security/policy.py), so a rule it cannot compile is refused
# by the model and the OpenAPI document says so.
RESOURCE_PATTERN = r"^(\*|[a-z][a-z0-9_-]*(:[A-Za-z0-9_.*/-]+)?)$"
ACTION_PATTERN = r"^(\*|[a-z][a-z0-9_]*)$"
SUBJECT_PATTERN = r"^(\*|[a-z][a-z0-9_-]*|user:[A-Za-z0-9_.@-]+)$"
# RFC 3339 date-time, as `format: date-time` means it: a date, a time and an offset.
RFC3339 = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)


def _rfc3339(value: Any) -> datetime:
    """Only RFC 3339 text: not a Unix time (``0.5``), not a bare date, not a naive time."""
    if not isinstance(value, str) or not RFC3339.match(value):
        raise ValueError("must be an RFC 3339 date-time such as 2026-01-31T12:00:00Z")
    return datetime.fromisoformat(value.replace("z", "Z"))


ActionName = Annotated[str, Field(pattern=ACTION_PATTERN, max_length=64)]
IsoDateTime = Annotated[
    datetime,
    BeforeValidator(_rfc3339),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": RFC3339.pattern}),
]


def _one_of(*names: str) -> dict[str, Any]:
    """JSON Schema for "exactly one of these fields is present" (they are never null)."""
    return {"oneOf": [{"required": [name]} for name in names]}


def _not_null(value: Any) -> Any:
    if value is None:
        raise ValueError("omit the field instead of sending null")
    return value


class LoginRequest(Model):
    """``POST /auth/login``."""

    username: str = Field(min_length=1, max_length=128)
    password: str = Field(min_length=1, max_length=MAX_SECRET_LENGTH)
    mfa_code: str | None = Field(None, max_length=64, description="a TOTP code, or one of the backup codes")


EXACTLY_ONE = "send exactly one of refresh_token or token"


class RefreshRequest(Model):
    """``POST /auth/refresh``: the refresh token, or (as in the seed) the current access token.

    The document asks for exactly one; an empty body is taken only with the console's
    refresh cookie (docs/console.md), and refused naming the field without it."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_one_of("refresh_token", "token"))

    refresh_token: (
        Annotated[str, Field(min_length=1, max_length=MAX_SECRET_LENGTH)] | SkipJsonSchema[None]
    ) = Field(None, json_schema_extra=absent_not_null)
    token: Annotated[str, Field(min_length=1, max_length=8192)] | SkipJsonSchema[None] = Field(
        None,
        json_schema_extra=absent_not_null,
        description="a still valid access token of a session; the new one expires no later than the session",
    )

    _present_is_not_null = field_validator("refresh_token", "token", mode="before")(_not_null)

    @model_validator(mode="after")
    def _one_of(self) -> RefreshRequest:
        if self.refresh_token is not None and self.token is not None:
            raise ValueError(EXACTLY_ONE)
        return self

    @property
    def empty(self) -> bool:
        return self.refresh_token is None and self.token is None


class MfaSetup(Model):
    """``POST /auth/mfa/setup``: the account's password, in the same request as the token."""

    password: str = Field(min_length=1, max_length=MAX_SECRET_LENGTH)


class MfaEnable(Model):
    """``POST /auth/mfa/enable``: the password again and the app's first code."""

    password: str = Field(min_length=1, max_length=MAX_SECRET_LENGTH)
    code: str = Field(min_length=1, max_length=64, description="the code the authenticator app shows")


class MfaDisable(Model):
    """``POST /auth/mfa/disable``: the password and a current code (TOTP or backup code)."""

    password: str = Field(min_length=1, max_length=MAX_SECRET_LENGTH)
    code: str = Field(min_length=1, max_length=64)


class MfaBackupCodes(Model):
    """``POST /auth/mfa/backup-codes``: the password and a current code (TOTP or backup code)."""

    password: str = Field(min_length=1, max_length=MAX_SECRET_LENGTH)
    code: str = Field(min_length=1, max_length=64)


class CreateUser(Model):
    """``POST /users``."""

    username: str = Field(
        pattern=USERNAME_PATTERN, description="unique regardless of case: 'Admin' is taken when 'admin' is"
    )
    email: str | None = Field(None, pattern=EMAIL_PATTERN, max_length=254)
    password: str = Field(max_length=MAX_SECRET_LENGTH, description=PASSWORD_RULES)
    roles: list[Role] = Field(min_length=1, max_length=5)
    enabled: bool = True


class UpdateUser(Model):
    """``PUT /users/{id}``: the fields given change; ``password`` is an admin's reset."""

    email: str | None = Field(None, pattern=EMAIL_PATTERN, max_length=254)
    roles: list[Role] | None = Field(None, min_length=1, max_length=5)
    enabled: bool | None = None
    password: str | None = Field(None, max_length=MAX_SECRET_LENGTH, description=PASSWORD_RULES)


class UserQuery(PageQuery):
    role: Role | None = None
    enabled: bool | None = None


class PasswordChange(Model):
    """``POST /users/me/password``."""

    current_password: str = Field(min_length=1, max_length=MAX_SECRET_LENGTH)
    new_password: str = Field(max_length=MAX_SECRET_LENGTH, description=PASSWORD_RULES)


class RuleModel(Model):
    """One rule: ``{effect, resource, action[], condition}`` as in the seed, plus ``roles``."""

    effect: Literal["Allow", "Deny", "allow", "deny"]
    resource: str = Field(
        min_length=1,
        max_length=128,
        pattern=RESOURCE_PATTERN,
        description="a resource, 'name:pattern' (servers:*) or *",
    )
    action: Annotated[list[ActionName], Field(min_length=1, max_length=64)] | ActionName = Field(
        description="one action or a non-empty list; * for any"
    )
    condition: str | None = Field(
        None,
        max_length=500,
        description=(
            "a safe expression over user.{id,username,role,roles,mfa}, "
            "request.{ip,method,path,service}, time.{hour,minute,weekday,date}, "
            "batch.{environment,check_mode,name}"
        ),
    )
    roles: list[Annotated[str, Field(pattern=SUBJECT_PATTERN, max_length=128)]] | None = Field(
        None,
        max_length=50,
        description="whom the rule is about: role names, user:<name> or *; everyone if absent",
    )


class CreatePolicy(Model):
    """``POST /policies``."""

    name: str = Field(min_length=1, max_length=128)
    version: str = Field("1.0.0", min_length=1, max_length=32)
    description: str | None = Field(None, max_length=2000)
    rules: list[RuleModel] = Field(max_length=1000)
    enabled: bool = True


class UpdatePolicy(Model):
    """``PUT /policies/{id}``: the fields given change; the previous version is kept."""

    name: str | None = Field(None, min_length=1, max_length=128)
    version: str | None = Field(None, min_length=1, max_length=32)
    description: str | None = Field(None, max_length=2000)
    rules: list[RuleModel] | None = Field(None, max_length=1000)
    enabled: bool | None = None


class AuditQuery(PageQuery):
    """``GET /audit/logs``: the seed's filters; a trailing ``*`` matches a prefix."""

    user_id: str | None = None
    action: str | None = None
    resource: str | None = None
    result: str | None = None
    from_: IsoDateTime | None = Field(None, alias="from")
    to: IsoDateTime | None = None
    format: Literal["json", "ndjson", "csv"] = "json"

    @field_validator("from_", "to")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


# -- response schemas: what each route answers in the envelope's ``data`` -------------------

ROLE: JsonSchema = {"enum": [str(r) for r in Role]}
USER_FIELDS: dict[str, JsonSchema] = {
    "id": STR,
    "username": STR,
    "email": nullable(STR),
    "roles": array(ROLE),
}
USER_SUMMARY = named("UserSummary", obj(USER_FIELDS))
USER_VIEW = named(
    "User",
    obj(
        {
            **USER_FIELDS,
            "enabled": BOOL,
            "created_at": nullable(DATETIME),
            "last_login": nullable(DATETIME),
            "mfa_enabled": BOOL,
            "backup_codes_left": INT,
            "locked_until": nullable(DATETIME),
        }
    ),
)
USER_CREATED = obj({**USER_FIELDS, "enabled": BOOL})
LOGIN_RESULT = named(
    "LoginResult",
    {
        "oneOf": [
            obj(
                {
                    "token": STR,
                    "expires_at": DATETIME,
                    "refresh_token": STR,
                    "refresh_expires_at": DATETIME,
                    "user": USER_SUMMARY,
                }
            ),
            obj(
                {
                    "token": STR,
                    "expires_at": DATETIME,
                    "refresh_expires_at": DATETIME,
                    "user": USER_SUMMARY,
                },
            ),
            obj(
                {
                    "mfa_setup_required": {"const": True},
                    "setup_token": STR,
                    "expires_at": DATETIME,
                    "user": USER_SUMMARY,
                }
            ),
        ]
    },
)
REFRESH_RESULT = {
    "oneOf": [
        obj({"token": STR, "expires_at": DATETIME, "refresh_token": STR, "refresh_expires_at": DATETIME}),
        obj({"token": STR, "expires_at": DATETIME}),
    ]
}
MFA_SETUP = obj({"secret": STR, "otpauth_uri": STR, "qr_svg": STR})
BACKUP_CODES = obj({"backup_codes": array(STR)})
MFA_ENABLED = obj({"backup_codes": array(STR), "message": STR})
PERMISSIONS = named(
    "Permissions",
    obj(
        {
            "user": obj({"id": STR, "username": STR, "roles": array(STR)}),
            "permissions": array(
                obj(
                    {
                        "resource": STR,
                        "action": STR,
                        "conditional": {
                            **BOOL,
                            "description": "allowed only when the policy's condition holds for the request",
                        },
                    }
                )
            ),
        }
    ),
)
JWKS = obj({"keys": array({"type": "object", "required": ["kty"]})})
RULE_VIEW = obj(
    {
        "effect": {"enum": ["Allow", "Deny"]},
        "resource": STR,
        "action": array(STR),
        "condition": nullable(STR),
        "roles": array(STR),
    },
    optional=("roles",),
)
POLICY_FIELDS: dict[str, JsonSchema] = {
    "id": STR,
    "name": STR,
    "version": STR,
    "description": nullable(STR),
    "rules": array(RULE_VIEW),
    "enabled": BOOL,
    "revision": INT,
    "created_at": nullable(DATETIME),
    "updated_at": nullable(DATETIME),
    "created_by": nullable(STR),
    "updated_by": nullable(STR),
}
POLICY_VIEW = named("Policy", obj(POLICY_FIELDS))
POLICY_VERSION = named("PolicyVersion", obj({**POLICY_FIELDS, "version_id": STR}))
POLICY_CREATED = obj({"id": STR, "name": STR, "version": STR})
AUDIT_RECORD = named(
    "AuditRecord",
    obj(
        {
            "id": STR,
            "seq": nullable(INT),
            "timestamp": ANY,
            "user_id": nullable(STR),
            "username": nullable(STR),
            "action": nullable(STR),
            "resource": nullable(STR),
            "result": nullable(STR),
            "details": {"type": "object"},
            "ip": nullable(STR),
            "request_id": nullable(STR),
            "service": nullable(STR),
            "prev_hash": nullable(STR),
            "hash": nullable(STR),
        }
    ),
)
AUDIT_VERIFY = obj(
    {"valid": BOOL, "records": INT, "broken_at": ANY, "reason": STR},
    optional=("broken_at", "reason"),
    extra=True,
)
AUDIT_EXPORTS: dict[str, JsonSchema] = {
    "application/x-ndjson": {
        "schema": {"type": "string", "description": "one AuditRecord JSON object per line"}
    },
    "text/csv": {"schema": {"type": "string", "description": "a header line, then one record per line"}},
}
WEBHOOK_FIELDS: dict[str, JsonSchema] = {
    "id": STR,
    "url": STR,
    "events": array(STR),
    "description": STR,
    "enabled": BOOL,
    "source": STR,
    "consecutive_failures": INT,
    "disabled_reason": nullable(STR),
    "paused": BOOL,
    "paused_reason": nullable(STR),
    "previous_secret_expires_at": nullable(DATETIME),
    "created_at": nullable(DATETIME),
    "updated_at": nullable(DATETIME),
    "created_by": nullable(STR),
    "last_success_at": nullable(DATETIME),
    "last_failure_at": nullable(DATETIME),
}
WEBHOOK_VIEW = named("Webhook", obj(WEBHOOK_FIELDS))
WEBHOOK_WITH_SECRET = named(
    "WebhookWithSecret", obj({**WEBHOOK_FIELDS, "secret": {"type": "string", "pattern": "^whsec_"}})
)
WEBHOOK_DELETED = obj({"id": STR, "deleted": {"const": True}})
WEBHOOK_EVENTS = obj({"events": array(STR), "patterns": array(STR)})
DELIVERY = named(
    "WebhookDelivery",
    obj(
        {
            "id": STR,
            "webhook_id": nullable(STR),
            "event": nullable(STR),
            "status": {"enum": ["pending", "delivered", "failed", "cancelled"]},
            "attempt": INT,
            "status_code": nullable(INT),
            "latency_ms": nullable({"type": "number"}),
            "error": nullable(STR),
            "created_at": nullable(DATETIME),
            "delivered_at": nullable(DATETIME),
            "next_attempt_at": nullable(DATETIME),
            "redelivered_from": nullable(STR),
            "payload": {"type": "object"},
            "attempts": array(
                obj(
                    {
                        "attempt": nullable(INT),
                        "at": nullable(DATETIME),
                        "status_code": nullable(INT),
                        "latency_ms": nullable({"type": "number"}),
                        "error": nullable(STR),
                        "response": ANY,
                    }
                )
            ),
        },
        optional=("payload", "attempts"),
    ),
)

PASSWORD_FIELDS = (("CreateUser", "password"), ("UpdateUser", "password"), ("PasswordChange", "new_password"))


def document_password_length(min_length: int, doc: JsonSchema) -> None:
    """The running ``password_min_length`` in the document (a setting, so not in the model)."""
    schemas = doc["components"]["schemas"]
    for model, name in PASSWORD_FIELDS:
        prop = schemas.get(model, {}).get("properties", {}).get(name)
        if prop is None:
            continue
        for variant in prop.get("anyOf", [prop]):
            if variant.get("type") == "string":
                variant["minLength"] = min_length


# -- API tokens ------------------------------------------------------------------------------

# resource:action, in the policy grammar (the resource may hold one ":", as ext:hello)
SCOPE_PATTERN = r"^(\*|[a-z][a-z0-9_-]*(:[A-Za-z0-9_.*/-]+)?):(\*|[a-z][a-z0-9_]*)$"
TOKEN_NAME_PATTERN = r"^[^\x00-\x1f\x7f]{1,100}$"


class CreateApiToken(Model):
    """``POST /auth/tokens``: a named token for the caller."""

    name: str = Field(min_length=1, max_length=100, pattern=TOKEN_NAME_PATTERN, description="what it is for")
    expires_in_days: int = Field(ge=1, le=3650, description="lifetime; at most api_token_max_days (365)")
    scopes: list[Annotated[str, Field(pattern=SCOPE_PATTERN, max_length=200)]] | None = Field(
        None,
        max_length=64,
        description="resource:action pairs narrowing the token (within your own rights); absent: all of them",
    )


class ApiTokenQuery(OffsetPageQuery):
    """``GET /auth/tokens``: your own tokens; ``all`` or ``user_id`` need tokens:manage."""

    user_id: str | None = Field(None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    all: bool = False
    active: bool = Field(False, description="only tokens neither revoked nor expired")


API_TOKEN_VIEW = named(
    "ApiToken",
    obj(
        {
            "id": STR,
            "name": STR,
            "prefix": {**STR, "description": "pvt_<id>: how the token starts"},
            "user_id": STR,
            "username": STR,
            "scopes": nullable(array(STR)),
            "created_at": DATETIME,
            "expires_at": DATETIME,
            "revoked_at": nullable(DATETIME),
            "last_used_at": nullable(DATETIME),
            "uses": INT,
            "active": BOOL,
        }
    ),
)
API_TOKEN_CREATED = named(
    "ApiTokenCreated",
    obj(
        {
            "token": {**STR, "description": "the secret: shown once, never again"},
            "api_token": API_TOKEN_VIEW,
        }
    ),
)
