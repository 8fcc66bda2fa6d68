"""The store's last line of defence: whatever a caller writes, a string holding NUL is never
stored raw (the engine would keep it and then fail every read of the row, for good)."""

from __future__ import annotations

import logging

import pytest

from shared.store.codec import guard_nul, has_nul, log_entries
from shared.store.store import Store
from shared.store.writes import Append, Insert, Lazy, Merge, Stmt


async def test_every_kind_of_write_is_stored_readable(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="shared.store.codec")
    await store.write(
        Stmt(
            "CREATE type::thing('t', 's') CONTENT $row RETURN NONE",
            {"row": {"name": "a\x00b", "k\x00": ["x\x00"]}},
        ),
        Insert("t", {"id": "i", "name": "q\x00", "nested": {"deep": [{"v": "\x00"}]}}),
    )
    await store.write(Merge("t", "i", {"extra": "z\x00"}), Append("log", 1, "key\x00", {"text": "e\x00"}))
    await store.write(Lazy("t", "l", {"name": "lazy\x00"}, mark=1, create=True))
    rows = {r["id"]: r for r in await store.query("SELECT * FROM t")}
    assert rows["s"] == {"id": "s", "name": "a\ufffdb", "k\ufffd": ["x\ufffd"]}
    assert rows["i"] == {
        "id": "i",
        "name": "q\ufffd",
        "nested": {"deep": [{"v": "\ufffd"}]},
        "extra": "z\ufffd",
    }
    assert rows["l"]["name"] == "lazy\ufffd"
    (log_row,) = await store.query("SELECT * FROM log")
    assert log_row["keys"] == ["key\ufffd"]
    # A log's entries are a CBOR blob: bytes to the engine, readable as they are.
    assert log_entries(log_row) == [{"text": "e\x00"}]
    warnings = [r for r in caplog.records if r.name == "shared.store.codec" and "NUL" in r.getMessage()]
    assert {r.table for r in warnings} == {"t", "log"}  # type: ignore[attr-defined]
    assert all("\x00" not in r.getMessage() and "\ufffd" not in r.getMessage() for r in warnings)


def test_clean_values_are_passed_through_untouched() -> None:
    row = {"id": "a", "n": 1, "s": "text\twith\nlines", "l": [1, "x", {"k": None}], "b": b"\x00"}
    assert not has_nul(row)
    assert guard_nul(row, "t") is row
    assert has_nul({"a": [{"b": ("x", "y\x00")}]})
    assert has_nul({"k\x00": 1})
