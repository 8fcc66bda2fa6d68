"""Walking a list by its ``Link: rel="next"`` header (no fixtures here)."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp.test_utils import TestClient

NEXT = re.compile(r'<([^>]+)>; rel="next"')


def next_link(headers: Any) -> str | None:
    match = NEXT.search(headers.get("Link", ""))
    return match.group(1) if match else None


async def walk(
    client: TestClient,
    path: str,
    *,
    limit: int,
    headers: dict[str, str] | None = None,
    between: Callable[[int], Awaitable[None]] | None = None,
    **params: Any,
) -> list[dict[str, Any]]:
    """Every item of a list, page by page through the next links; ``between(page)`` runs
    after each page (to insert rows while a client is paging)."""
    items: list[dict[str, Any]] = []
    url: str | None = path
    query: dict[str, str] | None = {"limit": str(limit), **{k: str(v) for k, v in params.items()}}
    page = 0
    while url is not None:
        resp = await client.get(url, params=query, headers=headers)
        doc = await resp.json()
        assert resp.status == 200, doc
        assert resp.headers["X-Limit"] == str(limit)
        items += doc["data"]
        page += 1
        if between is not None:
            await between(page)
        url, query = next_link(resp.headers), None
        assert page < 10_000
    return items


async def refused_cursor(client: TestClient, path: str, headers: dict[str, str] | None = None) -> None:
    """A cursor the service never issued is a 422 naming ``cursor``, never a 500."""
    for bad in ("not*base64", "x" * 700, "fwE", "AAAA"):
        resp = await client.get(path, params={"cursor": bad}, headers=headers)
        doc = await resp.json()
        assert resp.status in (400, 422), (bad, doc)
        assert any(f["field"] == "cursor" for f in doc["details"]["fields"]), (bad, doc)
