"""Versioned ``.surql`` migrations, applied in order when a store opens."""

from __future__ import annotations

import logging
from importlib import resources
from typing import TYPE_CHECKING

from shared.store.writes import Stmt

if TYPE_CHECKING:  # the store runs the migrations when it opens: only the type is needed here
    from shared.store.store import Store

log = logging.getLogger(__name__)

MIGRATIONS_TABLE = "schema_migration"


async def _applied(store: Store) -> set[str]:
    rows = await store.query(f"SELECT version FROM {MIGRATIONS_TABLE}")
    return {str(r["version"]) for r in rows}


def migration_files() -> list[tuple[str, str]]:
    """Every ``NNNN_name.surql`` shipped in ``shared/store/migrations``, in order."""
    folder = resources.files("shared.store") / "migrations"
    files = sorted(
        (entry.name, entry.read_text()) for entry in folder.iterdir() if entry.name.endswith(".surql")
    )
    return files


async def apply_migrations(store: Store) -> None:
    await store.write(Stmt(f"DEFINE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} SCHEMALESS"))
    done = await _applied(store)
    for name, text in migration_files():
        version = name.split("_", 1)[0]
        if version in done:
            continue
        log.info("applying migration", extra={"migration": name})
        statements = [s.strip() for s in _split_statements(text) if s.strip()]
        await store.write(
            *(Stmt(s) for s in statements),
            Stmt(
                f"CREATE {MIGRATIONS_TABLE} SET version = $v, name = $n, applied_at = time::now()",
                {"v": version, "n": name},
            ),
        )


def _split_statements(text: str) -> list[str]:
    """Split a migration on ``;`` at line ends, ignoring ``--`` comment lines."""
    lines = [ln for ln in text.splitlines() if not ln.strip().startswith("--")]
    return [s.strip().rstrip(";") for s in "\n".join(lines).split(";\n")]
