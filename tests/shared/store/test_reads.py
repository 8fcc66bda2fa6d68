"""Reads at the store's boundary: answers decoded plain in the CBOR decoder
(``codec.plain_tag_hook``) are what the SDK's decoder and ``to_plain`` made of them,
for every kind of value the engine returns; the engine's scan step is set once, before
the first store opens, and an operator's own value wins (``shared/store/scans.py``)."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import cbor2
import pytest

from shared.store.codec import cbor_default, plain_tag_hook, tag_hook, to_plain
from shared.store.scans import FETCH_SIZE_VARIABLE, apply_fetch_size
from shared.store.store import Store
from shared.store.writes import Insert

VALUES = (
    "RETURN [1d2h3s, 1.5dec, d'1969-12-31T23:59:58.999999Z', d'2026-11-26T15:54:29.434293Z', NONE, NULL, "
    "journal:5, type::thing('t', [1, 'a']), type::thing('t', {a: 1}), {n: [2dec, {x: NONE}]}, time::now()]"
)


async def test_plain_answers_are_what_to_plain_made_of_the_sdk_s(store: Store) -> None:
    await store.write(Insert("t", {"id": "r1", "at": datetime(2001, 2, 3, 4, 5, 6, 789, tzinfo=UTC), "n": 1}))
    ex = store._db._db.execute
    for sql in (VALUES, "SELECT * FROM t", "INFO FOR DB"):
        raw = await ex(cbor2.dumps({"id": "q", "method": "query", "params": [sql, {}]}, default=cbor_default))
        assert cbor2.loads(raw, tag_hook=plain_tag_hook) == to_plain(cbor2.loads(raw, tag_hook=tag_hook))
    (row,) = await store.query("SELECT * FROM t")
    assert row == {"id": "r1", "at": datetime(2001, 2, 3, 4, 5, 6, 789, tzinfo=UTC), "n": 1}
    assert row["at"].tzinfo is UTC


def test_the_scan_step_is_set_once_and_an_operator_s_value_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(FETCH_SIZE_VARIABLE, raising=False)
    apply_fetch_size(0)  # the engine's own default
    assert FETCH_SIZE_VARIABLE not in os.environ
    apply_fetch_size(100)
    assert os.environ[FETCH_SIZE_VARIABLE] == "100"
    monkeypatch.setenv(FETCH_SIZE_VARIABLE, "64")
    apply_fetch_size(100)
    assert os.environ[FETCH_SIZE_VARIABLE] == "64"
