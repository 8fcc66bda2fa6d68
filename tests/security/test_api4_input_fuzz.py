"""API4/API8: random hostile JSON and queries against the body- and query-reading routes of
both services, with and without a token: NUL, lone surrogates, control characters, huge and
non-finite numbers, deep nesting. Only documented answers (2xx or 4xx), never a 5xx."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yarl import URL

from tests.helpers.services import Services, bearer

NASTY = ["\x00", "\ud800", "\udfff", "\x1b", "\x7f", "\u2028", "a\x00b", "\t\r\n", "é", "𝄞"]
DOCUMENTED = {200, 201, 202, 400, 401, 403, 404, 409, 413, 415, 422, 429}
BODY_ROUTES = [
    ("orch", "POST", "/batch/execute"),
    ("orch", "POST", "/workflows/servers/create"),
    ("orch", "POST", "/workflows/taskserv/create"),
    ("orch", "POST", "/rollback/checkpoints"),
    ("orch", "POST", "/rollback/execute"),
    ("cc", "POST", "/auth/login"),
    ("cc", "POST", "/auth/refresh"),
    ("cc", "POST", "/users"),
    ("cc", "POST", "/policies"),
    ("cc", "POST", "/webhooks"),
]
QUERY_ROUTES = [
    ("orch", "/batch/operations"),
    ("orch", "/tasks"),
    ("orch", "/rollback/checkpoints"),
    ("cc", "/audit/logs"),
    ("cc", "/users"),
    ("cc", "/webhooks"),
]

texts = st.one_of(
    st.sampled_from(NASTY), st.text(max_size=20), st.text(st.characters(codec=None), max_size=8)
)
numbers = st.one_of(
    st.integers(),
    st.integers(min_value=2**63 - 2, max_value=2**70),
    st.integers(min_value=-(2**70), max_value=-(2**63) + 2),
    st.floats(allow_nan=True, allow_infinity=True),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, texts)
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(texts, inner, max_size=4)),
    max_leaves=20,
)
FIELDS = ["name", "operations", "username", "password", "url", "events", "description", "infra", "id", "type"]


@st.composite
def bodies(draw: st.DrawFn) -> str:
    doc = draw(st.dictionaries(st.one_of(st.sampled_from(FIELDS), texts), documents, max_size=6))
    depth = draw(st.sampled_from([0, 0, 0, 63, 64, 65, 3000]))
    if depth:
        doc[draw(st.sampled_from(FIELDS))] = "[" * depth + "]" * depth  # spliced in below
    text = json.dumps(doc, ensure_ascii=True)  # surrogates as \\ud800, NaN/Infinity as literals
    return text.replace('"' + "[" * depth + "]" * depth + '"', "[" * depth + "]" * depth) if depth else text


def encode(value: str) -> str:
    return quote(value.encode("utf-8", "surrogatepass"), safe="")


@st.composite
def queries(draw: st.DrawFn) -> str:
    pairs = draw(
        st.lists(
            st.tuples(
                st.one_of(st.sampled_from(["status", "limit", "offset", "action", "from"]), texts), texts
            ),
            max_size=4,
        )
    )
    return "&".join(f"{encode(k)}={encode(v)}" for k, v in pairs)


FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@FUZZ
@given(route=st.sampled_from(BODY_ROUTES), body=bodies(), authenticated=st.booleans())
async def test_random_hostile_bodies_get_documented_answers(
    services: Services, route: tuple[str, str, str], body: str, authenticated: bool
) -> None:
    service, method, path = route
    client = services.orch if service == "orch" else services.cc
    headers = {"Content-Type": "application/json"}
    if authenticated:
        headers.update(bearer(await admin_token(services)))
    resp = await client.request(method, path, data=body.encode(), headers=headers)
    assert resp.status in DOCUMENTED, (route, body[:200], await resp.text())
    doc: dict[str, Any] = await resp.json()
    assert doc["success"] is (resp.status < 400)


@FUZZ
@given(route=st.sampled_from(QUERY_ROUTES), query=queries(), authenticated=st.booleans())
async def test_random_hostile_queries_get_documented_answers(
    services: Services, route: tuple[str, str], query: str, authenticated: bool
) -> None:
    service, path = route
    client = services.orch if service == "orch" else services.cc
    headers = bearer(await admin_token(services)) if authenticated else {}
    resp = await client.get(URL(f"{path}?{query}", encoded=True), headers=headers)
    assert resp.status in DOCUMENTED, (route, query, await resp.text())


_TOKENS: dict[int, str] = {}


async def admin_token(services: Services) -> str:
    """One login per services instance (hypothesis reuses the fixture across examples)."""
    key = id(services)
    if key not in _TOKENS:
        _TOKENS.clear()
        _TOKENS[key] = await services.admin()
    return _TOKENS[key]
