"""Migrations: a fresh store gets every one, once; an older store is upgraded in place."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.store import schema
from shared.store.schema import MIGRATIONS_TABLE, apply_migrations, migration_files
from shared.store.secrets import SecretBox
from shared.store.store import Store
from shared.store.writes import Stmt

KEYS = SecretBox.ephemeral()


async def applied(store: Store) -> list[str]:
    rows = await store.query(f"SELECT version FROM {MIGRATIONS_TABLE} ORDER BY version")
    return [str(r["version"]) for r in rows]


def test_the_shipped_migrations_are_numbered_in_order_without_duplicates() -> None:
    versions = [name.split("_", 1)[0] for name, _ in migration_files()]
    assert versions == sorted(versions) and len(set(versions)) == len(versions)
    assert all(v.isdigit() and len(v) == 4 for v in versions)


async def test_a_fresh_store_gets_every_migration_once(store: Store) -> None:
    expected = [name.split("_", 1)[0] for name, _ in migration_files()]
    assert await applied(store) == expected
    await apply_migrations(store)  # a second start applies nothing again
    assert await applied(store) == expected


async def test_an_older_store_is_upgraded_and_keeps_its_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A data directory at the schema before the newest migration, with rows in the
    shape of that time, opened by this version: the newest migration applies and
    the rows read back in the new shape (0010: case-insensitive usernames)."""
    url = f"surrealkv://{tmp_path / 'db'}"
    files = migration_files()
    older = [f for f in files if f[0].split("_", 1)[0] < "0010"]
    monkeypatch.setattr(schema, "migration_files", lambda: older)
    store = Store(url, secrets=KEYS)
    await store.open()
    try:
        assert await applied(store) == [name.split("_", 1)[0] for name, _ in older]
        for rid, name in (("u1", "admin"), ("u2", "Admin"), ("u3", "Operator")):
            await store.write(
                Stmt(
                    "CREATE type::thing('user', $id) SET username = $name, roles = [],"
                    " created_at = time::now()",
                    {"id": rid, "name": name},
                )
            )
    finally:
        await store.close()
    monkeypatch.setattr(schema, "migration_files", lambda: files)
    store = Store(url, secrets=KEYS)
    await store.open()
    try:
        assert await applied(store) == [name.split("_", 1)[0] for name, _ in files]
        rows = await store.query("SELECT record::id(id) AS id, username_key FROM user ORDER BY id")
        keys = {r["id"]: r["username_key"] for r in rows}
        assert keys["u1"] == "admin" and keys["u3"] == "operator"
        assert keys["u2"] == "admin#u2"  # a later case-duplicate keeps a key of its own
    finally:
        await store.close()
