"""The garbage collector around allocation bursts: a request that builds a big batch
pays for its own objects, not for the rest of the heap.

Measured on the service (``docs/performance.md``, "Submission, round 3"): a
5,000-operation ``POST /batch/execute`` allocates ~120,000 tracked objects. At the
first generation's threshold of 20,000 that is five young collections and, every
other ``POST``, a middle one; the first young one also walked what the previous batch
had left in the youngest generation (~55,000 objects: its events, its rows), and the
middle ones everything young since. The collector's share of the ``POST`` grew from
~20 ms on a fresh service to 90-250 ms on later batches, though it found nothing to
free (the submission's objects are alive, or freed by their reference counts).

:func:`burst` freezes the heap as it stands (``gc.freeze``: a constant-time move of
every generation into the permanent one) and pauses collections while the burst runs;
at its end it freezes what the burst left alive too (a batch's state lives as long as
its run) and collections resume. Nothing frozen is freed by the collector, so the
frozen objects are handed back to it (``gc.unfreeze``, one full collection, then frozen
again) once the process goes idle (:func:`settle`, :data:`Policy.idle_s` later), or as
a batch ends once :data:`Policy.max_bursts` bursts went by without an idle moment.
Objects without cycles are freed by their reference counts as always, frozen or not:
only cyclic garbage waits for that collection.

Process-wide, like the collector itself; the services' event loops run in one thread.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass
class Policy:
    """How bursts are handled (set from the settings by :func:`configure`)."""

    enabled: bool = True
    idle_s: float = 1.0  # the full collection this long after the process went idle
    max_bursts: int = 50  # or as a batch ends after this many bursts without an idle moment


@dataclass
class _State:
    depth: int = 0  # bursts in progress (requests overlap)
    collecting: bool = True  # whether collections ran when the outermost burst began
    since_collect: int = 0  # bursts since the last full collection
    timer: asyncio.TimerHandle | None = None
    timer_loop: asyncio.AbstractEventLoop | None = None
    collections: int = 0  # full collections run by :func:`collect` (for tests and metrics)
    last_collect_ms: float = 0.0


policy = Policy()
_state = _State()


def configure(*, enabled: bool, idle_s: float, max_bursts: int) -> None:
    policy.enabled, policy.idle_s, policy.max_bursts = enabled, idle_s, max(1, max_bursts)


@contextmanager
def burst() -> Iterator[None]:
    """Run a burst of allocations (a big submission) out of the collector's way."""
    if not policy.enabled:
        yield
        return
    state = _state
    if state.depth == 0:
        if state.timer is not None:  # not idle any more
            state.timer.cancel()
            state.timer = None
        state.collecting = gc.isenabled()
        gc.freeze()
        gc.disable()
    state.depth += 1
    try:
        yield
    finally:
        state.depth -= 1
        if state.depth == 0:
            gc.freeze()
            if state.collecting:
                gc.enable()
            state.since_collect += 1


def settle(*, idle: bool) -> None:
    """A batch ended (``idle``: none runs any more): collect what the bursts froze,
    :data:`Policy.idle_s` from now unless a burst begins first; at once if
    :data:`Policy.max_bursts` bursts went by without an idle moment."""
    state = _state
    if not policy.enabled or state.since_collect == 0 or state.depth:
        return
    if state.since_collect >= policy.max_bursts:
        collect()
        return
    if not idle:
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    if state.timer is not None:
        if state.timer_loop is loop:
            return  # scheduled already
        state.timer.cancel()  # of a loop that has ended (tests run many)
    state.timer = loop.call_later(policy.idle_s, _idle_collect)
    state.timer_loop = loop


def _idle_collect() -> None:
    _state.timer = None
    if _state.depth == 0:
        collect()


def collect() -> None:
    """Hand what is frozen back to the collector, collect everything once, freeze again
    (what is alive now is what the next burst would not look at anyway)."""
    started = time.perf_counter()
    gc.unfreeze()
    found = gc.collect()
    gc.freeze()
    if _state.timer is not None:
        _state.timer.cancel()
        _state.timer = None
    _state.since_collect = 0
    _state.collections += 1
    _state.last_collect_ms = (time.perf_counter() - started) * 1000
    log.debug("full collection", extra={"collected": found, "ms": round(_state.last_collect_ms, 1)})


def collections() -> int:
    """Full collections :func:`collect` has run in this process."""
    return _state.collections
