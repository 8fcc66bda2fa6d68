"""Whether the embedded engine syncs each commit to disk before it acknowledges it.

Measured on the engine the ``surrealdb`` wheel embeds (SurrealDB 2.3, surrealkv 0.9):

* the switch is the environment variable ``SURREAL_SYNC_DATA``, not a URL or
  connection option; unset, a commit is written to the commit log
  (``db/clog/*.clog``) and acknowledged without an ``fsync``, so it can sit in the
  page cache when the machine loses power;
* set to ``true``, every commit is followed by one ``fsync`` of the commit log before
  the query returns (``strace -f -e trace=write,fsync``: one ``write`` and one
  ``fsync`` per ``BEGIN … COMMIT``);
* the engine reads the variable once per process, when the first file-backed
  datastore opens (``mem://`` does not read it): a later change has no effect.

The store's writer group-commits, so one sync covers every change of a commit.
"""

from __future__ import annotations

import logging
import os

from shared.errors import StoreError

log = logging.getLogger(__name__)

ENGINE_SYNC_VARIABLE = "SURREAL_SYNC_DATA"
_FILE_SCHEMES = ("surrealkv://", "surrealkv+versioned://", "file://", "rocksdb://")

_engine_sync: bool | None = None  # what this process's engine took when its first file store opened


def apply_engine_sync(url: str, sync: bool) -> None:
    """Set the engine's sync switch before a store at ``url`` connects.

    Raises :class:`StoreError` when a durable store is asked for in a process whose
    engine already started without syncing (it would silently not be durable)."""
    global _engine_sync
    if not url.startswith(_FILE_SCHEMES):
        return
    if _engine_sync is None:
        os.environ[ENGINE_SYNC_VARIABLE] = "true" if sync else "false"
        _engine_sync = sync
        return
    if sync and not _engine_sync:
        raise StoreError(
            "this process's embedded engine started without syncing commits; "
            "a durable store needs a process of its own"
        )
    if _engine_sync and not sync:
        log.info("commits stay synced: this process's embedded engine started with syncing on")
