"""One exception tree for the library; each error knows its HTTP status and code."""

from __future__ import annotations

from typing import Any


class ProvisioningError(Exception):
    """Root of every error the services raise on purpose."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class BadRequest(ProvisioningError):
    status = 400
    code = "bad_request"


class Unauthorized(ProvisioningError):
    status = 401
    code = "unauthorized"

    def __init__(
        self,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        reason: str | None = None,
        user: tuple[str, str] | None = None,
    ) -> None:
        super().__init__(message, details=details)
        # For the audit log, never the response: why (missing, malformed, invalid,
        # expired, revoked, …) and, when the token's signature checked out, whose it was.
        self.reason = reason or self.code
        self.user = user  # (user_id, username)


class Forbidden(ProvisioningError):
    status = 403
    code = "forbidden"


class NotFound(ProvisioningError):
    status = 404
    code = "not_found"


class NotAcceptable(ProvisioningError):
    status = 406
    code = "not_acceptable"


class Conflict(ProvisioningError):
    status = 409
    code = "conflict"


class PayloadTooLarge(ProvisioningError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(ProvisioningError):
    status = 415
    code = "unsupported_media_type"


class ValidationFailed(ProvisioningError):
    status = 422
    code = "validation_failed"


class RateLimited(ProvisioningError):
    status = 429
    code = "rate_limited"


class StoreError(ProvisioningError):
    """The database refused or failed a statement."""

    status = 503
    code = "store_error"


class StoreLocked(ProvisioningError):
    """Another process holds the embedded store's data directory."""

    code = "store_locked"
