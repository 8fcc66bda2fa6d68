"""Multi-factor authentication: TOTP (pyotp) and single-use backup codes.

TOTP: 6 digits, 30 s steps, one step of drift either way. The last accepted
step is stored and only a later one is accepted, so a code works once even
inside its window (RFC 6238 §5.2). Backup codes: 10, random (80 bits each),
stored as SHA-256 hashes and removed as they are used — a slow hash buys
nothing for secrets this long, and login would pay it ten times.

A stolen access token must not be enough to change a second factor: the
routes re-check the password first (``LoginService.reauthenticate``), and
disabling or new backup codes need a current code as well. An account that
must use MFA (``mfa_required_roles``) and has none yet enrols only with the
setup token of a fresh password login (:meth:`MfaService.check_enrolment`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

import pyotp
import segno

from control_center.events import EventType
from control_center.passwords import PasswordHasher
from control_center.repositories import UserRepository
from control_center.sessions import SessionService
from control_center.users import User
from shared.errors import Conflict, Forbidden, Unauthorized, ValidationFailed
from shared.events.bus import EventBus
from shared.security.actor import Actor
from shared.security.audit import AuditLog
from shared.security.tokens import utcnow
from shared.settings import Settings
from shared.store.store import Store

TOTP_DIGITS = 6
TOTP_STEP_S = 30
TOTP_DRIFT_STEPS = 1
BACKUP_CODE_COUNT = 10
BACKUP_CODE_BYTES = 10  # 80 bits, 16 base32 characters
QR_BORDER_MODULES = 4  # the quiet zone ISO/IEC 18004 asks for; scanners miss less on dark pages
QR_SCALE = 4
_TOTP_CODE = re.compile(r"^\d{6}$")


def hash_backup_code(code: str) -> str:
    normal = re.sub(r"[\s-]", "", code).lower()
    return hashlib.sha256(b"backup-code:" + normal.encode()).hexdigest()


def new_backup_codes() -> list[str]:
    codes = []
    for _ in range(BACKUP_CODE_COUNT):
        raw = base64.b32encode(secrets.token_bytes(BACKUP_CODE_BYTES)).decode().lower()
        codes.append("-".join(raw[i : i + 4] for i in range(0, len(raw), 4)))
    return codes


def matching_step(secret: str, code: str, now_s: float) -> int | None:
    """The time step (current ±1) whose code this is, or None."""
    if not _TOTP_CODE.match(code):
        return None
    totp = pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_STEP_S)
    current = int(totp.timecode(now_s))
    for step in range(current - TOTP_DRIFT_STEPS, current + TOTP_DRIFT_STEPS + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def qr_svg(uri: str) -> str:
    """The QR code as SVG: dark modules on an opaque white background, 4-module quiet zone."""
    buffer = io.BytesIO()
    segno.make(uri, error="m").save(
        buffer,
        kind="svg",
        scale=QR_SCALE,
        xmldecl=False,
        border=QR_BORDER_MODULES,
        dark="black",
        light="white",
    )
    return buffer.getvalue().decode()


@dataclass(frozen=True)
class Enrolment:
    secret: str
    otpauth_uri: str
    qr_svg: str


class MfaService:
    """Enrolment, codes at login, disabling, backup codes, and an admin's reset."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        hasher: PasswordHasher,
        sessions: SessionService,
        bus: EventBus,
        audit: AuditLog,
    ) -> None:
        self.repo = UserRepository(store)
        self.settings = settings
        self.hasher = hasher
        self.sessions = sessions
        self.bus = bus
        self.audit = audit
        self.clock: Callable[[], float] = time.time  # tests move time with this

    def required_for(self, user: User) -> bool:
        return user.mfa_enabled or any(r in self.settings.mfa_required_roles for r in user.roles)

    def check_enrolment(self, user: User, *, with_setup_token: bool) -> None:
        """Whether this kind of token may enrol this user: 409 if MFA is on already, 403
        when an account that must use MFA tries with anything but a setup token."""
        if user.mfa_enabled:
            raise Conflict("MFA is already enabled; disable it first to enrol a new device")
        if not with_setup_token and self.required_for(user):
            raise Forbidden(
                "this account must use MFA and enrols only with the setup_token of a fresh "
                "password login: POST /auth/login, then POST /auth/mfa/setup with that token",
                details={"mfa_setup_required": True},
            )

    async def setup(self, user: User) -> Enrolment:
        """Start enrolment: a new secret, kept pending until a code proves the app has it."""
        if user.mfa_enabled:
            raise Conflict("MFA is already enabled; disable it first to enrol a new device")
        secret = pyotp.random_base32()
        uri = pyotp.TOTP(secret).provisioning_uri(name=user.username, issuer_name=self.settings.mfa_issuer)
        await self.repo.store.write(self.repo.merge(user.id, {"mfa_pending_secret": secret}))
        return Enrolment(secret, uri, qr_svg(uri))

    async def enable(self, user: User, code: str) -> list[str]:
        """Finish enrolment with a first code; returns the backup codes (shown once)."""
        if user.mfa_enabled:
            raise Conflict("MFA is already enabled")
        if not user.mfa_pending_secret:
            raise Conflict("start with POST /auth/mfa/setup")
        step = matching_step(user.mfa_pending_secret, code, self.clock())
        if step is None:
            raise ValidationFailed(
                "code: not the current code of the authenticator app",
                details={"fields": [{"field": "code", "type": "invalid", "message": "wrong code"}]},
            )
        codes = new_backup_codes()
        await self.repo.store.write(
            self.repo.merge(
                user.id,
                {
                    "mfa_enabled": True,
                    "mfa_secret": user.mfa_pending_secret,
                    "mfa_last_step": step,
                    "backup_codes": [hash_backup_code(c) for c in codes],
                    "mfa_enabled_at": utcnow(),
                },
            ),
            self.repo.unset(user.id, ["mfa_pending_secret"]),
        )
        self.bus.publish(
            EventType.USER_CHANGED, {"user_id": user.id, "username": user.username, "change": "mfa_enabled"}
        )
        return codes

    async def consume(self, user: User, code: str) -> str | None:
        """Accept a TOTP or backup code once; returns which kind it was, or None."""
        if not user.mfa_enabled or not user.mfa_secret or not code:
            return None
        if _TOTP_CODE.match(code):
            step = matching_step(user.mfa_secret, code, self.clock())
            if step is None:
                return None
            [won] = await self.repo.store.write(self.repo.use_totp_step(user.id, step))
            return "totp" if won else None
        hashed = hash_backup_code(code)
        if hashed not in user.backup_codes:
            return None
        [won] = await self.repo.store.write(self.repo.use_backup_code(user.id, hashed))
        return "backup_code" if won else None

    async def disable(self, user: User, code: str) -> None:
        """Turn MFA off with a current code (the caller has checked the password)."""
        if not user.mfa_enabled:
            raise Conflict("MFA is not enabled")
        if await self.consume(user, code) is None:
            raise Unauthorized("the code is not correct")
        await self._clear(user)
        self.bus.publish(
            EventType.USER_CHANGED, {"user_id": user.id, "username": user.username, "change": "mfa_disabled"}
        )

    async def regenerate_backup_codes(self, user: User, code: str) -> list[str]:
        """New backup codes for a current code (the caller has checked the password)."""
        if not user.mfa_enabled:
            raise Conflict("MFA is not enabled")
        if await self.consume(user, code) is None:
            raise Unauthorized("the code is not correct")
        codes = new_backup_codes()
        await self.repo.store.write(
            self.repo.merge(user.id, {"backup_codes": [hash_backup_code(c) for c in codes]})
        )
        return codes

    async def reset(self, actor: Actor, user: User) -> None:
        """An admin's reset (a lost device): MFA off, sessions ended; enrol again at login."""
        await self._clear(user)
        await self.sessions.revoke_all(user.id, reason="mfa_reset")
        self.bus.publish(
            EventType.USER_CHANGED, {"user_id": user.id, "username": user.username, "change": "mfa_reset"}
        )
        await self.audit.record_as(
            actor,
            "users.mfa_reset",
            f"users/{user.id}",
            "success",
            details={"target_user_id": user.id, "target_username": user.username},
        )

    async def _clear(self, user: User) -> None:
        await self.repo.store.write(
            self.repo.merge(user.id, {"mfa_enabled": False, "backup_codes": []}),
            self.repo.unset(user.id, ["mfa_secret", "mfa_pending_secret", "mfa_last_step"]),
        )
