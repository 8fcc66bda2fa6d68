"""Repositories for what both services' security needs from the store.

Signing keys, token revocations, policies (documents, versions and their compiled
Casbin lines) and the audit chain. Every SurrealQL statement of these aggregates
lives here; callers combine the returned writes into one ``store.write`` when a
change spans aggregates.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared.store.keyset import KEY, Page, keyset_page, list_key, part
from shared.store.store import Store
from shared.store.writes import Insert, Stmt, Write

POLICY_STATE_ID = "current"
AUDIT_HEAD_ID = "main"
# Marks the error a guard statement throws, so callers can tell it from other failures.
AUDIT_HEAD_MOVED = "audit_head_moved"


class KeyRepository:
    """JWT signing keys (``jwt_key``): the oldest active key signs, all verify.

    The private half is sealed with the store's key-encryption key (``shared/store/secrets.py``):
    sealed here on write, opened here on read.
    """

    TABLE = "jwt_key"

    def __init__(self, store: Store) -> None:
        self.store = store

    async def all(self) -> list[dict[str, Any]]:
        rows = await self.store.query("SELECT * FROM jwt_key ORDER BY created_at, id")
        return [self.store.secrets.open_fields(self.TABLE, row) for row in rows]

    def insert(self, kid: str, row: dict[str, Any]) -> Write:
        sealed = self.store.secrets.seal_fields(self.TABLE, kid, row)
        return Stmt(
            "CREATE type::thing('jwt_key', $kid) CONTENT $row RETURN NONE", {"kid": kid, "row": sealed}
        )

    def retire(self, kid: str, at: datetime) -> Write:
        """The key stops signing at once (its private half is dropped) and is published and
        accepted until ``at``, when every token it signed has expired."""
        return Stmt(
            "UPDATE type::thing('jwt_key', $kid) SET retire_at = $at, private_pem = NONE RETURN NONE",
            {"kid": kid, "at": at},
        )

    def delete_retired(self, now: datetime) -> Write:
        return Stmt("DELETE jwt_key WHERE retire_at != NONE AND retire_at <= $now RETURN NONE", {"now": now})


class SecretFieldRepository:
    """The secret fields of any table in :data:`shared.store.secrets.SECRET_FIELDS`, as stored:
    what the start-up upgrade and a KEK rotation read and re-seal."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def rows(self, table: str, fields: tuple[str, ...]) -> list[dict[str, Any]]:
        # Table and field names come from SECRET_FIELDS, never from a request.
        return await self.store.query(
            f"SELECT id, {', '.join(fields)} FROM type::table($table)", {"table": table}
        )

    def replace(self, table: str, record: str, field: str, old: str, new: str) -> Write:
        """Compare-and-set: only if the field still holds what was read."""
        return Stmt(
            f"UPDATE type::thing($table, $id) SET {field} = $new WHERE {field} = $old RETURN NONE",
            {"table": table, "id": record, "old": old, "new": new},
        )


class SubjectRepository:
    """What a token's subject is now: the user record's name, roles and state."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def users(self, user_ids: list[str]) -> list[dict[str, Any]]:
        return await self.store.query(
            "SELECT id, username, roles, enabled FROM array::map($ids, |$id| type::thing('user', $id))",
            {"ids": user_ids},
        )


class RevocationRepository:
    """The denylist of access tokens (``jti``) and sessions (``sid``)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def insert(self, row: dict[str, Any]) -> Write:
        return Insert("token_revocation", row)

    async def active(self, now: datetime) -> list[dict[str, Any]]:
        """The revocations still in force: a walk of the expiry index from ``now`` on
        (migration 0031; a closed lower bound, see ``shared/store/keyset.py``), so the
        expired ones not yet purged cost nothing."""
        return await self.store.query(
            "SELECT jti, sid, expires_at, created_at FROM token_revocation WHERE expires_at >= $now",
            {"now": now},
        )

    async def created_since(self, since: datetime) -> list[dict[str, Any]]:
        return await self.store.query(
            "SELECT jti, sid, expires_at, created_at FROM token_revocation WHERE created_at >= $since",
            {"since": since},
        )

    def purge_expired(self, now: datetime, chunk: int) -> Write:
        """Up to ``chunk`` revocations past their expiry (a walk of the expiry index);
        the result is how many went."""
        return Stmt(
            "{ array::len((DELETE (SELECT VALUE id FROM token_revocation WHERE expires_at <= $now "
            "LIMIT $chunk) RETURN BEFORE)) }",
            {"now": now, "chunk": chunk},
        )


class PolicyRepository:
    """Policy documents, their previous versions, their Casbin lines and the revision."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- reads ---------------------------------------------------------------

    async def get(self, policy_id: str) -> dict[str, Any] | None:
        rows = await self.store.query("SELECT * FROM type::thing('policy', $id)", {"id": policy_id})
        return rows[0] if rows else None

    async def by_name(self, name: str) -> dict[str, Any] | None:
        rows = await self.store.query("SELECT * FROM policy WHERE name = $name", {"name": name})
        return rows[0] if rows else None

    async def page(self, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
        return await self.store.page("policy", order="created_at, id", limit=limit, offset=offset)

    async def versions(self, policy_id: str) -> list[dict[str, Any]]:
        return await self.store.query(
            "SELECT * FROM policy_version WHERE policy_id = $id ORDER BY revision DESC", {"id": policy_id}
        )

    async def lines(self) -> list[dict[str, Any]]:
        return await self.store.query(
            "SELECT ptype, v0, v1, v2, v3, v4, v5, policy_id, seq FROM casbin_rule ORDER BY policy_id, seq"
        )

    async def revision(self) -> int:
        rows = await self.store.query(
            "SELECT revision FROM type::thing('policy_state', $id)", {"id": POLICY_STATE_ID}
        )
        return int(rows[0].get("revision", 0)) if rows else 0

    # -- writes ----------------------------------------------------------------

    def create(self, policy_id: str, row: dict[str, Any]) -> Write:
        return Stmt(
            "CREATE type::thing('policy', $id) CONTENT $row RETURN NONE", {"id": policy_id, "row": row}
        )

    def replace(self, policy_id: str, row: dict[str, Any]) -> Write:
        return Stmt(
            "UPDATE type::thing('policy', $id) CONTENT $row RETURN NONE", {"id": policy_id, "row": row}
        )

    def delete(self, policy_id: str) -> list[Write]:
        return [
            Stmt("DELETE type::thing('policy', $id) RETURN NONE", {"id": policy_id}),
            Stmt("DELETE policy_version WHERE policy_id = $id RETURN NONE", {"id": policy_id}),
            self.delete_lines(policy_id),
        ]

    def keep_version(self, row: dict[str, Any]) -> Write:
        return Insert("policy_version", row)

    def delete_lines(self, policy_id: str) -> Write:
        return Stmt("DELETE casbin_rule WHERE policy_id = $id RETURN NONE", {"id": policy_id})

    def insert_lines(self, rows: list[dict[str, Any]]) -> list[Write]:
        return [Insert("casbin_rule", row) for row in rows]

    def delete_all_lines(self) -> Write:
        return Stmt("DELETE casbin_rule RETURN NONE")

    def delete_matching(self, ptype: str, field_index: int, values: list[str]) -> Write:
        """Delete lines whose fields from ``field_index`` on equal ``values`` (empty: any)."""
        clauses = ["ptype = $ptype"]
        params: dict[str, Any] = {"ptype": ptype}
        for i, value in enumerate(values):
            if value == "":
                continue
            clauses.append(f"v{field_index + i} = $v{field_index + i}")
            params[f"v{field_index + i}"] = value
        return Stmt(f"DELETE casbin_rule WHERE {' AND '.join(clauses)} RETURN NONE", params)

    def bump_revision(self) -> Write:
        return Stmt(
            "UPSERT type::thing('policy_state', $id) SET revision = (revision OR 0) + 1 RETURN NONE",
            {"id": POLICY_STATE_ID},
        )


class AuditRepository:
    """The append-only ``audit`` table and its head (``audit_head:main``)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def head(self) -> tuple[int, str]:
        rows = await self.store.query(
            "SELECT seq, hash FROM type::thing('audit_head', $id)", {"id": AUDIT_HEAD_ID}
        )
        if not rows:
            return 0, ""
        return int(rows[0]["seq"]), str(rows[0]["hash"])

    def append(self, prev_seq: int, head_seq: int, head_hash: str, rows: list[dict[str, Any]]) -> list[Write]:
        """Move the head from ``prev_seq`` and insert ``rows``, or throw if it moved."""
        guard = Stmt(
            "IF array::len((UPSERT type::thing('audit_head', $id) SET seq = $seq, hash = $hash "
            "WHERE (seq OR 0) = $prev RETURN AFTER)) = 0 "
            f"{{ THROW '{AUDIT_HEAD_MOVED}' }}",
            {"id": AUDIT_HEAD_ID, "seq": head_seq, "hash": head_hash, "prev": prev_seq},
        )
        return [guard, *(Insert("audit", {**row, KEY: audit_key(int(row["seq"]))}) for row in rows)]

    async def snapshot(self) -> tuple[int, str, int]:
        """The head (seq, hash) and how many rows the table holds, read in one statement
        (one transaction): an append moves both together, so they agree unless tampered."""
        rows = await self.store.query(
            "RETURN {head: (SELECT seq, hash FROM type::thing('audit_head', $id)), "
            "rows: (SELECT count() AS n FROM audit GROUP ALL)}",
            {"id": AUDIT_HEAD_ID},
        )
        doc = rows[0] if rows else {}
        head = doc.get("head") or [{}]
        counted = doc.get("rows") or [{}]
        return int(head[0].get("seq") or 0), str(head[0].get("hash") or ""), int(counted[0].get("n") or 0)

    async def window(self, first: int, end: int, limit: int) -> list[dict[str, Any]]:
        """Rows with ``first <= seq < end``, in order, at most ``limit``.

        A closed-below, open-above range on the ``audit_seq`` index. Measured on the
        embedded engine (2.x): ``seq > $x`` with no row at ``$x`` loses the 501st row of
        the range (``seq > 0`` never returns record 501), so the walk never uses an
        open lower bound."""
        return await self.store.query(
            "SELECT * FROM audit WHERE seq >= $first AND seq < $end ORDER BY seq LIMIT $limit",
            {"first": first, "end": end, "limit": limit},
        )

    async def stray(self, head_seq: int) -> dict[str, Any] | None:
        """A row that cannot be part of the chain (its ``seq`` is not a whole number in
        ``1..head_seq``), found by a table scan: only asked when the counts disagree."""
        rows = await self.store.query(
            "SELECT id, seq FROM audit WITH NOINDEX "
            "WHERE type::is::int(seq) = false OR seq < 1 OR seq > $head LIMIT 1",
            {"head": head_seq},
        )
        return rows[0] if rows else None

    async def search(
        self, filters: dict[str, Any], limit: int, offset: int, cursor: str | None
    ) -> tuple[Page, int | None]:
        """Records newest first, filtered; and how many match when that is known without
        counting (unfiltered: the chain's head, since no record is ever removed)."""
        where, params = _audit_where(filters)
        reads = "user_id, action, resource, result, timestamp"
        page = await keyset_page(
            self.store, "audit", limit, offset, cursor, where=where, reads=reads, params=params
        )
        return page, None if where else (await self.head())[0]


def audit_key(seq: int) -> str:
    """Newest record first (positions are unique: no tiebreak needed)."""
    return list_key(part(seq, descending=True), tiebreak="")


def _audit_where(filters: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Conditions over the seed's filters; a trailing ``*`` makes a prefix match."""
    clauses: list[str] = []
    params: dict[str, Any] = {}
    for name in ("user_id", "action", "resource", "result"):
        value = filters.get(name)
        if value is None:
            continue
        if isinstance(value, str) and value.endswith("*"):
            clauses.append(f"string::starts_with({name} OR '', $f_{name})")
            params[f"f_{name}"] = value[:-1]
        else:
            clauses.append(f"{name} = $f_{name}")
            params[f"f_{name}"] = value
    if filters.get("from") is not None:
        clauses.append("timestamp >= $f_from")
        params["f_from"] = filters["from"]
    if filters.get("to") is not None:
        clauses.append("timestamp <= $f_to")
        params["f_to"] = filters["to"]
    return " AND ".join(clauses), params


class ApiTokenRepository:
    """Named API tokens (``api_token``): the record id is the token's public key, the
    secret only its SHA-256 (``hash``)."""

    TABLE = "api_token"

    def __init__(self, store: Store) -> None:
        self.store = store

    async def get(self, token_id: str) -> dict[str, Any] | None:
        rows = await self.store.query("SELECT * FROM type::thing('api_token', $id)", {"id": token_id})
        return rows[0] if rows else None

    async def page(
        self, *, user_id: str | None, active_at: datetime | None, limit: int, offset: int
    ) -> tuple[list[dict[str, Any]], int]:
        """Tokens newest first: of one user (or everyone's, ``None``); only those still
        usable at ``active_at`` when given."""
        return await self.store.page(
            self.TABLE,
            where="($user = NONE OR user_id = $user) AND "
            "($at = NONE OR (revoked_at = NONE AND expires_at > $at))",
            params={"user": user_id, "at": active_at},
            order="created_at DESC, id",
            limit=limit,
            offset=offset,
        )

    async def active_count(self, user_id: str, now: datetime) -> int:
        rows = await self.store.query(
            "SELECT count() AS n FROM api_token WHERE user_id = $user AND revoked_at = NONE "
            "AND expires_at > $now GROUP ALL",
            {"user": user_id, "now": now},
        )
        return int(rows[0]["n"]) if rows else 0

    def create(self, token_id: str, row: dict[str, Any]) -> Write:
        return Stmt(
            "CREATE type::thing('api_token', $id) CONTENT $row RETURN NONE", {"id": token_id, "row": row}
        )

    def revoke(self, token_id: str, at: datetime, by: str | None) -> Write:
        """Compare-and-set: only a token not revoked yet; returns its id if it was."""
        return Stmt(
            "UPDATE type::thing('api_token', $id) SET revoked_at = $at, revoked_by = $by "
            "WHERE revoked_at = NONE RETURN id",
            {"id": token_id, "at": at, "by": by},
        )

    def count_uses(self, token_id: str, uses: int, at: datetime) -> Write:
        return Stmt(
            "UPDATE type::thing('api_token', $id) SET uses = (uses OR 0) + $n, last_used_at = $at "
            "RETURN NONE",
            {"id": token_id, "n": uses, "at": at},
        )
