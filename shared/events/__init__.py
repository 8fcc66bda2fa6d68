"""Event plumbing: the in-process bus with replay, and the live streams (WebSocket, SSE).

The bus knows no vocabulary of its own: each service declares its event types
and registers them. May import: ``shared.web`` conventions, ``shared.security``
(stream authentication), ``shared.errors``, ``shared.metrics``,
``shared.settings``. No service.
"""
