"""Every SurrealQL statement about users and sessions (refresh tokens included).

A user's TOTP secrets (``mfa_secret``, ``mfa_pending_secret``) are sealed with the
store's key-encryption key as they are written and opened as they are read, here,
so the rest of the control center only ever sees them in plaintext, in memory.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared.store.counters import TOTAL, read_counter
from shared.store.keyset import KEY, Listing, keyset_page, list_key, part
from shared.store.store import Store
from shared.store.writes import Count, Insert, Merge, Stmt, Write


def username_key(username: str) -> str:
    """What makes usernames unique: the name lowercased (``user_username_key`` index)."""
    return username.lower()


# Marker of the guard that keeps the last enabled admin (see ``last_admin_guard``).
LAST_ADMIN = "last_enabled_admin"
ADMIN_ROLE = "admin"
USER_TABLE = "user"
USER_COUNTS = "user"  # the counter of users (shared/store/counters.py)


def user_key(created_at: datetime, user_id: str) -> str:
    """Users are listed oldest first."""
    return list_key(part(int(created_at.timestamp() * 1_000_000)), tiebreak=user_id)


class UserRepository:
    def __init__(self, store: Store) -> None:
        self.store = store

    def _opened(self, row: dict[str, Any]) -> dict[str, Any]:
        return self.store.secrets.open_fields(USER_TABLE, row)

    async def get(self, user_id: str) -> dict[str, Any] | None:
        rows = await self.store.query("SELECT * FROM type::thing('user', $id)", {"id": user_id})
        return self._opened(rows[0]) if rows else None

    async def by_username(self, username: str) -> dict[str, Any] | None:
        """The user of this name regardless of case. An exact spelling wins: of the case
        duplicates kept by migration 0010, each still logs in as it is written."""
        rows: list[dict[str, Any]] = await self.store.query(
            "SELECT * FROM user WHERE username_key = $key", {"key": username_key(username)}
        )
        if rows and rows[0]["username"] == username:
            return self._opened(rows[0])
        exact: list[dict[str, Any]] = await self.store.query(
            "SELECT * FROM user WHERE username = $name", {"name": username}
        )
        if exact:
            return self._opened(exact[0])
        return self._opened(rows[0]) if rows else None

    async def enabled_admins(self) -> int:
        rows = await self.store.query(
            "SELECT count() AS n FROM user WHERE enabled = true AND roles CONTAINS $admin GROUP ALL",
            {"admin": ADMIN_ROLE},
        )
        return int(rows[0]["n"]) if rows else 0

    async def count(self) -> int:
        """How many users there are (a counter row, kept with every create and delete)."""
        return (await read_counter(self.store, USER_COUNTS)).get(TOTAL, 0)

    async def page(
        self, *, role: str | None, enabled: bool | None, limit: int, offset: int, cursor: str | None
    ) -> Listing[dict[str, Any]]:
        """Users oldest first; counted only unfiltered (no counter follows the filters)."""
        filtered = role is not None or enabled is not None
        page = await keyset_page(
            self.store,
            USER_TABLE,
            limit=limit,
            offset=offset,
            cursor=cursor,
            reads="roles, enabled",
            where="($role = NONE OR roles CONTAINS $role) AND ($enabled = NONE OR enabled = $enabled)"
            if filtered
            else "",
            params={"role": role, "enabled": enabled},
        )
        total = None if filtered else await self.count()
        return Listing([self._opened(r) for r in page.rows], total, page.next_cursor)

    def create(self, user_id: str, row: dict[str, Any]) -> list[Write]:
        """The user's row (refused if it exists), counted in the same commit."""
        sealed = self.store.secrets.seal_fields(USER_TABLE, user_id, row)
        sealed[KEY] = user_key(row["created_at"], user_id)
        return [
            Stmt("CREATE type::thing('user', $id) CONTENT $row RETURN NONE", {"id": user_id, "row": sealed}),
            Count(USER_COUNTS, TOTAL, 1),
        ]

    def merge(self, user_id: str, patch: dict[str, Any]) -> Write:
        return Merge(USER_TABLE, user_id, self.store.secrets.seal_fields(USER_TABLE, user_id, patch))

    def unset(self, user_id: str, fields: list[str]) -> Write:
        """Remove fields (a merge cannot: the store drops NONE values)."""
        assignments = ", ".join(f"{f} = NONE" for f in fields)
        return Stmt(f"UPDATE type::thing('user', $id) SET {assignments} RETURN NONE", {"id": user_id})

    def delete(self, user_id: str) -> Write:
        """Delete a user; the counter drops only if there was one to delete."""
        return Stmt(
            "IF array::len((DELETE type::thing('user', $id) RETURN BEFORE)) > 0 "
            f"{{ UPSERT type::thing('counter', $counter) SET {TOTAL} -= 1 RETURN NONE }}",
            {"id": user_id, "counter": USER_COUNTS},
        )

    def last_admin_guard(self, user_id: str) -> Write:
        """Throws unless another enabled admin remains besides ``user_id``.

        Part of the same transaction as the change it guards, so two admins
        demoting each other at once cannot both succeed.
        """
        return Stmt(
            "IF count(SELECT id FROM user WHERE enabled = true AND roles CONTAINS $admin "
            f"AND id != type::thing('user', $id)) = 0 {{ THROW '{LAST_ADMIN}' }}",
            {"id": user_id, "admin": ADMIN_ROLE},
        )

    def add_failure(self, user_id: str) -> Write:
        """One more consecutive failure of the account, from any address."""
        return Stmt(
            "UPDATE type::thing('user', $id) SET failed_logins = (failed_logins OR 0) + 1 "
            "RETURN failed_logins",
            {"id": user_id},
        )

    async def address_lock(self, user_id: str, ip: str) -> datetime | None:
        """Until when the account is locked for this address, if it is."""
        rows = await self.store.query(
            "SELECT locked_until FROM type::thing('login_failure', [$user, $ip])", {"user": user_id, "ip": ip}
        )
        return rows[0].get("locked_until") if rows else None

    def add_address_failure(self, user_id: str, ip: str, now: datetime, window_start: datetime) -> Write:
        """One more failure from this address; a count older than the window starts again."""
        return Stmt(
            "UPSERT type::thing('login_failure', [$user, $ip]) SET user_id = $user, ip = $ip, "
            "failures = IF updated_at != NONE AND updated_at > $window THEN failures + 1 ELSE 1 END, "
            "updated_at = $now RETURN failures",
            {"user": user_id, "ip": ip, "now": now, "window": window_start},
        )

    def lock_address(self, user_id: str, ip: str, until: datetime) -> Write:
        return Stmt(
            "UPDATE type::thing('login_failure', [$user, $ip]) SET locked_until = $until, failures = 0 "
            "RETURN NONE",
            {"user": user_id, "ip": ip, "until": until},
        )

    def clear_address(self, user_id: str, ip: str) -> Write:
        return Stmt(
            "DELETE type::thing('login_failure', [$user, $ip]) RETURN NONE", {"user": user_id, "ip": ip}
        )

    def clear_stale_failures(self, user_id: str, now: datetime, stale_before: datetime) -> Write:
        """Forget addresses whose failures are out of the window and whose lock is over."""
        return Stmt(
            "DELETE login_failure WHERE user_id = $user AND updated_at < $stale "
            "AND (locked_until = NONE OR locked_until < $now) RETURN NONE",
            {"user": user_id, "stale": stale_before, "now": now},
        )

    def clear_failures(self, user_id: str) -> Write:
        """Every address's count and lock (an admin re-enabled the account, or it is deleted)."""
        return Stmt("DELETE login_failure WHERE user_id = $user RETURN NONE", {"user": user_id})

    def use_totp_step(self, user_id: str, step: int) -> Write:
        """Compare-and-set: only a time step later than the last one used is accepted."""
        return Stmt(
            "UPDATE type::thing('user', $id) SET mfa_last_step = $step "
            "WHERE mfa_last_step = NONE OR mfa_last_step < $step RETURN id",
            {"id": user_id, "step": step},
        )

    def use_backup_code(self, user_id: str, code_hash: str) -> Write:
        """Compare-and-set: a backup code is removed as it is used, once."""
        return Stmt(
            "UPDATE type::thing('user', $id) "
            "SET backup_codes = array::complement(backup_codes, [$code]) "
            "WHERE backup_codes CONTAINS $code RETURN id",
            {"id": user_id, "code": code_hash},
        )


class SessionRepository:
    """Sessions, and their refresh tokens (keyed by the token's SHA-256)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def get(self, session_id: str) -> dict[str, Any] | None:
        rows = await self.store.query("SELECT * FROM type::thing('session', $id)", {"id": session_id})
        return rows[0] if rows else None

    async def refresh_token(self, token_hash: str) -> dict[str, Any] | None:
        rows = await self.store.query("SELECT * FROM type::thing('refresh_token', $id)", {"id": token_hash})
        return rows[0] if rows else None

    async def open_for_user(self, user_id: str, now: datetime) -> list[dict[str, Any]]:
        return await self.store.query(
            "SELECT * FROM session WHERE user_id = $user AND revoked_at = NONE AND expires_at > $now",
            {"user": user_id, "now": now},
        )

    def create(self, row: dict[str, Any]) -> Write:
        return Insert("session", row)

    def add_refresh_token(self, row: dict[str, Any]) -> Write:
        return Insert("refresh_token", row)

    def use_refresh_token(self, token_hash: str, now: datetime) -> Write:
        """Compare-and-set: a refresh token is spent once; a second use finds nothing."""
        return Stmt(
            "UPDATE type::thing('refresh_token', $id) SET used_at = $now WHERE used_at = NONE RETURN id",
            {"id": token_hash, "now": now},
        )

    def merge(self, session_id: str, patch: dict[str, Any]) -> Write:
        return Merge("session", session_id, patch)

    def purge_expired(self, now: datetime, chunk: int) -> list[Write]:
        """Up to ``chunk`` refresh tokens and ``chunk`` sessions nobody can use any more,
        each a walk of its expiry index up to ``now`` (migration 0031); the results are
        how many of each went (purge again while either is ``chunk``)."""
        return [_purge_expired(table, now, chunk) for table in ("refresh_token", "session")]

    def delete_for_user(self, user_id: str) -> list[Write]:
        return [
            Stmt("DELETE refresh_token WHERE user_id = $user RETURN NONE", {"user": user_id}),
            Stmt("DELETE session WHERE user_id = $user RETURN NONE", {"user": user_id}),
        ]


def _purge_expired(table: str, now: datetime, chunk: int) -> Stmt:
    # The table is one of ours, never request text (named, not bound: the planner then
    # walks its expiry index). No RETURN statement inside: in a transaction it would
    # end the whole group commit.
    return Stmt(
        f"{{ array::len((DELETE (SELECT VALUE id FROM {table} WHERE expires_at <= $now "
        "LIMIT $chunk) RETURN BEFORE)) }",
        {"now": now, "chunk": chunk},
    )
