"""The HTTP conventions both services share, and how an app is put together.

Owns routing (``Api``, route specs), the envelope and error responses,
request validation (hostile input refused before anything runs), the
middlewares, the OpenAPI document, the app factory, the hardened listener
(connection deadlines and caps), the access log, the client address and the
typed ``web.AppKey``s.

May import: ``shared.store``, ``shared.errors``, ``shared.metrics``,
``shared.settings``, ``shared.logs``; the app factory (``app.py``) also wires
``shared.security`` and ``shared.events`` into every app. No service.
"""
