"""The envelope: ``{"success": true, "data": …}`` or the error body, and paginated lists
with ``X-Total-Count``, ``X-Limit``, ``X-Offset`` and ``Link``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from aiohttp import web
from pydantic import BaseModel

from shared.web.routing import OffsetPageQuery, PageQuery

log = logging.getLogger(__name__)


_ORJSON = orjson.OPT_NON_STR_KEYS | orjson.OPT_UTC_Z


def _dumps(value: Any) -> str:
    return json.dumps(value, default=_default, separators=(",", ":"))


def _default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if hasattr(value, "isoformat"):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def encode_json(value: Any) -> bytes:
    """JSON as the envelope writes it (datetimes ISO 8601 with ``Z``), with orjson: ~10 times
    faster than the standard library on a 5,000-operation document. What orjson
    refuses (integers beyond 64 bits) falls back to the standard encoder."""
    try:
        return orjson.dumps(value, default=_default, option=_ORJSON)
    except TypeError:
        return _dumps(value).encode()


def ok(data: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """The success envelope (encoded with orjson: the standard library's encoder was
    the biggest cost above the store of a ``/tasks`` page)."""
    return ok_encoded(encode_json(data), status=status, headers=headers)


def ok_encoded(data: bytes, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """The success envelope around ``data`` already encoded as JSON (a big document
    encoded in parts, or shared by several readers)."""
    # Joined, not added: ``+`` copies a big document (megabytes) ten times slower.
    return _json(b"".join((b'{"success":true,"data":', data, b"}")), status, headers)


def _json(body: bytes, status: int, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=body, status=status, headers=headers, content_type="application/json", charset="utf-8"
    )


def error_response(
    status: int, message: str, code: str, details: dict[str, Any] | None = None
) -> web.Response:
    """The error envelope."""
    body: dict[str, Any] = {"success": False, "error": message, "code": code}
    if details:
        body["details"] = details
    return _json(encode_json(body), status)


@dataclass(frozen=True, slots=True)
class Counted:
    """A page of a small list that pages by offset only: its total, and no cursor."""

    total: int
    next_cursor: None = None


class Listed(Protocol):
    """A page as a service returns it (``shared.store.keyset.Listing``)."""

    @property
    def total(self) -> int | None: ...

    @property
    def next_cursor(self) -> str | None: ...


def paginated(request: web.Request, items: list[Any], query: OffsetPageQuery, listed: Listed) -> web.Response:
    """A list page with ``X-Limit``, ``X-Offset``, ``X-Total-Count`` (when the total is
    maintained; a filter no counter follows sends none) and ``Link``: ``rel="next"``
    carries the cursor of the page after this one (present exactly when there is
    one; by offset for the small lists that have no cursor), ``rel="prev"`` the
    previous offset for a client paging by offsets."""
    limit, offset = query.limit, query.offset
    headers = {"X-Limit": str(limit), "X-Offset": str(offset)}
    if listed.total is not None:
        headers["X-Total-Count"] = str(listed.total)
    links = []
    if listed.next_cursor is not None:
        kept = {k: v for k, v in request.rel_url.query.items() if k not in ("offset", "cursor", "limit")}
        nxt = request.rel_url.with_query({**kept, "cursor": listed.next_cursor, "limit": str(limit)})
        links.append(f'<{nxt}>; rel="next"')
    elif not isinstance(query, PageQuery) and listed.total is not None and offset + limit < listed.total:
        # a small list that pages by offset only
        nxt = request.rel_url.update_query(offset=offset + limit, limit=limit)
        links.append(f'<{nxt}>; rel="next"')
    if offset > 0 and "cursor" not in request.rel_url.query:
        prev = request.rel_url.update_query(offset=max(0, offset - limit), limit=limit)
        links.append(f'<{prev}>; rel="prev"')
    if links:
        headers["Link"] = ", ".join(links)
    return ok(items, headers=headers)
