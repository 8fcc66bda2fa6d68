"""Extensions: a capability-scoped framework (``manifest``, ``discovery``, ``manager``,
``context``, ``routes_api``, ``mount_api``), named event streams (``streams``), and the
built-in extensions (``builtin/``). docs/extensions.md is the guide."""
