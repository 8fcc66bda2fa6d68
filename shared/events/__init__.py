"""Event plumbing: the in-process bus with replay, and the live streams (WebSocket, SSE).

The bus knows no vocabulary of its own: each service declares its event types,
their stream kinds and webhook names, and registers them with the bus's
registry (:mod:`shared.events.registry`, whose docstring is the public API for
extensions too). May import: ``shared.web`` conventions, ``shared.security``
(stream authentication), ``shared.errors``, ``shared.metrics``,
``shared.settings``. No service.
"""
