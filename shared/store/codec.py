"""Values at the store's boundary: CBOR in and out (cbor2's C codec, byte-identical
to the SDK's), driver types to plain Python, dates as ISO 8601, and the NUL guard.

The embedded engine stores a string holding NUL but can never return it (every
read of that row fails, for good): :func:`guard_nul` replaces NUL in every value
about to be written, whoever wrote it. Input is refused long before, in
``shared/web/validation.py``; this is the last line of defence.
"""

from __future__ import annotations

import logging
import re
import zlib
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import cbor2
from surrealdb import Duration, RecordID
from surrealdb.data.cbor import tag_decoder

log = logging.getLogger(__name__)


NONE = cbor2.CBORTag(6, None)  # SurrealDB's NONE (a bare CBOR null would be NULL)


def to_plain(value: Any) -> Any:
    """Convert driver values into plain Python: ids to strings, durations to seconds."""
    if isinstance(value, RecordID):
        return str(value.id)
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(v) for v in value]
    if isinstance(value, Duration):
        seconds, nanos = value.get_seconds_and_nano()
        return seconds + nanos / 1e9
    if isinstance(value, Decimal):
        return float(value)
    return value


_THING = re.compile(r"type::thing\(\s*'(\w+)'")
_TABLE = re.compile(r"\b(?:INTO|UPDATE|UPSERT|CREATE|DELETE|FROM)\s+(\w+)", re.I)
NUL = "\x00"
NUL_REPLACEMENT = "\ufffd"


def table_of(sql: str) -> str:
    """The table a statement writes, as far as a glance can tell (for a log line)."""
    match = _THING.search(sql) or _TABLE.search(sql)
    return match.group(1) if match else "(statement)"


def has_nul(value: Any) -> bool:
    """Whether a string anywhere in ``value`` (keys and record ids included) holds NUL.

    Only strings are looked at, with ``in``: the cost is one pass over the containers."""
    kind = type(value)
    if kind is str:
        return NUL in value
    if kind is dict:
        for key, item in value.items():
            if type(key) is str and NUL in key:
                return True
            if (NUL in item) if type(item) is str else has_nul(item):
                return True
        return False
    if kind is list or kind is tuple:
        for item in value:
            if (NUL in item) if type(item) is str else has_nul(item):
                return True
        return False
    if kind is RecordID:
        return has_nul(value.id)
    return False


def replace_nul(value: Any) -> Any:
    """``value`` with NUL replaced by U+FFFD in every string (keys and record ids too)."""
    if isinstance(value, str):
        return value.replace(NUL, NUL_REPLACEMENT)
    if isinstance(value, dict):
        return {replace_nul(k): replace_nul(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [replace_nul(v) for v in value]
    if isinstance(value, RecordID):
        return RecordID(value.table_name, replace_nul(value.id))
    return value


def guard_nul(value: Any, table: str) -> Any:
    """What may be written of ``value``: itself, or a copy without NUL (and a warning
    naming the table, never the value): nothing the store cannot read back is written."""
    if not has_nul(value):
        return value
    log.warning("a value holding NUL was about to be stored; NUL replaced by U+FFFD", extra={"table": table})
    return replace_nul(value)


def pack(value: Any) -> bytes:
    """A value as a compact blob: CBOR, deflated (rows of one kind repeat their keys and
    much of their values: 4 to 5 times smaller; the engine replays every byte ever written at
    each start, docs/performance.md "Task pages")."""
    # Dates as epoch numbers (CBOR tag 1): 1.5 µs to pack against ~3.7 µs as ISO text,
    # and they read back as the same aware datetime, to the microsecond.
    return zlib.compress(encode(value), 1)


def encode(value: Any) -> bytes:
    """A value as :func:`pack` encodes it, before deflating: the parts of
    :func:`pack_array` (a row encoded once is reused while it does not change)."""
    return cbor2.dumps(value, default=cbor_default, timezone=UTC, datetime_as_timestamp=True)


def pack_array(parts: list[bytes]) -> bytes:
    """What :func:`pack` makes of a list whose items :func:`encode` gave ``parts``: a CBOR
    array is its length's header and then its items, byte for byte."""
    n = len(parts)
    if n < 24:
        head = bytes((0x80 | n,))
    elif n < 1 << 8:
        head = bytes((0x98, n))
    elif n < 1 << 16:
        head = b"\x99" + n.to_bytes(2, "big")
    elif n < 1 << 32:
        head = b"\x9a" + n.to_bytes(4, "big")
    else:
        head = b"\x9b" + n.to_bytes(8, "big")
    return zlib.compress(head + b"".join(parts), 1)


def unpack(blob: bytes) -> Any:
    """What :func:`pack` packed; also reads the plain CBOR blobs written before it (a CBOR
    array or map never starts with zlib's first byte, 0x78)."""
    if blob[:1] == b"\x78":
        blob = zlib.decompress(blob)
    return cbor2.loads(blob)


def log_entries(row: dict[str, Any]) -> list[dict[str, Any]]:
    """The entries of a log row written by :class:`Append` (or a one-entry legacy row)."""
    blob = row.get("entries")
    if isinstance(blob, bytes):
        entries: list[dict[str, Any]] = unpack(blob)
        return entries
    return [row]


def nones(value: Any) -> Any:
    """Python None as SurrealDB NONE (absent), as the SDK's own encoder does."""
    if value is None:
        return NONE
    if isinstance(value, dict):
        return {k: nones(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [nones(v) for v in value]
    return value


def cbor_default(encoder: Any, value: Any) -> None:
    if isinstance(value, RecordID):
        encoder.encode(cbor2.CBORTag(8, [value.table_name, value.id]))
    elif isinstance(value, Duration):
        encoder.encode(cbor2.CBORTag(14, list(value.get_seconds_and_nano())))
    elif isinstance(value, Decimal):
        encoder.encode(cbor2.CBORTag(10, str(value)))
    else:
        raise TypeError(f"cannot store a {type(value).__name__}")


def tag_hook(tag: cbor2.CBORTag, immutable: bool) -> Any:
    """cbor2 6 calls ``tag_hook(tag, immutable)``; the SDK's decoder wants (decoder, tag)."""
    return tag_decoder(None, tag)  # type: ignore[arg-type]


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def plain_tag_hook(tag: cbor2.CBORTag, immutable: bool) -> Any:
    """:func:`tag_hook` giving what :func:`to_plain` would make of its value, so a
    response decoded with it is plain already. The tags every row carries first:
    a date (the SDK's decoder tests ten tags before it and adds a ``timedelta``:
    ~4 µs a date, 0.8 ms of a page of 50 workflows), a record id, NONE."""
    number = tag.tag
    if number == 12:  # a date: [seconds, nanoseconds]
        value = tag.value
        nanos = value[1] if len(value) > 1 else 0
        return _EPOCH + timedelta(seconds=value[0], microseconds=nanos // 1000)
    if number == 8:  # a record id: to_plain keeps its id, as text
        return str(tag.value[1])
    if number == 6:  # NONE
        return None
    return to_plain(tag_hook(tag, immutable))


async def embedded_query(db: Any, sql: str, params: dict[str, Any], *, plain: bool = False) -> dict[str, Any]:
    """The SDK's query message, encoded and decoded with cbor2's C codec (with ``plain``,
    into plain Python already: :func:`plain_tag_hook`).

    Byte-for-byte what the SDK sends (checked in tests), three times faster: the
    SDK's pure-Python encoder was the engine's largest cost. Params must already
    carry ``NONE`` where a Python ``None`` was meant (see :func:`nones`).
    """
    message = {"id": "q", "method": "query", "params": [sql, params]}
    payload = cbor2.dumps(message, default=cbor_default, timezone=UTC)
    raw = await db._db.execute(payload)
    response = cbor2.loads(raw, tag_hook=plain_tag_hook if plain else tag_hook)
    return response if isinstance(response, dict) else {}


def iso(value: Any) -> str | None:
    """Render a datetime from the store as ISO 8601 with a ``Z``."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return str(value)
