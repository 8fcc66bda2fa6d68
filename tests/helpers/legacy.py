"""A store as versions before task pages left it (no fixtures here)."""

from __future__ import annotations

from datetime import UTC

import cbor2

from shared.store.codec import cbor_default, log_entries
from shared.store.pages import page_rows
from shared.store.store import Store
from shared.store.writes import Insert, Stmt, Write


async def back_to_task_rows(store: Store) -> int:
    """Task rows one to a record of ``task`` again and journal entries naming no page, as
    before migration 0012 (whose record goes too); returns how many tasks moved."""
    rows = [row for record in await store.query("SELECT rows FROM task_page") for row in page_rows(record)]
    writes: list[Write] = [
        Stmt("DELETE task_page"),
        Stmt("DELETE task_ref"),
        Stmt("DELETE schema_migration WHERE version = '0012'"),
    ]
    writes += [Insert("task", row) for row in rows]
    for journal in await store.query("SELECT * FROM journal"):
        entries = log_entries(journal)
        for entry in entries:
            entry.pop("page", None)
        blob = cbor2.dumps(entries, default=cbor_default, timezone=UTC)
        writes.append(
            Stmt(
                "UPDATE type::thing('journal', $id) SET entries = $blob",
                {"id": int(journal["id"]), "blob": blob},
            )
        )
    await store.write(*writes)
    return len(rows)
