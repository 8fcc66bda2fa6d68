"""The store: the one door to SurrealDB, and what lies at rest in it.

Owns the connection and the data-directory lock, the group-commit writer and
its write model, the CBOR codec and the NUL guard at the boundary, the
versioned ``.surql`` migrations and their runner (``schema.py``), the
encryption of secrets at rest under a key-encryption key kept outside the
store (``secrets.py``; bringing older values under the current key is
``shared/security/sealing.py``), and the data directory's permissions
(``fsperms.py``). Repairing an old damaged store is ``provisioning/repair.py``.

May import: ``shared.errors``, ``shared.metrics``, ``shared.settings``,
``shared.logs``. Nothing else in ``shared`` and no service.
"""
