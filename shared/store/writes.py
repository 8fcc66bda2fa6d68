"""What the writer is asked to do, and how queued writes become one transaction.

Statements (:class:`Stmt`), merges and inserts that coalesce, log entries
(:class:`Append`: one row per commit holding its entries as a CBOR blob),
lazily applied projection rows (:class:`Lazy`) and rows kept in pages (:class:`Paged`);
:class:`Plan` turns a run of them into one ``BEGIN … COMMIT`` query with every value bound and NUL guarded.

Writes are slotted dataclasses, not frozen ones: each transition of the engine builds
half a dozen, and a frozen dataclass costs seven times as much to build (~1.1 µs
against ~0.17 µs). Treat them as immutable all the same.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any

from surrealdb import RecordID

from shared.store.codec import NONE, guard_nul, nones, pack, table_of

log = logging.getLogger(__name__)


_PARAM = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
_FIELD = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")  # a counter field: pasted into SET, so checked
_CHECKED_FIELDS: set[str] = set()  # counter fields that passed the check (statuses, kinds: few)


@dataclass(slots=True)
class Stmt:
    """One SurrealQL statement (no trailing ``;``) and its bound parameters."""

    sql: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Count:
    """Add ``delta`` to the number ``field`` of the row ``counter:<key>``, in the same
    commit as the writes queued with it (see ``shared/store/counters.py``).

    Counts coalesce: a commit adds up every delta per (key, field) and writes each
    counter row once, so a submission of 5,000 tasks costs one counter update."""

    key: str
    field: str
    delta: int


@dataclass(slots=True)
class Merge:
    """Merge ``patch`` into record ``table:id``; consecutive merges share one statement."""

    table: str
    id: str
    patch: dict[str, Any]


@dataclass(slots=True)
class Insert:
    """Insert a new row; consecutive inserts into a table share one ``INSERT``.

    ``counts`` are counter deltas committed with it (the row's status, kind, …)."""

    table: str
    row: dict[str, Any]
    counts: tuple[Count, ...] = ()


@dataclass(slots=True)
class Put:
    """Create or replace record ``table:id`` with ``row`` (``None``: delete it); the puts
    of a run share one statement, the last one to a record winning. Unlike a statement,
    a put never makes the writer apply pending lazy rows of other records."""

    table: str
    id: str
    row: dict[str, Any] | None


@dataclass(slots=True)
class Append:
    """An entry of an append-only log, at position ``seq`` (increasing in queue order).

    The entries a commit appends to one table become one row keyed by its last
    position: ``{id: last, first, last, keys, entries}``, where ``entries`` is the
    entries as one CBOR blob and ``keys`` the distinct ``key`` values (for filtering);
    :func:`log_entries` decodes a row."""

    table: str
    seq: int
    key: str
    entry: dict[str, Any]


@dataclass(slots=True)
class Lazy:
    """A change to a row that a durable log already records (at position ``mark``).

    It need not be written with its own commit: the writer keeps lazy changes
    coalesced per row and applies them later, in bulk, but always before any read,
    any statement and any merge into the same row, so nobody ever observes the
    difference. Each application records the position up to which every lazy
    change is applied (:meth:`Store.lazy_mark`); after a crash the log's owner
    re-applies its entries after that position. ``create`` rows are new
    (inserted whole); others merge into an existing row. Rows whose last change
    is ``settled`` are applied first; others wait (up to ``lazy_max_age_s``) so that
    the changes still coming to them are coalesced into one write."""

    table: str
    id: str
    patch: dict[str, Any]
    mark: int
    create: bool = False
    settled: bool = False  # unlikely to change again soon: worth applying now
    # Counter deltas of the change: committed with its log entry, never with the
    # row's later application (which only catches the row up).
    counts: tuple[Count, ...] = ()
    # The row lives in a page (``shared/store/pages.py``): ``table`` is the paged table
    # and this the record id of the page holding row ``id``.
    page: str | None = None
    # The page is new: nothing in the store holds it before this change's commit (the
    # rows of a submission, whose pages its position names). The writer then never
    # reads it from the store before its first write.
    fresh: bool = False


@dataclass(slots=True)
class Paged:
    """A change to row ``id`` of the page ``table:page`` (``shared/store/pages.py``),
    committed with its neighbours: ``create`` puts the row whole, else ``patch`` merges
    into it (``None`` removes a field; a missing row stays missing). The writer reads
    the page, changes the row and writes the page back in the same commit."""

    table: str
    page: str
    id: str
    patch: dict[str, Any]
    create: bool = False
    # The page is new (as :attr:`Lazy.fresh`): the ``local`` provider's first row of a
    # page it has just allocated. The writer does not read it before its first write.
    fresh: bool = False


Write = Stmt | Merge | Insert | Put | Append | Lazy | Count | Paged


def eager(table: str, rid: str, create: bool, patch: dict[str, Any]) -> Write:
    """A lazy change as the write that applies it."""
    if create:
        return Insert(table, {"id": rid, **patch})
    return Merge(table, rid, patch)


class Plan:
    """Turns queued writes into one transaction, coalescing runs of merges and inserts."""

    def __init__(self) -> None:
        self.statements: list[str] = []
        self.params: dict[str, Any] = {}
        self.slots: list[int | None] = []
        self._merges: dict[str, dict[str, dict[str, Any]]] = {}
        self._inserts: dict[str, list[dict[str, Any]]] = {}
        self._appends: dict[str, list[Append]] = {}
        self._counts: dict[str, dict[str, int]] = {}
        self._puts: dict[str, dict[str, dict[str, Any] | None]] = {}

    def add(self, write: Write, *, own: bool = True) -> None:
        """Plan a write; ``own`` ones get a result slot (those the writer adds do not)."""
        slot: int | None = None
        # Exact types first (writes are never subclassed): counts and log entries are
        # most of every commit.
        if type(write) is Count:
            fields = self._counts.setdefault(write.key, {})
            name = write.field
            if name not in _CHECKED_FIELDS:
                if not _FIELD.fullmatch(name):
                    raise ValueError(f"not a counter field name: {name!r}")
                if len(_CHECKED_FIELDS) < 1024:
                    _CHECKED_FIELDS.add(name)
            fields[name] = fields.get(name, 0) + write.delta
        elif type(write) is Append:
            self._appends.setdefault(write.table, []).append(write)
        elif isinstance(write, Lazy | Paged):
            raise TypeError("lazy and paged changes are resolved by the writer, never planned")
        elif isinstance(write, Merge):
            rid = guard_nul(write.id, write.table)
            # None in a patch means "remove the field": SurrealDB's NONE.
            patch = {k: NONE if v is None else v for k, v in guard_nul(write.patch, write.table).items()}
            # Two merges into one record in the same run are one merge: the later
            # patch wins key by key, exactly as applying them in order would.
            if rid in self._puts.get(write.table, {}):
                self._flush()  # the put first, then the merge into what it wrote
            pending = self._merges.setdefault(write.table, {})
            if rid in pending:
                pending[rid].update(patch)
            else:
                pending[rid] = patch
        elif isinstance(write, Put):
            rid = guard_nul(write.id, write.table)
            if rid in self._merges.get(write.table, {}):
                self._flush()  # the merge first, then the put that replaces its result
            row = None
            if write.row is not None:
                row = {k: v for k, v in guard_nul(write.row, write.table).items() if v is not None}
            self._puts.setdefault(write.table, {})[rid] = row
        elif isinstance(write, Insert):
            for count in write.counts:
                self.add(count, own=False)
            checked = guard_nul(write.row, write.table)
            row = {k: v for k, v in checked.items() if v is not None}  # absent is NONE
            if isinstance(row.get("id"), str | int):
                row["id"] = RecordID(write.table, row["id"])
            self._inserts.setdefault(write.table, []).append(row)
        elif isinstance(write, Stmt):
            self._flush()
            write = Stmt(write.sql, guard_nul(write.params, table_of(write.sql)))
            sql, renamed = rename_params(write, f"s{len(self.statements)}_")
            slot = len(self.statements)
            self.statements.append(sql)
            self.params.update(nones(renamed))
        else:  # a Count or an Append of a subclass: never made
            raise TypeError(f"not a write the plan knows: {type(write).__name__}")
        if own:
            self.slots.append(slot)

    def _flush(self) -> None:
        for table, appends in self._appends.items():
            self._inserts.setdefault(table, []).append(
                {
                    "id": RecordID(table, appends[-1].seq),
                    "first": appends[0].seq,
                    "last": appends[-1].seq,
                    "keys": guard_nul(list(dict.fromkeys(a.key for a in appends)), table),
                    "entries": pack([a.entry for a in appends]),
                }
            )
        self._appends = {}
        # Inserts first: a later merge may patch a row inserted in the same run.
        for table, rows in self._inserts.items():
            name = f"i{len(self.statements)}"
            self.statements.append(f"INSERT INTO {table} ${name} RETURN NONE")
            self.params[name] = rows
        for table, merges in self._merges.items():
            name = f"m{len(self.statements)}"
            self.statements.append(f"FOR $row IN ${name} {{ UPDATE $row.id MERGE $row.patch RETURN NONE; }}")
            self.params[name] = [
                {"id": RecordID(table, rid), "patch": patch} for rid, patch in merges.items()
            ]
        for table, puts in self._puts.items():
            name = f"p{len(self.statements)}"
            self.statements.append(
                f"FOR $put IN ${name} {{ IF $put.row = NONE {{ DELETE $put.id RETURN NONE }} "
                "ELSE { UPSERT $put.id CONTENT $put.row RETURN NONE } }"
            )
            self.params[name] = [
                {"id": RecordID(table, rid)} if row is None else {"id": RecordID(table, rid), "row": row}
                for rid, row in puts.items()
            ]
        self._merges = {}
        self._inserts = {}
        self._puts = {}
        # Counters last: a delta never depends on the rows written with it.
        for key, fields in self._counts.items():
            changed = {f: d for f, d in fields.items() if d}
            if not changed:
                continue
            name = f"c{len(self.statements)}"
            assignments = ", ".join(f"{f} += ${name}_{f}" for f in changed)
            self.statements.append(f"UPSERT type::thing('counter', ${name}) SET {assignments} RETURN NONE")
            self.params[name] = guard_nul(key, "counter")
            self.params.update({f"{name}_{f}": d for f, d in changed.items()})
        self._counts = {}

    def build(self) -> tuple[str, dict[str, Any], list[int | None]]:
        self._flush()
        sql = "BEGIN TRANSACTION;\n" + ";\n".join(self.statements) + ";\nCOMMIT TRANSACTION;"
        return sql, self.params, self.slots


def rename_params(stmt: Stmt, prefix: str) -> tuple[str, dict[str, Any]]:
    if not stmt.params:
        return stmt.sql, {}
    names = stmt.params.keys()

    def sub(match: re.Match[str]) -> str:
        name = match.group(1)
        return f"${prefix}{name}" if name in names else match.group(0)

    return _PARAM.sub(sub, stmt.sql), {prefix + k: v for k, v in stmt.params.items()}
