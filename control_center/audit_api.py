"""``/audit``: the seed's audit log query, exports, and the chain's verification."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from aiohttp import web

from control_center.models import AUDIT_EXPORTS, AUDIT_RECORD, AUDIT_VERIFY, AuditQuery
from control_center.views import AUDIT_COLUMNS, audit_record_view
from shared.security.audit import AUDIT, SEARCH_FIELDS, search_filters
from shared.web.envelope import ok, paginated
from shared.web.middlewares import REQUEST_ID
from shared.web.routing import Api, array

api = Api()
TAGS = ("audit",)
EXPORT_PAGE = 1000
CONTENT_TYPES = {"ndjson": "application/x-ndjson", "csv": "text/csv"}


def _filters(query: AuditQuery) -> dict[str, Any]:
    return search_filters(**query.model_dump(include=SEARCH_FIELDS))


@api.route(
    "GET",
    "/audit/logs",
    resource="audit",
    action="read",
    query=AuditQuery,
    tags=TAGS,
    response=array(AUDIT_RECORD),
    media=AUDIT_EXPORTS,
)
async def audit_logs(request: web.Request, query: AuditQuery) -> web.StreamResponse:
    """Audit records, newest first; ``format=ndjson|csv`` exports every match."""
    log = request.app[AUDIT]
    filters = _filters(query)
    if query.format == "json":
        listing = await log.search(filters, query.limit, query.offset, query.cursor)
        return paginated(request, [audit_record_view(r) for r in listing.items], query, listing)
    return await _export(request, query, filters)


async def _export(request: web.Request, query: AuditQuery, filters: dict[str, Any]) -> web.StreamResponse:
    """Stream every match (or ``limit`` of them, if given) in pages."""
    log = request.app[AUDIT]
    wanted = query.limit if "limit" in request.query else None
    response = web.StreamResponse(
        headers={
            "Content-Type": CONTENT_TYPES[query.format],
            "Content-Disposition": f'attachment; filename="audit.{query.format}"',
            "X-Request-ID": request.get(REQUEST_ID, ""),
        }
    )
    await response.prepare(request)
    if query.format == "csv":
        await response.write(_csv_line(AUDIT_COLUMNS))
    offset, cursor, sent = query.offset, query.cursor, 0
    while wanted is None or sent < wanted:
        size = EXPORT_PAGE if wanted is None else min(EXPORT_PAGE, wanted - sent)
        listing = await log.search(filters, size, offset, cursor)
        for row in listing.items:
            view = audit_record_view(row)
            if query.format == "ndjson":
                await response.write(json.dumps(view, separators=(",", ":")).encode() + b"\n")
            else:
                values = [
                    json.dumps(view["details"], separators=(",", ":"))
                    if c == "details"
                    else ("" if view[c] is None else str(view[c]))
                    for c in AUDIT_COLUMNS
                ]
                await response.write(_csv_line(values))
        sent += len(listing.items)
        offset, cursor = 0, listing.next_cursor
        if cursor is None:
            break
    await response.write_eof()
    return response


def _csv_line(values: Any) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer).writerow(values)
    return buffer.getvalue().encode()


@api.route("GET", "/audit/verify", resource="audit", action="read", tags=TAGS, response=AUDIT_VERIFY)
async def audit_verify(request: web.Request) -> web.Response:
    """Walk the hash chain: ``{valid, records}``, or where it breaks (``broken_at``)."""
    return ok(await request.app[AUDIT].verify())
