"""Users: the record, the rules around changing one, and the first admin.

Rules kept here: usernames are unique; passwords have a minimum length and are
stored as argon2id hashes; the last enabled admin can be neither deleted, nor
disabled, nor demoted (checked inside the same transaction as the change);
deleting, disabling or changing the roles of a user ends their sessions at once,
and makes every service look the user up again before it honours their tokens
(``shared/subjects.py``).
"""

from __future__ import annotations

import logging
import sys
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from control_center.passwords import PasswordHasher, generate_password
from control_center.repositories import LAST_ADMIN, UserRepository
from control_center.sessions import SessionService
from shared.errors import Conflict, NotFound, StoreError, Unauthorized
from shared.events import EventBus
from shared.store import Store, Write, iso
from shared.subjects import Subjects
from shared.tokens import utcnow

log = logging.getLogger(__name__)

BOOTSTRAP_ADMIN = "admin"


class Role(StrEnum):
    ADMIN = "admin"
    OPERATOR = "operator"
    DEVELOPER = "developer"
    VIEWER = "viewer"
    AUDITOR = "auditor"


@dataclass(frozen=True)
class User:
    """A user as stored; :meth:`view` is what the API shows."""

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

    def summary(self) -> dict[str, Any]:
        """The seed's login ``user`` object."""
        return {"id": self.id, "username": self.username, "email": self.email, "roles": list(self.roles)}

    def view(self) -> dict[str, Any]:
        return {
            **self.summary(),
            "enabled": self.enabled,
            "created_at": iso(self.created_at),
            "last_login": iso(self.last_login),
            "mfa_enabled": self.mfa_enabled,
            "backup_codes_left": len(self.backup_codes) if self.mfa_enabled else 0,
            "locked_until": iso(self.locked_until) if self.locked(utcnow()) else None,
        }


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
    ) -> tuple[list[User], int]:
        rows, total = await self.repo.page(role=role, enabled=enabled, limit=limit, offset=offset)
        return [User.from_row(r) for r in rows], total

    async def create(
        self, *, username: str, email: str | None, password: str, roles: list[str], enabled: bool = True
    ) -> User:
        self.hasher.check_policy(password)
        if await self.repo.by_username(username) is not None:
            raise Conflict(f"a user named {username!r} already exists")
        now = utcnow()
        user_id = uuid.uuid4().hex
        row = {
            "username": username,
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
                self.repo.create(user_id, {k: v for k, v in row.items() if v is not None})
            )
        except StoreError as exc:  # the unique index caught a concurrent create
            raise Conflict(f"a user named {username!r} already exists") from exc
        self.subjects.forget(user_id)
        user = await self.get(user_id)
        self.bus.publish("UserChanged", {"user_id": user_id, "username": username, "change": "created"})
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
            self.hasher.check_policy(changes.password)
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
            "UserChanged",
            {
                "user_id": user_id,
                "username": user.username,
                "change": "updated",
                "fields": sorted(k for k in patch if k != "updated_at" and k != "password_hash"),
            },
        )
        return updated

    async def delete(self, user_id: str) -> User:
        user = await self.get(user_id)
        writes: list[Write] = [self.repo.delete(user_id)]
        if Role.ADMIN in user.roles and user.enabled:
            writes.insert(0, self.repo.last_admin_guard(user_id))
        await self._guarded(writes, "delete")
        self.subjects.forget(user_id)
        await self.sessions.forget_user(user_id)
        self.bus.publish("UserChanged", {"user_id": user_id, "username": user.username, "change": "deleted"})
        return user

    async def change_own_password(
        self, user_id: str, current: str, new: str, keep_session: str | None
    ) -> None:
        user = await self.get(user_id)
        if not await self.hasher.verify(current, user.password_hash):
            raise Unauthorized("the current password is not correct")
        self.hasher.check_policy(new, field="new_password")
        await self.repo.store.write(
            self.repo.merge(user_id, {"password_hash": await self.hasher.hash(new), "updated_at": utcnow()})
        )
        await self.sessions.revoke_all(user_id, reason="password_changed", keep=keep_session)
        self.bus.publish(
            "UserChanged", {"user_id": user_id, "username": user.username, "change": "password_changed"}
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

    async def bootstrap_admin(self, password: str) -> str | None:
        """With no users at all, create ``admin``; returns a generated password to show."""
        if await self.repo.count() > 0:
            return None
        generated = None
        if not password:
            password = generated = generate_password()
        try:
            await self.create(username=BOOTSTRAP_ADMIN, email=None, password=password, roles=[Role.ADMIN])
        except Conflict:
            return None  # another process bootstrapped first
        log.warning("created the first user, admin; it must enrol MFA at its first login")
        if generated is not None:
            # Shown once, on the terminal only: logs are kept and shipped, a terminal is not.
            print(
                f"\n  provisioning: first start, user 'admin' created with password: "
                f"{generated}\n  (set PROVISIONING_ADMIN_PASSWORD to choose it)\n",
                file=sys.stderr,
                flush=True,
            )
        return generated
