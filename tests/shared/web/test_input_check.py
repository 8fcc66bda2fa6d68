"""The hostile-input check's fast pass (:func:`shared.web.validation._clean`) says yes
exactly when the walk that names every problem finds none: a document it lets through
is one the walk lets through, and every document it stops gets the walk's answer."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.errors import BadRequest, ValidationFailed
from shared.web.validation import (
    INT64_MAX,
    INT64_MIN,
    InputLimits,
    _clean,
    _Unrepresentable,
    _walk,
    check_json,
    parse_json,
)

LIMITS = InputLimits(max_depth=4, max_string_chars=6)

TEXT = st.one_of(
    st.text(max_size=8),
    st.sampled_from(
        ["", "ok", "tab\tok", "\n\r", "\x00", "a\x1fb", "\x7f", "\ud800", "x\udfff", "é" * 7, "abcdef"]
    ),
)
SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=INT64_MIN - 2, max_value=INT64_MAX + 2),
    st.sampled_from([INT64_MIN, INT64_MAX, INT64_MIN - 1, INT64_MAX + 1, 0]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.builds(_Unrepresentable, st.just("1" * 40)),
    TEXT,
)
DOC = st.recursive(
    SCALAR,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)),
    max_leaves=30,
)


def walk_verdict(doc: Any) -> bool:
    """What the walk alone says: no problem and nesting within the limit."""
    problems: list[dict[str, Any]] = []
    try:
        _walk(doc, "", 1, LIMITS, problems)
    except BadRequest:
        return False
    return not problems


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(DOC)
def test_the_fast_pass_agrees_with_the_walk(doc: Any) -> None:
    assert _clean(doc, LIMITS) == walk_verdict(doc)
    if not walk_verdict(doc):  # and check_json refuses it as the walk does
        with pytest.raises((BadRequest, ValidationFailed)):
            check_json(doc, "", LIMITS)
    else:
        check_json(doc, "", LIMITS)


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ('{"a": [1, {"b": "x\\u0000"}]}', "a.1.b"),
        ('{"a": ["ok", "\\ud800"]}', "a.1"),
        ('{"a\\u0001": 1}', "a\\x01"),
        ('{"a": {"b": 9223372036854775808}}', "a.b"),
        ('{"a": [1e400]}', "a.0"),
        ('{"a": "1234567"}', "a"),
    ],
)
def test_what_the_fast_pass_stops_is_named_by_the_walk(raw: str, field: str) -> None:
    with pytest.raises(ValidationFailed) as err:
        parse_json(raw, "", LIMITS)
    assert [f["field"] for f in err.value.details["fields"]] == [field]


def test_nesting_past_the_limit_is_400_and_up_to_it_passes() -> None:
    parse_json(json.dumps([[[{"a": 1}]]]), "", LIMITS)
    with pytest.raises(BadRequest):
        parse_json(json.dumps([[[[{"a": 1}]]]]), "", LIMITS)
