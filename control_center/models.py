"""Request models of the control center API (seed 004), validated before any handler runs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import Field, field_validator, model_validator

from control_center.users import Role
from shared.http import Model, PageQuery

USERNAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$"
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
MAX_SECRET_LENGTH = 1024
PASSWORD_RULES = (
    "at least password_min_length (default 12) characters, at least 4 different ones, not only "
    "whitespace, not containing the username, not one of the 10,000 most common passwords"
)


class LoginRequest(Model):
    """``POST /auth/login``."""

    username: str = Field(min_length=1, max_length=128)
    password: str = Field(min_length=1, max_length=MAX_SECRET_LENGTH)
    mfa_code: str | None = Field(None, max_length=64, description="a TOTP code, or one of the backup codes")


class RefreshRequest(Model):
    """``POST /auth/refresh``: the refresh token, or (as in the seed) the current access token."""

    refresh_token: str | None = Field(None, min_length=1, max_length=MAX_SECRET_LENGTH)
    token: str | None = Field(
        None,
        min_length=1,
        max_length=8192,
        description=(
            "a still valid access token of a session; the new one expires no later than the session"
        ),
    )

    @model_validator(mode="after")
    def _one_of(self) -> RefreshRequest:
        if (self.refresh_token is None) == (self.token is None):
            raise ValueError("send exactly one of refresh_token or token")
        return self


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
        min_length=1, max_length=128, description="a resource, 'name:pattern' (servers:*) or *"
    )
    action: list[str] | str = Field(description="one action or a list; * for any")
    condition: str | None = Field(
        None,
        max_length=500,
        description=(
            "a safe expression over user.{id,username,role,roles,mfa}, "
            "request.{ip,method,path,service}, time.{hour,minute,weekday,date}, "
            "batch.{environment,check_mode,name}"
        ),
    )
    roles: list[str] | None = Field(
        None, max_length=50, description="whom the rule is about; everyone if absent"
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
    from_: datetime | None = Field(None, alias="from")
    to: datetime | None = None
    format: Literal["json", "ndjson", "csv"] = "json"

    @field_validator("from_", "to")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value
