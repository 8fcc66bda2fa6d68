"""Retention: history older than ``retention_days`` is pruned in bounded chunks.

What goes, each pass (every ``retention_interval_s``, the first
``retention_start_delay_s`` after start), with the cutoff ``now - retention_days``
(``0`` keeps everything):

1. **expired checkpoints**, lowest position first: made before the cutoff and
   belonging to no workflow, or to one that finished before it. The walk stops at
   the first checkpoint that is kept; its position bounds what may go next, since
   rolling back to it undoes what completed after it;
2. **finished workflows** that completed before the cutoff and changed last below
   that bound: their task rows (``retention_chunk`` per commit), then the workflow
   row, its snapshots, its automatic checkpoint and its counter row;
3. **journal segments** all of whose entries lie below the position of the oldest
   workflow still recorded, below the kept checkpoints and below the lazy mark
   (catch-up after a crash needs what follows it); the newest segment is never
   pruned (positions continue from it);
4. **sent webhook deliveries** (and their attempts) made before the cutoff.

Never: anything of a workflow that is not finished (or is being rolled back), the
journal a kept checkpoint or a recorded workflow replays, and audit records
(their hash chain must verify from the first). Every deletion and its counter
updates commit together (the repository's ``prune_*`` statements), so the
counters stay exact; ``counter:pruned`` totals what went, for ``/state/statistics``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from orchestrator.document_repository import DocumentRepository
from orchestrator.repository import Repository
from orchestrator.states import FINAL_WORKFLOW
from shared.settings import Settings
from shared.store.store import Store
from shared.store.writes import Write
from shared.web.keys import SETTINGS, STORE
from shared.webhooks.repository import WebhookRepository

log = logging.getLogger(__name__)

CHECKPOINT_WALK = 100  # checkpoints looked at per step of the walk


class Retention:
    """Prunes what is older than the retention age, in chunks."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.repo = Repository(store)

    async def run_once(self, now: datetime | None = None) -> Counter[str]:
        """One pass; returns what it pruned, by kind. Nothing with ``retention_days`` 0."""
        pruned: Counter[str] = Counter()
        if self.settings.retention_days <= 0:
            return pruned
        cutoff = (now or datetime.now(UTC)) - timedelta(days=self.settings.retention_days)
        chunk = self.settings.retention_chunk
        kept_seq = await self._expire_checkpoints(cutoff, pruned)
        # Rolling back to a kept checkpoint undoes what changed after its position only.
        below = None if kept_seq is None else kept_seq + 1
        while True:
            expired = await self.repo.expired_workflows(cutoff, below, chunk)
            for row in expired:
                await self._prune_workflow(row, pruned)
            if len(expired) < chunk:
                break
        await self._prune_journal(kept_seq, pruned)
        cutoff_epoch = cutoff.timestamp()
        gone = chunk
        while gone == chunk:
            gone = (await self.store.write(WebhookRepository.prune(cutoff_epoch, chunk, tally=True)))[0]
            pruned["webhook_delivery"] += gone
        if +pruned:
            log.info("retention pruned old history", extra={k: v for k, v in pruned.items() if v})
        return pruned

    async def _expire_checkpoints(self, cutoff: datetime, pruned: Counter[str]) -> int | None:
        """Drop expired checkpoints from the lowest position up; the position of the
        first one kept (``None``: none is)."""
        while True:
            rows = await self.repo.oldest_checkpoints(CHECKPOINT_WALK)
            for row in rows:
                if not await self._expired(row, cutoff):
                    return int(row["seq"])
                await self.store.write(Repository.prune_checkpoint(str(row["id"])))
                pruned["checkpoint"] += 1
            if len(rows) < CHECKPOINT_WALK:
                return None

    async def _expired(self, checkpoint: dict[str, Any], cutoff: datetime) -> bool:
        created = checkpoint.get("created_at")
        if not isinstance(created, datetime) or created >= cutoff:
            return False
        workflow_id = checkpoint.get("workflow_id")
        if workflow_id is None:
            return True
        wf = await self.repo.workflow(str(workflow_id))
        if wf is None:
            return True
        completed = wf.get("completed_at")
        finished = wf.get("status") in {str(s) for s in FINAL_WORKFLOW}
        return finished and isinstance(completed, datetime) and completed < cutoff

    async def _prune_workflow(self, row: dict[str, Any], pruned: Counter[str]) -> None:
        chunk = self.settings.retention_chunk
        seq = int(row.get("submitted_seq") or 0)
        gone = 1
        # Its documents kept in the store go with the first of its pages (their
        # fingerprint would not match any more either: orchestrator/document_repository.py).
        kept: list[Write] = [DocumentRepository.drop(str(row["id"]))]
        while gone:  # one commit per chunk of pages: the engine's writes go in between
            prune = Repository.prune_tasks(str(row["id"]), seq, chunk)
            gone = int((await self.store.write(prune, *kept))[0] or 0)
            kept = []
            pruned["task"] += gone
        if (await self.store.write(Repository.prune_workflow(row)))[0]:
            pruned["workflow"] += 1

    async def _prune_journal(self, kept_seq: int | None, pruned: Counter[str]) -> None:
        bounds = [await self.store.lazy_mark()]
        oldest = await self.repo.oldest_submitted_seq()
        if oldest is not None:
            bounds.append(oldest)
        if kept_seq is not None:
            bounds.append(kept_seq + 1)
        below = min(bounds)
        chunk = self.settings.retention_chunk
        gone = chunk
        while gone == chunk and below > 1:
            gone = (await self.store.write(Repository.prune_journal(below, chunk)))[0]
            pruned["journal"] += gone

    async def run_forever(self) -> None:
        """A first pass ``retention_start_delay_s`` after start, then one every
        ``retention_interval_s``; a failed pass is logged and tried again at the next.

        Not at once: a start's catch-up and resumed workflows have the store to
        themselves (a pass's deletes are statements of the one writer, so the first
        resumed operation's commit would queue behind them), and a service restarted
        in a loop does not prune on every start."""
        await asyncio.sleep(self.settings.retention_start_delay_s)
        while True:
            try:
                await self.run_once()
            except Exception:
                log.exception("retention pass failed")
            await asyncio.sleep(self.settings.retention_interval_s)


async def retention_ctx(app: web.Application) -> AsyncIterator[None]:
    """Runs retention in the background while the app runs (after the engine has caught
    up: it is appended after ``engine_ctx``)."""
    settings = app[SETTINGS]
    task = None
    if settings.retention_days > 0:
        task = asyncio.create_task(Retention(settings, app[STORE]).run_forever(), name="retention")
    yield
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
