"""The envelope: ``{"success": true, "data": …}`` or the error body, and paginated lists
with ``X-Total-Count``, ``X-Limit``, ``X-Offset`` and ``Link``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web
from pydantic import BaseModel

log = logging.getLogger(__name__)


log = logging.getLogger(__name__)


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


def ok(data: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """The success envelope."""
    return web.json_response({"success": True, "data": data}, status=status, headers=headers, dumps=_dumps)


def ok_encoded(data: bytes, *, status: int = 200) -> web.Response:
    """The success envelope around ``data`` already encoded as JSON (a big document
    encoded in parts, or shared by several readers)."""
    return web.Response(
        body=b'{"success":true,"data":' + data + b"}",
        status=status,
        content_type="application/json",
        charset="utf-8",
    )


def error_response(
    status: int, message: str, code: str, details: dict[str, Any] | None = None
) -> web.Response:
    """The error envelope."""
    body: dict[str, Any] = {"success": False, "error": message, "code": code}
    if details:
        body["details"] = details
    return web.json_response(body, status=status, dumps=_dumps)


def paginated(request: web.Request, items: list[Any], total: int, limit: int, offset: int) -> web.Response:
    """A list response with ``X-Total-Count``, ``X-Limit``, ``X-Offset`` and ``Link``."""
    headers = {"X-Total-Count": str(total), "X-Limit": str(limit), "X-Offset": str(offset)}
    links = []
    if offset + limit < total:
        nxt = request.rel_url.update_query(offset=offset + limit, limit=limit)
        links.append(f'<{nxt}>; rel="next"')
    if offset > 0:
        prev = request.rel_url.update_query(offset=max(0, offset - limit), limit=limit)
        links.append(f'<{prev}>; rel="prev"')
    if links:
        headers["Link"] = ", ".join(links)
    return ok(items, headers=headers)
