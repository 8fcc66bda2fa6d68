"""Who may do what: tokens, subjects, policies and their conditions, audit, rate limits.

Owns JWT signing and verification (``tokens.py``) and the check that a token's
subject exists (``subjects.py``), Casbin policies (``policy.py``) and the
condition language (``conditions.py``), the hash-chained audit log
(``audit.py``), rate limits and lockout (``ratelimit.py``), the principal and
the auth middleware (``auth.py``), their repositories (``repositories.py``),
and ``backend.py``, which bundles them per store and answers the middleware.

May import: ``shared.store``, ``shared.web`` conventions (``http``, ``keys``,
``client``), ``shared.events``, ``shared.errors``, ``shared.metrics``,
``shared.settings``. No service.
"""
