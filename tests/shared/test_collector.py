"""The collector around allocation bursts (shared/collector.py): no collection inside a
burst, what lived before and what the burst left alive frozen, cyclic garbage collected
once the process is idle (or after too many bursts), the collector as it was otherwise.

Process-wide state: each test restores the policy and hands every frozen object back."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator

import pytest

from shared import collector


class Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the collector frees it


@pytest.fixture(autouse=True)
def clean() -> Iterator[None]:
    saved = (collector.policy.enabled, collector.policy.idle_s, collector.policy.max_bursts)
    was = gc.isenabled()
    gc.enable()
    yield
    collector.configure(enabled=saved[0], idle_s=saved[1], max_bursts=saved[2])
    state = collector._state
    if state.timer is not None:
        state.timer.cancel()
    collector._state = collector._State()
    gc.unfreeze()
    gc.collect()
    if not was:
        gc.disable()


def test_a_burst_runs_no_collection_and_freezes_what_it_left_alive() -> None:
    collector.configure(enabled=True, idle_s=1.0, max_bursts=50)
    frozen = gc.get_freeze_count()
    with collector.burst():
        assert not gc.isenabled()
        with collector.burst():  # overlapping requests
            kept = [Node() for _ in range(1000)]
        assert not gc.isenabled()
    assert gc.isenabled()
    assert gc.get_freeze_count() >= frozen + len(kept)
    assert gc.get_count()[0] < len(kept)  # they left the young generation


def test_cyclic_garbage_of_a_burst_is_collected_once_idle() -> None:
    collector.configure(enabled=True, idle_s=0.01, max_bursts=50)

    async def run() -> weakref.ref[Node]:
        with collector.burst():
            node = Node()
            ref = weakref.ref(node)
            del node
        gc.collect()  # frozen: the ordinary collector does not see it
        assert ref() is not None
        collector.settle(idle=True)
        await asyncio.sleep(0.1)
        return ref

    ref = asyncio.run(run())
    assert ref() is None
    assert collector.collections() == 1


def test_a_burst_beginning_cancels_the_idle_collection() -> None:
    collector.configure(enabled=True, idle_s=0.05, max_bursts=50)

    async def run() -> None:
        with collector.burst():
            pass
        collector.settle(idle=True)
        with collector.burst():
            await asyncio.sleep(0.1)

    asyncio.run(run())
    assert collector.collections() == 0


def test_a_busy_process_collects_as_a_batch_ends_after_too_many_bursts() -> None:
    collector.configure(enabled=True, idle_s=3600, max_bursts=3)
    for _ in range(2):
        with collector.burst():
            pass
        collector.settle(idle=False)
    assert collector.collections() == 0
    with collector.burst():
        Node()
    collector.settle(idle=False)
    assert collector.collections() == 1


def test_disabled_the_collector_runs_as_usual() -> None:
    collector.configure(enabled=False, idle_s=0.0, max_bursts=1)
    frozen = gc.get_freeze_count()
    with collector.burst():
        assert gc.isenabled()
        Node()
    collector.settle(idle=False)
    assert gc.get_freeze_count() == frozen
    assert collector.collections() == 0


def test_an_idle_collection_left_by_an_ended_loop_does_not_block_the_next() -> None:
    collector.configure(enabled=True, idle_s=0.01, max_bursts=50)

    async def ended() -> None:
        with collector.burst():
            pass
        collector.settle(idle=True)  # the loop ends before it is due

    async def next_one() -> None:  # a batch resumed at a start: no burst before it ends
        collector.settle(idle=True)
        await asyncio.sleep(0.1)

    asyncio.run(ended())
    asyncio.run(next_one())
    assert collector.collections() == 1
