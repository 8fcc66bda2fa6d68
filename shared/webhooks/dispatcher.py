"""The dispatcher: sends the outbox's deliveries, in order per webhook, until they land.

One worker per webhook sends its pending deliveries oldest first and waits
for each answer before the next (ordered per subscription); up to
``webhook_concurrency`` webhooks are served at once. A failed attempt is
retried on the schedule in ``webhook_retry_schedule_s`` with jitter, and the
webhook's later deliveries wait behind it; when the schedule is spent the
delivery is marked failed and the next one goes. After
``webhook_failure_threshold`` failed deliveries in a row the webhook is
paused: events still queue for it but nothing is sent until someone enables
it again (``PUT /webhooks/{id} {"enabled": true}``). Deliveries still waiting
after ``webhook_log_retention_s`` are marked failed (expired).

Delivery is at least once: every attempt's outcome is written after the
answer, so a crash in between sends that message again after the restart,
with the same ``webhook-id`` for the consumer to deduplicate on.

Work is found three ways: the bus (an event that webhooks carry was just
committed), a ``WebhookChanged`` event (test, redelivery, re-enabling), and a
poll every ``webhook_poll_s`` that also finds retries that came due and work
queued by another process. Run one dispatcher per process that runs the
orchestrator. Against a SurrealDB server, where several orchestrators may run,
a worker first takes a lease on its webhook (a compare-and-set on the
webhook's row, renewed while it works), so each webhook's deliveries stay in
order; the embedded store has a single process and needs none.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web

from shared.errors import ProvisioningError
from shared.events.bus import Event, EventBus
from shared.metrics import WEBHOOK_DELIVERIES, WEBHOOK_DELIVERY_SECONDS, WEBHOOK_OUTBOX_PENDING
from shared.settings import Settings
from shared.store.store import Store
from shared.store.writes import Write
from shared.web.keys import BUS, SETTINGS, STORE
from shared.web.validation import clean_text
from shared.webhooks.catalogue import Catalogue
from shared.webhooks.outbox import Outbox
from shared.webhooks.repository import DELIVERED, FAILED, PENDING, WebhookRepository
from shared.webhooks.signing import new_secret, sign_headers
from shared.webhooks.subscriptions import (
    CHANGED_EVENT,
    SOURCE_CONFIG,
    Subscriptions,
    Webhook,
)
from shared.webhooks.urlguard import connector_kwargs, parse_target

log = logging.getLogger(__name__)

WORKER_BATCH = 200  # deliveries a worker reads at a time
LEASE_TTL_S = 15.0  # a crashed replica's webhooks are taken over after this
RESPONSE_EXCERPT_BYTES = 1024  # of each answer, kept in the attempt log
ERROR_MAX_CHARS = 512  # of an attempt's error (it may quote the consumer's reason phrase)
PRUNE_EVERY_S = 3600.0
PRUNE_CHUNK = 500  # finished deliveries forgotten per commit


def _now_dt() -> datetime:
    return datetime.now(UTC)


@dataclass
class _Outcome:
    """What one attempt changes: the writes, and the webhook's new state if it changed."""

    writes: list[Write]
    go_on: bool = True  # the webhook may go on to its next delivery
    webhook: Webhook | None = None
    paused: bool = False


class Dispatcher:
    """Delivers webhooks for one process; start it once, from the orchestrator app."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        bus: EventBus,
        subscriptions: Subscriptions | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.bus = bus
        self.repo = WebhookRepository(store)
        self.subscriptions = subscriptions or Subscriptions(self.repo)
        self.catalogue = Catalogue(bus.registry)
        self.outbox = Outbox(self.subscriptions, self.catalogue)
        self.schedule_s = [float(s) for s in settings.webhook_retry_schedule_s] or [0.0]
        self._session: aiohttp.ClientSession | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._touched: set[str] = set()
        self._recheck: set[str] = set()
        self._wake = asyncio.Event()
        self._next_due = 0.0
        self._last_poll = 0.0
        self._last_prune = time.monotonic()
        self._stopping = False
        self._refresh: asyncio.Task[None] | None = None
        self._reloading: set[str] = set()
        self.delivered = 0
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        # One process owns an embedded store (it is locked); a server may have replicas.
        self.use_leases = settings.resolved_db_url.startswith(("ws://", "wss://", "http://", "https://"))

    # -- lifecycle ----------------------------------------------------------------------

    async def load(self) -> None:
        """Sync the ``[webhooks]`` configuration into the store and load subscriptions.

        Call before the engine starts: resumed workflows commit changes at once,
        and the outbox must already know who subscribes to them.
        """
        await self.subscriptions.load()
        await self._sync_config()
        await self.subscriptions.load()

    async def start(self) -> None:
        """Open the HTTP client, listen on the bus and begin delivering."""
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=max(1, self.settings.webhook_concurrency),
                **connector_kwargs(self.settings.webhooks_allow_private),
            ),
            timeout=aiohttp.ClientTimeout(total=self.settings.webhook_timeout_s),
            trust_env=False,
        )
        self.bus.add_listener(self._on_event)
        self._loop_task = asyncio.create_task(self._run(), name="webhook-dispatcher")

    async def stop(self) -> None:
        """Stop sending; what is still pending goes out after the next start."""
        self._stopping = True
        self.bus.remove_listener(self._on_event)
        tasks = [t for t in (self._loop_task, self._refresh, *self._workers.values()) if t]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._workers.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    def wake(self, *webhook_ids: str) -> None:
        self._touched.update(webhook_ids)
        self._wake.set()

    # -- finding work --------------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        """Runs inside ``bus.publish``, after the change (and its deliveries) committed."""
        if event.event_type == CHANGED_EVENT:
            touched = self.subscriptions.apply(event)
            if touched:
                self.wake(touched)
                self._reloading.add(touched)
            self._schedule_refresh()
            return
        if not self.subscriptions.by_id:
            return
        name = self.catalogue.name_of(event.event_type, event.data)
        if name is None:
            return
        targets = self.subscriptions.targets(name)
        if targets:
            self.wake(*(w.id for w in targets))

    def _schedule_refresh(self) -> None:
        if self._refresh is None or self._refresh.done():
            self._refresh = asyncio.create_task(self._reload(), name="webhook-refresh")

    async def _reload(self) -> None:
        touched, self._reloading = self._reloading, set()
        try:
            await self.subscriptions.load()
        except ProvisioningError:
            log.warning("could not reload webhook subscriptions", exc_info=True)
        # A webhook created a moment ago has its secret only now: look at it again.
        self.wake(*touched)

    async def _run(self) -> None:
        while not self._stopping:
            now = time.monotonic()
            wall = time.time()
            poll_in = self._last_poll + self.settings.webhook_poll_s - now
            due_in = self._next_due - wall if self._next_due else poll_in
            timeout = max(0.0, min(poll_in, due_in))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self._pass()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("webhook dispatcher pass failed")
                await asyncio.sleep(self.settings.webhook_poll_s)

    async def _pass(self) -> None:
        now = time.monotonic()
        wall = time.time()
        if now - self.subscriptions.loaded_at >= self.settings.webhook_refresh_s:
            await self.subscriptions.load()
        if now - self._last_poll >= self.settings.webhook_poll_s or (
            self._next_due and wall >= self._next_due
        ):
            await self._poll(wall)
            self._last_poll = now
        if now - self._last_prune >= PRUNE_EVERY_S:
            self._last_prune = now
            cutoff = wall - self.settings.webhook_log_retention_s
            await self.store.write(WebhookRepository.expire_pending(cutoff))
            pruned = PRUNE_CHUNK
            while pruned == PRUNE_CHUNK:  # in chunks: other writes commit in between
                pruned = (await self.store.write(WebhookRepository.prune(cutoff, PRUNE_CHUNK)))[0]
        touched, self._touched = self._touched, set()
        for webhook_id in sorted(touched):
            self._start_worker(webhook_id)

    async def _poll(self, wall: float) -> None:
        """Find webhooks with due deliveries (retries, other processes' work, a restart)."""
        pending = 0
        next_due = 0.0
        for row in await self.repo.pending_summary():
            pending += int(row.get("pending") or 0)
            webhook_id = str(row["webhook_id"])
            due = float(row.get("due_at") or 0.0)
            if due <= wall:
                self._touched.add(webhook_id)
            elif webhook_id not in self._workers:
                next_due = due if not next_due else min(next_due, due)
        self._next_due = next_due
        WEBHOOK_OUTBOX_PENDING.set(pending)

    def _start_worker(self, webhook_id: str) -> None:
        if webhook_id in self._workers:
            self._recheck.add(webhook_id)  # it reads its queue again before it stops
            return
        webhook = self.subscriptions.get(webhook_id)
        if webhook is None or not webhook.deliverable:
            return
        if len(self._workers) >= max(1, self.settings.webhook_concurrency):
            self._touched.add(webhook_id)  # picked up when a worker finishes
            return
        self._workers[webhook_id] = asyncio.create_task(self._work(webhook_id), name=f"webhook-{webhook_id}")

    async def _work(self, webhook_id: str) -> None:
        # The outcome of one delivery is written while the next one is sent (at most one
        # write in flight, in order); the queue is re-read only once it has landed.
        outstanding: asyncio.Future[list[Any]] | None = None

        async def settle() -> None:
            nonlocal outstanding
            if outstanding is not None:
                done, outstanding = outstanding, None
                await done

        leased_until = 0.0
        try:
            while not self._stopping:
                await settle()
                self._recheck.discard(webhook_id)
                webhook = self.subscriptions.get(webhook_id)
                if webhook is None or not webhook.deliverable:
                    return
                rows = await self.repo.pending_for(webhook_id, WORKER_BATCH)
                if not rows:
                    if webhook_id in self._recheck:
                        continue
                    return
                if self.use_leases and leased_until - time.time() < LEASE_TTL_S / 2:
                    leased_until = await self._lease(webhook_id)
                    if not leased_until:
                        return  # another replica is delivering this webhook
                    continue  # read the queue again now that it is ours
                for row in rows:
                    due = float(row.get("due_at") or 0.0)
                    if due > time.time():
                        self._due_at(due)
                        return
                    current = self.subscriptions.get(webhook_id)
                    if current is None or not current.deliverable:
                        return
                    if self.use_leases and leased_until - time.time() < LEASE_TTL_S / 2:
                        break  # renew the lease before going on
                    outcome = await self._deliver(current, row)
                    await settle()
                    if outcome.webhook is None:
                        outstanding = asyncio.ensure_future(self.store.write(*outcome.writes))
                    else:
                        # The webhook's own state changes: durable first, then believed here,
                        # so a reload from the store can never bring back the old state.
                        await self.store.write(*outcome.writes)
                        self.subscriptions.put(outcome.webhook)
                        if outcome.paused:
                            self._announce_paused(outcome.webhook)
                    if not outcome.go_on:
                        return  # retry later; the rest wait behind it, in order
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("webhook worker failed", extra={"webhook_id": webhook_id})
            self._due_at(time.time() + self.settings.webhook_poll_s)
        finally:
            if outstanding is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(outstanding)
            if leased_until:
                with contextlib.suppress(Exception):
                    await asyncio.shield(
                        self.store.write(WebhookRepository.release_lease(webhook_id, self.owner))
                    )
            self._workers.pop(webhook_id, None)
            if self._touched:
                self._wake.set()

    async def _lease(self, webhook_id: str) -> float:
        """Take or renew this process's lease on a webhook; 0 if another one holds it."""
        until = time.time() + LEASE_TTL_S
        [claimed] = await self.store.write(
            WebhookRepository.claim_lease(webhook_id, self.owner, until, time.time())
        )
        return until if claimed else 0.0

    def _due_at(self, due: float) -> None:
        self._next_due = due if not self._next_due else min(self._next_due, due)
        self._wake.set()

    # -- sending -------------------------------------------------------------------------

    async def _deliver(self, webhook: Webhook, row: dict[str, Any]) -> _Outcome:
        """One attempt, and what it changes."""
        assert self._session is not None
        delivery_id = str(row["id"])
        attempt = int(row.get("attempts") or 0) + 1
        tries = int(row.get("tries") or 0) + 1
        body: str = row["body"]
        status_code: int | None = None
        error: str | None = None
        excerpt = b""
        started = time.perf_counter()
        try:
            parse_target(webhook.url, allow_private=self.settings.webhooks_allow_private)
            headers = sign_headers(delivery_id, body, webhook.signing_secrets())
            async with self._session.post(
                webhook.url, data=body.encode(), headers=headers, allow_redirects=False
            ) as resp:
                status_code = resp.status
                excerpt = await _read_capped(resp, self.settings.webhook_max_response_bytes)
            if not 200 <= status_code < 300:
                error = f"HTTP {status_code} {resp.reason or ''}".strip()
        except ProvisioningError as exc:
            error = exc.message
        except TimeoutError:
            error = f"no answer within {self.settings.webhook_timeout_s:g} s"
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        # What the consumer sent is kept sanitised and bounded: never a NUL (the store could
        # not read the row back) or a control character (it reaches logs and the UI).
        if error is not None:
            error = clean_text(error, ERROR_MAX_CHARS)
        elapsed = time.perf_counter() - started
        WEBHOOK_DELIVERY_SECONDS.observe(elapsed)
        latency_ms = round(elapsed * 1000, 2)
        now_dt = _now_dt()
        attempt_row = {
            "id": f"{delivery_id}-{attempt}",
            "delivery_id": delivery_id,
            "webhook_id": webhook.id,
            "attempt": attempt,
            "at": now_dt,
            "status_code": status_code,
            "latency_ms": latency_ms,
            "error": error,
            "response": clean_text(
                excerpt[:RESPONSE_EXCERPT_BYTES].decode(errors="replace"), RESPONSE_EXCERPT_BYTES
            ),
        }
        patch: dict[str, Any] = {
            "attempts": attempt,
            "tries": tries,
            "last_status_code": status_code,
            "last_error": error,
            "last_latency_ms": latency_ms,
            "updated_at": now_dt,
        }
        outcome = _Outcome([WebhookRepository.insert_attempt(attempt_row)])
        writes = outcome.writes
        if error is None:
            WEBHOOK_DELIVERIES.labels(DELIVERED).inc()
            self.delivered += 1
            patch.update(status=DELIVERED, delivered_at=now_dt)
            if webhook.consecutive_failures or webhook.last_success_at is None:
                writes.append(
                    WebhookRepository.patch_webhook(
                        webhook.id, {"consecutive_failures": 0, "last_success_at": now_dt}
                    )
                )
                outcome.webhook = replace(webhook, consecutive_failures=0, last_success_at=now_dt)
        elif tries >= len(self.schedule_s):
            WEBHOOK_DELIVERIES.labels(FAILED).inc()
            patch.update(status=FAILED)
            self._count_failure(webhook, now_dt, outcome)
            log.warning(
                "webhook delivery failed for good",
                extra={"webhook_id": webhook.id, "delivery_id": delivery_id, "error": error},
            )
        else:
            WEBHOOK_DELIVERIES.labels("retrying").inc()
            delay = self.schedule_s[tries] * (
                1 + random.uniform(-self.settings.webhook_jitter, self.settings.webhook_jitter)
            )
            due = time.time() + max(0.0, delay)
            patch.update(status=PENDING, due_at=due)
            self._due_at(due)
            outcome.go_on = False
        writes.insert(0, WebhookRepository.patch_delivery(delivery_id, patch))
        return outcome

    def _count_failure(self, webhook: Webhook, now_dt: datetime, outcome: _Outcome) -> None:
        failures = webhook.consecutive_failures + 1
        patch: dict[str, Any] = {"consecutive_failures": failures, "last_failure_at": now_dt}
        outcome.paused = failures >= self.settings.webhook_failure_threshold and not webhook.paused
        if outcome.paused:
            reason = (
                f"paused after {failures} failed deliveries in a row; events still queue. "
                "Fix the endpoint, then enable the webhook again to resume"
            )
            patch.update(paused=True, paused_reason=reason)
            log.warning("webhook paused", extra={"webhook_id": webhook.id})
        outcome.webhook = replace(
            webhook,
            consecutive_failures=failures,
            last_failure_at=now_dt,
            paused=webhook.paused or outcome.paused,
            paused_reason=patch.get("paused_reason", webhook.paused_reason),
        )
        outcome.writes.append(WebhookRepository.patch_webhook(webhook.id, patch))

    def _announce_paused(self, webhook: Webhook) -> None:
        self.bus.publish(
            CHANGED_EVENT,
            {
                "webhook_id": webhook.id,
                "action": "paused",
                "webhook": webhook.routing(),
                "reason": webhook.paused_reason,
            },
        )

    # -- static configuration ---------------------------------------------------------------

    async def _sync_config(self) -> None:
        """``[webhooks] endpoints = [{url, events, secret}]`` become ``source: config`` rows."""
        allow = self.settings.webhooks_allow_private
        wanted: set[str] = set()
        writes: list[Write] = []
        now_dt = _now_dt()
        for index, endpoint in enumerate(self.settings.webhook_endpoints):
            url = str(endpoint.get("url", ""))
            try:
                parse_target(url, allow_private=allow)
                events = self.catalogue.validate(endpoint.get("events") or ["*"])
            except ProvisioningError as exc:
                log.error("ignoring [webhooks] endpoint %d: %s", index, exc.message)
                continue
            webhook_id = "cfg_" + hashlib.sha256(url.encode()).hexdigest()[:16]
            wanted.add(webhook_id)
            known = self.subscriptions.get(webhook_id)
            secret = str(endpoint.get("secret") or (known.secret if known else "") or new_secret())
            row: dict[str, Any] = {
                "url": url,
                "events": events,
                "secret": secret,
                "source": SOURCE_CONFIG,
                "description": str(endpoint.get("description") or "from the configuration"),
                "updated_at": now_dt,
            }
            if known is None:
                row.update(created_at=now_dt, enabled=True, consecutive_failures=0)
            elif known.disabled_reason and "configuration" in known.disabled_reason:
                row.update(enabled=True, disabled_reason=None)
            writes.append(WebhookRepository.upsert_webhook(webhook_id, self.repo.sealed(webhook_id, row)))
        for webhook in self.subscriptions.by_id.values():
            if webhook.source == SOURCE_CONFIG and webhook.id not in wanted and webhook.enabled:
                writes.append(
                    WebhookRepository.patch_webhook(
                        webhook.id,
                        {
                            "enabled": False,
                            "disabled_reason": "removed from the configuration",
                        },
                    )
                )
        if writes:
            await self.store.write(*writes)


async def _read_capped(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """Up to ``limit`` bytes of an answer; the rest is never read (the connection is dropped)."""
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await resp.content.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


DISPATCHER = web.AppKey("webhook_dispatcher", Dispatcher)


async def dispatcher_ctx(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx`` entry: load subscriptions and deliver while the app runs.

    Append it before the engine's entry, so the outbox knows the subscriptions
    when resumed workflows commit their first changes, and so it stops after
    the engine does.
    """
    dispatcher = Dispatcher(app[SETTINGS], app[STORE], app[BUS])
    await dispatcher.load()
    await dispatcher.start()
    app[DISPATCHER] = dispatcher
    yield
    await dispatcher.stop()
