"""Counters maintained in the same commit as the change they count.

A count of a table by status (or kind, or owner) is never taken with ``count()``:
that scans every row, and measured on the embedded engine it grows with the
table (``bench/planner.py``: ~140 ms at 100,000 rows, ~900 ms through
``count(SELECT …)``). Instead the writes that add, move or remove a row carry
:class:`~shared.store.writes.Count` deltas; the writer adds them up per commit
and updates one ``counter:<key>`` row per key in the same transaction, so a
counter is exactly as durable as the change it counts, and reading one is a
single record lookup.

A counter row is ``{id: <key>, <field>: <int>, …}``: fields are statuses, kinds or
``n``; a missing field is 0.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from surrealdb import RecordID

from shared.store.writes import Count

if TYPE_CHECKING:  # the store is passed in; only its type is needed here
    from shared.store.store import Store

COUNTER_TABLE = "counter"
TOTAL = "n"  # the field of a counter that counts everything of its key


@functools.lru_cache(maxsize=4096)
def moved(key: str, from_field: str | None, to_field: str | None, n: int = 1) -> tuple[Count, ...]:
    """The deltas of ``n`` things moving from one field of a counter to another (either
    may be ``None``: a thing appearing or going away).

    Every transition of the engine counts one or two of these: they are built once per
    (key, fields, n) and shared (a :class:`Count` is never changed once made)."""
    out = []
    if from_field is not None:
        out.append(Count(key, from_field, -n))
    if to_field is not None:
        out.append(Count(key, to_field, n))
    return tuple(out)


def counts_of(row: Mapping[str, Any] | None) -> dict[str, int]:
    """A counter row's fields as ``{field: n}``, without its id and without zeros."""
    if not row:
        return {}
    return {k: int(v) for k, v in row.items() if k != "id" and isinstance(v, int | float) and v}


async def read_counters(store: Store, keys: Iterable[str]) -> dict[str, dict[str, int]]:
    """Several counter rows by key, in one round trip (a record lookup each)."""
    wanted = list(dict.fromkeys(keys))
    if not wanted:
        return {}
    rows = await store.query("SELECT * FROM $ids", {"ids": [RecordID(COUNTER_TABLE, k) for k in wanted]})
    found = {str(r["id"]): counts_of(r) for r in rows}
    return {k: found.get(k, {}) for k in wanted}


async def read_counter(store: Store, key: str) -> dict[str, int]:
    """One counter row's fields (empty when nothing was ever counted)."""
    return (await read_counters(store, [key]))[key]
