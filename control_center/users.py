"""Users: the record, the rules around changing one, and the first admin.

Rules kept here: usernames are unique regardless of case (``Admin`` cannot
join ``admin``; a UNIQUE index on the lowercased name backs the check);
passwords pass the policy of :mod:`control_center.passwords` and are stored
as argon2id hashes; the last enabled admin can be neither deleted, nor
disabled, nor demoted (checked inside the same transaction as the change);
deleting, disabling or changing the roles of a user ends their sessions at once
(and the open event streams of those sessions, through ``SessionRevoked``),
and makes every service look the user up again before it honours their tokens
(``shared/security/subjects.py``).

The first admin's generated password is shown once: on the terminal when
stderr is one, else written to ``<data dir>/initial-admin-password`` (0600)
and only that path is logged, since logs are kept and shipped.
"""

from __future__ import annotations

import logging
import os
import sys
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from control_center.events import EventType
from control_center.passwords import PasswordHasher, generate_password
from control_center.repositories import LAST_ADMIN, UserRepository, username_key
from control_center.sessions import SessionService
from shared.errors import Conflict, NotFound, StoreError, Unauthorized, ValidationFailed
from shared.events.bus import EventBus
from shared.security.subjects import Subjects
from shared.security.tokens import utcnow
from shared.store.keyset import Listing
from shared.store.store import Store
from shared.store.writes import Write

log = logging.getLogger(__name__)

BOOTSTRAP_ADMIN = "admin"
INITIAL_PASSWORD_FILE = "initial-admin-password"


class Role(StrEnum):
    ADMIN = "admin"
    OPERATOR = "operator"
    DEVELOPER = "developer"
    VIEWER = "viewer"
    AUDITOR = "auditor"


@dataclass(frozen=True)
class User:
    """A user as stored; ``control_center.views.user_view`` is what the API shows."""

    id: str
    username: str
    email: str | None
    roles: tuple[str, ...]
    enabled: bool
    password_hash: str
    created_at: datetime | None = None
    updated_at: datetime | None = None
    last_login: datetime | None = None
    failed_logins: int = 0
    locked_until: datetime | None = None
    mfa_enabled: bool = False
    mfa_secret: str | None = None
    mfa_pending_secret: str | None = None
    backup_codes: tuple[str, ...] = field(default=(), repr=False)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> User:
        return cls(
            id=str(row["id"]),
            username=row["username"],
            email=row.get("email"),
            roles=tuple(row.get("roles", [])),
            enabled=bool(row.get("enabled", True)),
            password_hash=row.get("password_hash", ""),
            created_at=row.get("created_at"),
            updated_at=row.get("updated_at"),
            last_login=row.get("last_login"),
            failed_logins=int(row.get("failed_logins", 0)),
            locked_until=row.get("locked_until"),
            mfa_enabled=bool(row.get("mfa_enabled", False)),
            mfa_secret=row.get("mfa_secret"),
            mfa_pending_secret=row.get("mfa_pending_secret"),
            backup_codes=tuple(row.get("backup_codes", [])),
        )

    def locked(self, now: datetime) -> bool:
        return self.locked_until is not None and self.locked_until > now


@dataclass(frozen=True)
class UserChanges:
    """A partial update; ``None`` leaves a field as it is."""

    email: str | None = None
    roles: list[str] | None = None
    enabled: bool | None = None
    password: str | None = None


class UserService:
    def __init__(
        self,
        store: Store,
        hasher: PasswordHasher,
        sessions: SessionService,
        bus: EventBus,
        subjects: Subjects,
    ) -> None:
        self.repo = UserRepository(store)
        self.hasher = hasher
        self.sessions = sessions
        self.bus = bus
        self.subjects = subjects  # told of every change, so tokens are checked again

    async def get(self, user_id: str) -> User:
        row = await self.repo.get(user_id)
        if row is None:
            raise NotFound(f"no user with id {user_id!r}")
        return User.from_row(row)

    async def find(self, username: str) -> User | None:
        row = await self.repo.by_username(username)
        return User.from_row(row) if row else None

    async def page(
        self,
        *,
        role: str | None,
        enabled: bool | None,
        limit: int,
        offset: int,
        cursor: str | None = None,
    ) -> Listing[User]:
        """Users oldest first, filtered; counted when unfiltered."""
        listing = await self.repo.page(role=role, enabled=enabled, limit=limit, offset=offset, cursor=cursor)
        return Listing([User.from_row(r) for r in listing.items], listing.total, listing.next_cursor)

    async def create(
        self, *, username: str, email: str | None, password: str, roles: list[str], enabled: bool = True
    ) -> User:
        self.hasher.check_policy(password, username=username)
        if await self.repo.by_username(username) is not None:
            raise Conflict(
                f"a user named {username!r} already exists (usernames are unique regardless of case)",
                details={"fields": [{"field": "username", "type": "taken", "message": "already exists"}]},
            )
        now = utcnow()
        user_id = uuid.uuid4().hex
        row = {
            "username": username,
            "username_key": username_key(username),
            "email": email,
            "roles": sorted(set(roles)),
            "enabled": enabled,
            "password_hash": await self.hasher.hash(password),
            "created_at": now,
            "updated_at": now,
            "failed_logins": 0,
            "mfa_enabled": False,
        }
        try:
            await self.repo.store.write(
                *self.repo.create(user_id, {k: v for k, v in row.items() if v is not None})
            )
        except StoreError as exc:  # the unique index caught a concurrent create
            raise Conflict(
                f"a user named {username!r} already exists (usernames are unique regardless of case)",
                details={"fields": [{"field": "username", "type": "taken", "message": "already exists"}]},
            ) from exc
        self.subjects.forget(user_id)
        user = await self.get(user_id)
        self.bus.publish(
            EventType.USER_CHANGED, {"user_id": user_id, "username": username, "change": "created"}
        )
        return user

    async def update(self, user_id: str, changes: UserChanges) -> User:
        user = await self.get(user_id)
        patch: dict[str, Any] = {"updated_at": utcnow()}
        if changes.email is not None:
            patch["email"] = changes.email
        if changes.roles is not None:
            patch["roles"] = sorted(set(changes.roles))
        if changes.enabled is not None:
            patch["enabled"] = changes.enabled
        if changes.password is not None:
            self.hasher.check_policy(changes.password, username=user.username)
            patch["password_hash"] = await self.hasher.hash(changes.password)
        if changes.enabled is True:
            patch["failed_logins"] = 0
        loses_admin = (Role.ADMIN in user.roles and user.enabled) and (
            changes.enabled is False or (changes.roles is not None and Role.ADMIN not in changes.roles)
        )
        writes: list[Write] = [self.repo.merge(user_id, patch)]
        if loses_admin:
            writes.insert(0, self.repo.last_admin_guard(user_id))
        if changes.enabled is True:
            writes.append(self.repo.unset(user_id, ["locked_until"]))
            writes.append(self.repo.clear_failures(user_id))
        await self._guarded(writes, "demote or disable")
        self.subjects.forget(user_id)
        ends_sessions = (
            changes.enabled is False
            or (changes.roles is not None and set(changes.roles) != set(user.roles))
            or changes.password is not None
        )
        if ends_sessions:
            await self.sessions.revoke_all(user_id, reason="user_changed")
        updated = await self.get(user_id)
        self.bus.publish(
            EventType.USER_CHANGED,
            {
                "user_id": user_id,
                "username": user.username,
                "change": "updated",
                "fields": sorted(k for k in patch if k != "updated_at" and k != "password_hash"),
                # Streams of this user close at once (shared/events/streams.py).
                "revoked": ends_sessions,
            },
        )
        return updated

    async def delete(self, user_id: str) -> User:
        user = await self.get(user_id)
        writes: list[Write] = [self.repo.delete(user_id), self.repo.clear_failures(user_id)]
        if Role.ADMIN in user.roles and user.enabled:
            writes.insert(0, self.repo.last_admin_guard(user_id))
        await self._guarded(writes, "delete")
        self.subjects.forget(user_id)
        await self.sessions.forget_user(user_id)
        self.bus.publish(
            EventType.USER_CHANGED,
            {"user_id": user_id, "username": user.username, "change": "deleted", "revoked": True},
        )
        return user

    async def change_own_password(
        self, user_id: str, current: str, new: str, keep_session: str | None
    ) -> None:
        user = await self.get(user_id)
        if not await self.hasher.verify(current, user.password_hash):
            raise Unauthorized("the current password is not correct")
        self.hasher.check_policy(new, username=user.username, field="new_password")
        await self.repo.store.write(
            self.repo.merge(user_id, {"password_hash": await self.hasher.hash(new), "updated_at": utcnow()})
        )
        await self.sessions.revoke_all(user_id, reason="password_changed", keep=keep_session)
        self.bus.publish(
            EventType.USER_CHANGED,
            {"user_id": user_id, "username": user.username, "change": "password_changed"},
        )

    async def _guarded(self, writes: list[Write], what: str) -> None:
        try:
            await self.repo.store.write(*writes)
        except StoreError as exc:
            if LAST_ADMIN in str(exc):
                raise Conflict(
                    f"cannot {what} the last enabled admin; make another user an admin first",
                    details={"rule": "last_enabled_admin"},
                ) from exc
            raise

    async def bootstrap_admin(self, password: str, *, data_dir: Path | None = None) -> str | None:
        """With no users at all, create ``admin``; returns the generated password, if any.

        A generated password is shown once: printed when stderr is a terminal,
        else written to ``<data_dir>/initial-admin-password`` (0600), of which only
        the path is logged. A chosen one (``PROVISIONING_ADMIN_PASSWORD``) must pass
        the password policy, or the service does not start.
        """
        if await self.repo.count() > 0:
            return None
        generated = None
        if not password:
            password = generated = generate_password()
        to_terminal = generated is not None and sys.stderr.isatty()
        pending: Path | None = None
        if generated is not None and not to_terminal:
            # Written before the user exists, so a write that fails leaves no admin
            # whose password nobody knows; published under its name only once it is.
            pending = _write_secret_file(
                Path(data_dir or "."), f".{INITIAL_PASSWORD_FILE}.{os.getpid()}", generated
            )
        try:
            await self.create(username=BOOTSTRAP_ADMIN, email=None, password=password, roles=[Role.ADMIN])
        except Conflict:
            if pending is not None:
                pending.unlink(missing_ok=True)
            return None  # another process bootstrapped first
        except ValidationFailed as exc:
            if pending is not None:
                pending.unlink(missing_ok=True)
            raise ValidationFailed(
                f"PROVISIONING_ADMIN_PASSWORD: {exc.message.split(': ', 1)[-1]}", details=exc.details
            ) from None
        log.warning("created the first user, admin; it must enrol MFA at its first login")
        if pending is not None:
            final = pending.with_name(INITIAL_PASSWORD_FILE)
            pending.replace(final)
            log.warning(
                "the first admin's password was generated and written to a file readable by this "
                "user only; read it, log in, change it, and delete the file",
                extra={"path": str(final.resolve())},
            )
        elif generated is not None:
            # Shown once, on the terminal only: logs are kept and shipped, a terminal is not.
            print(
                f"\n  provisioning: first start, user 'admin' created with password: "
                f"{generated}\n  (set PROVISIONING_ADMIN_PASSWORD to choose it)\n",
                file=sys.stderr,
                flush=True,
            )
        return generated


def _write_secret_file(directory: Path, name: str, secret: str) -> Path:
    """A new file readable by its owner only from its first byte (never a wider mode)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / name
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secret + "\n")
    return path
