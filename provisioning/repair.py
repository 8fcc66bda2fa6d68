"""Repair a data directory whose rows hold NUL (written before input was refused).

The embedded engine stores a string holding NUL but can never send it back:
every read of such a row fails ("to be serialized string contained a null
byte"), so one row breaks its whole table's listing, for good. The engine can
still see and change those strings itself (``string::contains`` and
``string::replace`` work; only returning them fails), so the repair runs there:

* :func:`scan_store` counts, per table, the rows whose text holds NUL (values,
  object keys, nested arrays and objects), without reading them;
* :func:`repair_store` rewrites each such row with every NUL replaced by U+FFFD
  (the rest of the text is kept), using a temporary SurrealQL function that walks
  the row (record ids cannot hold NUL on a persistent engine: it refuses such a
  key with "Key encoding error");
* the audit log is hash-chained, so changing a record's text breaks the chain.
  The damaged records' exact content is first read with NUL swapped for a unique
  marker and restored in memory, and the chain as it stood is verified: if it
  was intact, the hashes from the first repaired record on are recomputed (the
  chain is only re-hashed after being proven whole), otherwise the hashes are left
  alone and ``/audit/verify`` keeps naming the break. Either way the repair is
  itself audited (``store.repair``, with the previous head hash and the records
  it changed).

What it cannot recover: the NUL itself (U+FFFD stands in its place). Entries inside a log row's CBOR
blob (``entries``) are bytes to the engine: readable as they are, left alone.
Run it with the services stopped (the embedded store's directory lock makes sure
of that): ``provisioning doctor --repair``.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from shared.security.audit import AuditEntry, AuditLog, chain_hash
from shared.security.repositories import AUDIT_HEAD_ID
from shared.store.store import Store
from shared.store.writes import Merge, Stmt

log = logging.getLogger(__name__)

NUL = "\x00"
# NUL as a regular expression: the statements never carry a NUL themselves (the store's
# guard would replace it, and SurrealQL refuses one in a literal).
NUL_PATTERN = r"\x00"
REPLACEMENT = "\ufffd"
AUDIT_TABLE = "audit"
PAGE = 1000  # audit records read or re-hashed per round trip
_FN = "fn::provisioning_nul_swap"

# Every string in a value with $z replaced by $with, keys included, at any depth.
# Closures cannot see the function's parameters, hence the transposed triples.
_DEFINE_FN = f"""DEFINE FUNCTION OVERWRITE {_FN}($v: any, $z: any, $with: string) {{
  IF type::is::string($v) {{ RETURN string::replace($v, $z, $with); }};
  IF type::is::array($v) {{
    IF array::len($v) = 0 {{ RETURN $v; }};
    RETURN array::transpose([$v, array::repeat($z, array::len($v)), array::repeat($with, array::len($v))])
      .map(|$t| {_FN}($t[0], $t[1], $t[2]));
  }};
  IF type::is::object($v) {{
    LET $e = object::entries($v);
    IF array::len($e) = 0 {{ RETURN $v; }};
    RETURN object::from_entries(
      array::transpose([$e, array::repeat($z, array::len($e)), array::repeat($with, array::len($e))])
        .map(|$t| [{_FN}($t[0][0], $t[1], $t[2]), {_FN}($t[0][1], $t[1], $t[2])]));
  }};
  RETURN $v;
}}"""
_DAMAGED = "string::matches(<string> $this, <regex> $z)"
_REWRITE = f"UPDATE type::table($tb) CONTENT {_FN}($this, <regex> $z, $with) WHERE {_DAMAGED} RETURN NONE"


@dataclass(frozen=True)
class TableRepair:
    """How many rows of one table held NUL (each one now holds U+FFFD instead)."""

    table: str
    rows: int


@dataclass(frozen=True)
class RepairReport:
    """What :func:`repair_store` found and did.

    ``audit_chain``: ``untouched`` (no audit record held NUL), ``rehashed`` (the chain
    was verified whole with the original text, then re-hashed from
    ``audit_rehashed_from``), or ``broken`` (it was already broken before the repair:
    hashes left alone)."""

    tables: tuple[TableRepair, ...] = ()
    audit_records: tuple[int, ...] = ()  # seq of each audit record repaired
    audit_chain: str = "untouched"
    audit_rehashed_from: int | None = None
    previous_audit_head: str | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def rows_repaired(self) -> int:
        return sum(t.rows for t in self.tables)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows_repaired": self.rows_repaired,
            "tables": {t.table: t.rows for t in self.tables},
            "audit_records": list(self.audit_records),
            "audit_chain": self.audit_chain,
            "audit_rehashed_from": self.audit_rehashed_from,
            "previous_audit_head": self.previous_audit_head,
            "seconds": round(self.seconds, 3),
            "notes": list(self.notes),
        }


async def scan_store(store: Store) -> dict[str, int]:
    """Rows holding NUL anywhere in their text, per table (only tables that have some).

    Reads no row back, so it works on a store whose reads fail."""
    found: dict[str, int] = {}
    for table in await _tables(store):
        rows = await store.query(
            f"SELECT count() AS n FROM type::table($tb) WHERE {_DAMAGED} GROUP ALL",
            {"tb": table, "z": NUL_PATTERN},
        )
        count = int(rows[0]["n"]) if rows else 0
        if count:
            found[table] = count
    return found


async def repair_store(store: Store, *, actor: str = "provisioning doctor") -> RepairReport:
    """Replace NUL by U+FFFD in every row of an open store (see the module's docstring).

    Idempotent: a clean store is left untouched and gets an empty report."""
    started = time.perf_counter()
    damage = await scan_store(store)
    if not damage:
        return RepairReport(seconds=time.perf_counter() - started)
    await store.write(Stmt(_DEFINE_FN))
    try:
        tables: list[TableRepair] = []
        audit: dict[str, Any] = {}
        for table, rows in damage.items():
            if table == AUDIT_TABLE:
                audit = await _repair_audit(store)
                tables.append(TableRepair(table, rows))
            else:
                await store.write(Stmt(_REWRITE, {"tb": table, "z": NUL_PATTERN, "with": REPLACEMENT}))
                tables.append(TableRepair(table, rows))
    finally:
        await store.write(Stmt(f"REMOVE FUNCTION IF EXISTS {_FN}"))
    report = RepairReport(tables=tuple(tables), seconds=time.perf_counter() - started, **audit)
    log.warning(
        "the store held NUL in %d rows; replaced by U+FFFD",
        report.rows_repaired,
        extra={"tables": {t.table: t.rows for t in tables}, "audit_chain": report.audit_chain},
    )
    await _audit_the_repair(store, report, actor)
    return report


async def _tables(store: Store) -> list[str]:
    info = await store.query("INFO FOR DB")
    tables = info[0].get("tables", {}) if info and isinstance(info[0], dict) else {}
    return sorted(str(name) for name in tables)


async def _repair_audit(store: Store) -> dict[str, Any]:
    """Verify the chain with the original text, then, in one transaction, replace NUL and
    (if the chain was whole) re-hash from the first repaired record to the head."""
    damaged = await store.query(
        f"SELECT seq FROM {AUDIT_TABLE} WHERE {_DAMAGED} ORDER BY seq", {"z": NUL_PATTERN}
    )
    seqs = tuple(int(r["seq"]) for r in damaged)
    head_rows = await store.query(
        "SELECT seq, hash FROM type::thing('audit_head', $id)", {"id": AUDIT_HEAD_ID}
    )
    head_seq = int(head_rows[0]["seq"]) if head_rows else 0
    head_hash = str(head_rows[0]["hash"]) if head_rows else ""
    rewrite = Stmt(_REWRITE, {"tb": AUDIT_TABLE, "z": NUL_PATTERN, "with": REPLACEMENT})
    rehashed = await _rehash_walk(store, seqs, head_seq, head_hash)
    if rehashed is None:
        await store.write(rewrite)
        return {
            "audit_records": seqs,
            "audit_chain": "broken",
            "previous_audit_head": head_hash,
            "notes": ["the audit chain was broken before the repair: its hashes were left as they were"],
        }
    merges, new_head = rehashed
    head = Stmt(
        "UPDATE type::thing('audit_head', $id) SET hash = $hash WHERE seq = $seq RETURN NONE",
        {"id": AUDIT_HEAD_ID, "hash": new_head, "seq": head_seq},
    )
    await store.write(rewrite, *merges, head)
    return {
        "audit_records": seqs,
        "audit_chain": "rehashed",
        "audit_rehashed_from": seqs[0],
        "previous_audit_head": head_hash,
    }


async def _rehash_walk(
    store: Store, damaged: tuple[int, ...], head_seq: int, head_hash: str
) -> tuple[list[Merge], str] | None:
    """Walk the whole chain reading each record with NUL swapped for a unique marker.

    With NUL put back in memory, every link and hash is checked exactly as
    ``/audit/verify`` does; ``None`` if the chain was broken. Otherwise the new
    ``prev_hash``/``hash`` of each record from ``first`` on, computed over its text as
    the repair leaves it (U+FFFD for NUL), and the new head hash. Only the ``damaged``
    records go through the (slow, ~2 ms a record) swapping function."""
    first = damaged[0]
    marker = f"\ue000nul-{uuid.uuid4().hex}\ue001"
    prev_hash, prev_seq, new_hash = "", 0, ""
    merges: list[Merge] = []
    while prev_seq < head_seq:
        # Windows on seq with an inclusive lower bound: on the embedded engine an exclusive
        # one (seq > $after) over the seq index was seen to skip a record.
        page = await store.query(
            f"SELECT seq, IF seq IN $damaged {{ {_FN}($this, <regex> $z, $marker) }} ELSE {{ $this }} AS row "
            f"FROM {AUDIT_TABLE} WHERE seq >= $low AND seq < $high ORDER BY seq",
            {
                "z": NUL_PATTERN,
                "marker": marker,
                "damaged": list(damaged),
                "low": prev_seq + 1,
                "high": prev_seq + 1 + PAGE,
            },
        )
        if not page:
            break
        for item in page:
            row = _swap(item["row"], marker, NUL)
            if int(row.get("seq", -1)) != prev_seq + 1 or row.get("prev_hash", "") != prev_hash:
                return None
            if chain_hash(prev_hash, row) != row.get("hash"):
                return None
            prev_hash, prev_seq = str(row["hash"]), prev_seq + 1
            if prev_seq < first:
                new_hash = prev_hash
                continue
            repaired = _swap(item["row"], marker, REPLACEMENT)
            repaired["prev_hash"] = link = new_hash
            new_hash = chain_hash(link, repaired)
            merges.append(Merge(AUDIT_TABLE, str(row["id"]), {"prev_hash": link, "hash": new_hash}))
    if prev_seq != head_seq or prev_hash != head_hash:
        return None
    return merges, new_hash


async def _audit_the_repair(store: Store, report: RepairReport, actor: str) -> None:
    audit = AuditLog()
    await audit.start(store)
    try:
        await audit.record(
            AuditEntry(
                action="store.repair",
                resource="store",
                result="success",
                username=actor,
                service="doctor",
                details={
                    "rows_repaired": report.rows_repaired,
                    "tables": {t.table: t.rows for t in report.tables},
                    "audit_records": list(report.audit_records),
                    "audit_chain": report.audit_chain,
                    "previous_audit_head": report.previous_audit_head,
                },
            )
        )
    finally:
        await audit.stop()


def _swap(value: Any, old: str, new: str) -> Any:
    if isinstance(value, str):
        return value.replace(old, new)
    if isinstance(value, dict):
        return {_swap(k, old, new): _swap(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_swap(v, old, new) for v in value]
    return value
