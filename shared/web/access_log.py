"""An access log that never writes a credential: ``?token=`` values are redacted.

Browsers' EventSource and WebSocket cannot send an Authorization header, so
those routes take the token in the query string; aiohttp's default access log
would then write it into every log line.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from shared.logs import REDACTED, SECRET_KEYS


def redacted_target(request: web.BaseRequest) -> str:
    """The request's path and query with secret-looking parameters replaced."""
    query = request.rel_url.query
    if not any(SECRET_KEYS.search(k) for k in query):
        return request.path_qs
    safe = [(k, REDACTED if SECRET_KEYS.search(k) else v) for k, v in query.items()]
    return str(request.rel_url.with_query(safe))


class RedactingAccessLogger(AbstractAccessLogger):
    """``remote "METHOD target" status seconds``, with secrets redacted from the target."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        target = redacted_target(request)
        self.logger.info(
            '%s "%s %s" %s %.4f',
            request.remote,
            request.method,
            target,
            response.status,
            time,
            extra={
                "remote": request.remote,
                "method": request.method,
                "target": target,
                "status": response.status,
                "duration_ms": round(time * 1000, 2),
                "request_id": response.headers.get("X-Request-ID"),
            },
        )
