"""Every SurrealQL statement about webhooks: subscriptions, deliveries and attempts.

Values are always bound and records addressed with ``type::thing`` so user
input never becomes query text. A webhook's secrets (``secret``,
``previous_secret``) are sealed with the store's key-encryption key before they
are written (:meth:`WebhookRepository.sealed`) and opened as webhooks are read.
"""

from __future__ import annotations

from typing import Any

from shared.store.counters import TOTAL, read_counter
from shared.store.keyset import KEY, Listing, keyset_page, list_key, part
from shared.store.store import Store
from shared.store.writes import Count, Insert, Merge, Stmt, Write

WEBHOOK = "webhook"
DELIVERY = "webhook_delivery"
ATTEMPT = "webhook_attempt"

# Delivery statuses.
PENDING, DELIVERED, FAILED, CANCELLED = "pending", "delivered", "failed", "cancelled"
DELIVERY_STATUSES = (PENDING, DELIVERED, FAILED, CANCELLED)


def deliveries_of(webhook_id: str) -> str:
    """The counter of one webhook's deliveries."""
    return f"{DELIVERY}/{webhook_id}"


def delivery_partition(webhook_id: str) -> str:
    """The key prefix of one webhook's deliveries."""
    return f"{webhook_id}|"


class WebhookRepository:
    """Webhook subscriptions and their delivery log in the store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def sealed(self, webhook_id: str, row: dict[str, Any]) -> dict[str, Any]:
        """A webhook row or patch with its secrets sealed, ready for the builders below."""
        return self.store.secrets.seal_fields(WEBHOOK, webhook_id, row)

    def _opened(self, row: dict[str, Any]) -> dict[str, Any]:
        return self.store.secrets.open_fields(WEBHOOK, row)

    # -- write builders ---------------------------------------------------------------

    @staticmethod
    def insert_webhook(row: dict[str, Any]) -> Write:
        return Insert(WEBHOOK, row)

    @staticmethod
    def patch_webhook(webhook_id: str, patch: dict[str, Any]) -> Write:
        return Merge(WEBHOOK, webhook_id, patch)

    @staticmethod
    def upsert_webhook(webhook_id: str, row: dict[str, Any]) -> Write:
        return Stmt(
            "UPSERT type::thing('webhook', $id) MERGE $row RETURN NONE", {"id": webhook_id, "row": row}
        )

    @staticmethod
    def delete_webhook(webhook_id: str) -> list[Write]:
        """The subscription goes; its deliveries still waiting are cancelled, the log stays."""
        return [
            Stmt("DELETE type::thing('webhook', $id)", {"id": webhook_id}),
            Stmt(
                "UPDATE webhook_delivery SET status = 'cancelled', last_error = $why "
                "WHERE webhook_id = $id AND status = 'pending' RETURN NONE",
                {"id": webhook_id, "why": "the webhook was deleted"},
            ),
        ]

    @staticmethod
    def insert_delivery(row: dict[str, Any]) -> Write:
        """A delivery, listed with its webhook's, newest first; counted per webhook."""
        webhook_id = str(row["webhook_id"])
        key = list_key(
            delivery_partition(webhook_id), part(int(row["seq"]), descending=True), tiebreak=str(row["id"])
        )
        return Insert(DELIVERY, {**row, KEY: key}, counts=(Count(deliveries_of(webhook_id), TOTAL, 1),))

    @staticmethod
    def patch_delivery(delivery_id: str, patch: dict[str, Any]) -> Write:
        return Merge(DELIVERY, delivery_id, patch)

    @staticmethod
    def insert_attempt(row: dict[str, Any]) -> Write:
        return Insert(ATTEMPT, row)

    @staticmethod
    def claim_lease(webhook_id: str, owner: str, until: float, now: float) -> Write:
        """Compare-and-set: the webhook's lease is free, expired or already ours."""
        return Stmt(
            "UPDATE type::thing('webhook', $id) SET lease_owner = $owner, lease_until = $until "
            "WHERE lease_owner = NONE OR lease_owner = $owner OR lease_until < $now "
            "RETURN VALUE record::id(id)",
            {"id": webhook_id, "owner": owner, "until": until, "now": now},
        )

    @staticmethod
    def release_lease(webhook_id: str, owner: str) -> Write:
        return Stmt(
            "UPDATE type::thing('webhook', $id) SET lease_owner = NONE, lease_until = NONE "
            "WHERE lease_owner = $owner RETURN NONE",
            {"id": webhook_id, "owner": owner},
        )

    @staticmethod
    def expire_pending(before_epoch_s: float) -> Write:
        """Deliveries that waited past the log's retention are given up on."""
        return Stmt(
            "UPDATE webhook_delivery SET status = 'failed', "
            "last_error = 'expired: still undelivered when the delivery log retention ran out' "
            "WHERE status = 'pending' AND created_epoch < $before RETURN NONE",
            {"before": before_epoch_s},
        )

    @staticmethod
    def prune(before_epoch_s: float, chunk: int, *, tally: bool = False) -> Write:
        """Forget up to ``chunk`` finished deliveries (and their attempts) older than a
        cutoff, each webhook's counter dropping with them in the same statement; the
        result is how many went (prune again while it is ``chunk``). With ``tally``,
        ``counter:pruned`` counts them (the retention job's report)."""
        return Stmt(
            "{ LET $gone = (DELETE (SELECT VALUE id FROM webhook_delivery WHERE status != 'pending' "
            "AND created_epoch < $before LIMIT $chunk) RETURN BEFORE); "
            "DELETE webhook_attempt WHERE delivery_id IN (SELECT VALUE record::id(id) FROM $gone); "
            "FOR $g IN (SELECT webhook_id, count() AS n FROM $gone GROUP BY webhook_id) { "
            f"UPSERT type::thing('counter', string::concat('{DELIVERY}/', $g.webhook_id)) "
            f"SET {TOTAL} -= $g.n; }}; "
            "IF $tally { UPSERT counter:pruned SET webhook_delivery += array::len($gone) }; "
            "array::len($gone) }",
            {"before": before_epoch_s, "chunk": chunk, "tally": tally},
        )

    # -- reads -------------------------------------------------------------------------

    async def webhook(self, webhook_id: str) -> dict[str, Any] | None:
        rows = await self.store.query("SELECT * FROM type::thing('webhook', $id)", {"id": webhook_id})
        return self._opened(rows[0]) if rows else None

    async def all_webhooks(self) -> list[dict[str, Any]]:
        rows = await self.store.query("SELECT * FROM webhook ORDER BY created_at")
        return [self._opened(r) for r in rows]

    async def webhooks(self, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
        # Listed webhooks show no secret: they are not opened.
        rows, total = await self.store.page(
            "webhook", order="created_at", limit=limit, offset=offset, fields="* OMIT secret, previous_secret"
        )
        return rows, total

    async def pending_for(self, webhook_id: str, limit: int) -> list[dict[str, Any]]:
        """A webhook's waiting deliveries, oldest first: the order they must go out in."""
        return await self.store.query(
            "SELECT * FROM webhook_delivery WHERE status = 'pending' AND webhook_id = $id "
            "ORDER BY seq LIMIT $limit",
            {"id": webhook_id, "limit": limit},
        )

    async def pending_summary(self) -> list[dict[str, Any]]:
        """Per webhook: how many deliveries wait and when the first of them is due."""
        return await self.store.query(
            "SELECT webhook_id, count() AS pending, math::min(due_at) AS due_at "
            "FROM webhook_delivery WHERE status = 'pending' GROUP BY webhook_id"
        )

    async def deliveries(
        self, webhook_id: str, status: str | None, limit: int, offset: int, cursor: str | None
    ) -> Listing[dict[str, Any]]:
        """A webhook's deliveries, newest first: one range of the list index. Counted
        when unfiltered (the counter is per webhook, not per status)."""
        page = await keyset_page(
            self.store,
            DELIVERY,
            limit=limit,
            offset=offset,
            cursor=cursor,
            prefix=delivery_partition(webhook_id),
            where="status = $status" if status else "",
            reads="status",
            params={"status": status},
            fields="* OMIT body",
        )
        total = None if status else (await read_counter(self.store, deliveries_of(webhook_id))).get(TOTAL, 0)
        return Listing(page.rows, total, page.next_cursor)

    async def delivery(self, delivery_id: str) -> dict[str, Any] | None:
        rows = await self.store.query(
            "SELECT * FROM type::thing('webhook_delivery', $id)", {"id": delivery_id}
        )
        return rows[0] if rows else None

    async def attempts(self, delivery_id: str) -> list[dict[str, Any]]:
        return await self.store.query(
            "SELECT * FROM webhook_attempt WHERE delivery_id = $id ORDER BY attempt",
            {"id": delivery_id},
        )
