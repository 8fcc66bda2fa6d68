"""The service process's memory: fewer garbage collections while batches run, and the
C heap's free pages handed back once none runs.

Both are process-wide and belong to whoever drives the batches (the engine calls them);
neither changes what any code computes."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable

from shared.libc import function

log = logging.getLogger(__name__)

_gc_frozen = False


def tune_gc(gen0_threshold: int) -> None:
    """Fewer, cheaper garbage collections for a process that allocates in bursts.

    What is alive at start (modules, the app) is moved out of the collector's sight
    (``gc.freeze``), and the first generation's threshold is raised: a 5,000-operation
    submission allocates ~100,000 short-lived objects, which at Python's default of 700
    ran two full collections of the heap per submission, slower as the heap grew with
    history. Once per process (a frozen object is never collected: later engines, in
    tests say, must not pin what earlier ones left). ``gen0_threshold`` 0 keeps Python's
    default."""
    global _gc_frozen
    if not _gc_frozen:
        gc.freeze()
        _gc_frozen = True
    if gen0_threshold:
        _, gen1, gen2 = gc.get_threshold()
        gc.set_threshold(gen0_threshold, gen1, gen2)


# glibc's ``malloc_trim``, or None where there is none (macOS, musl).
_TRIM: Callable[[int], int] | None = function("malloc_trim")


def trim_heap() -> None:
    """Give the C heap's free pages back to the system, in a worker thread.

    A batch's objects, freed when it ends, leave their pages resident: glibc keeps the
    memory of freed blocks below the top of each heap, and the embedded engine's threads
    each have heaps of their own. ``malloc_trim(0)`` returns those pages (measured: 10-15
    MB after a 5,000-operation batch; a few milliseconds, off the event loop)."""
    if _TRIM is None:
        return
    trim = _TRIM
    future = asyncio.get_running_loop().run_in_executor(None, trim, 0)
    future.add_done_callback(_trimmed)


def _trimmed(future: asyncio.Future[int]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.debug("malloc_trim failed", exc_info=future.exception())
