"""Every SurrealQL statement of the extensions framework: the rows of the named event
streams (``ext_event``, migration 0024)."""

from __future__ import annotations

from typing import Any

from shared.store.store import Store
from shared.store.writes import Insert, Stmt


class StreamRepository:
    """Events of named streams: appended, read in order after a position, pruned."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def append(self, row: dict[str, Any]) -> None:
        await self.store.write(Insert("ext_event", row))

    async def last_pos(self, stream: str) -> int | None:
        found = await self.store.query(
            "SELECT VALUE pos FROM ext_event WHERE stream = $s ORDER BY pos DESC LIMIT 1", {"s": stream}
        )
        return int(found[0]) if found else None

    async def after(self, stream: str, pos: int, limit: int) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = await self.store.query(
            "SELECT stream, pos, data, published_at FROM ext_event "
            "WHERE stream = $s AND pos > $p ORDER BY pos LIMIT $n",
            {"s": stream, "p": pos, "n": limit},
        )
        return rows

    async def prune(self, stream: str, keep: int, before_pos: int) -> None:
        """Drop a stream's events older than ``before_pos`` and all but the newest ``keep``."""
        found = await self.store.query(
            "SELECT VALUE pos FROM ext_event WHERE stream = $s ORDER BY pos DESC LIMIT 1 START $k",
            {"s": stream, "k": keep},
        )
        cutoff = max(before_pos, int(found[0]) + 1 if found else 0)
        await self.store.write(
            Stmt("DELETE ext_event WHERE stream = $s AND pos < $p", {"s": stream, "p": cutoff})
        )
