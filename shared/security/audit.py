"""The audit log: append-only, hash-chained, and the middleware that feeds it.

Every record carries ``prev_hash`` (the hash of the record before it) and
``hash`` = SHA-256 over ``prev_hash`` and the record's canonical JSON, so
editing, inserting or deleting a record breaks the chain at that point and
:meth:`AuditLog.verify` names it. One appender task per process chains records
in order and writes each batch in one transaction guarded by a compare-and-set
on the chain's head, so appenders in other processes cannot fork the chain:
the loser re-reads the head and chains again.

Refused authentications (401 without a principal) are coalesced: the first one
from a client address for a reason is recorded at once, the rest of its window
become one record with a count, so a flood of bad tokens cannot grow the table
without limit. Every string a record copies from a request is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

from aiohttp import web

from shared.errors import ProvisioningError, StoreError, Unauthorized
from shared.logs import redact
from shared.security.actor import Actor, actor_of, audited
from shared.security.auth import PRINCIPAL
from shared.security.repositories import AUDIT_HEAD_MOVED, AuditRepository
from shared.store.keyset import Listing
from shared.store.store import Store
from shared.store.writes import Write
from shared.web.routing import route_spec

log = logging.getLogger(__name__)
T = TypeVar("T")

MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
BATCH_MAX = 500
HEAD_RETRIES = 10
VERIFY_PAGE = 1000  # records per read of the verification walk
REFUSAL_WINDOW_S = 60.0
REFUSAL_KEYS = 1000  # (address, reason) pairs tracked per window; more fold into one per reason
REFUSAL_ROUTES = 5  # distinct routes a coalesced record lists
OVERFLOW = "*"  # the address of failures folded together past REFUSAL_KEYS
# Bounds on what a record copies: a request cannot make a record big.
FIELD_CHARS = 256
DETAIL_CHARS = 256
DETAIL_ITEMS = 32
DETAIL_DEPTH = 4
# Set by a handler that wrote its own, more specific audit record (login, MFA, …).
AUDITED = web.RequestKey("audited", bool)
# Extra facts a handler wants on the middleware's record (ids it created, …).
AUDIT_DETAILS = web.RequestKey("audit_details", dict[str, Any])
HASHED_FIELDS = (
    "id",
    "seq",
    "timestamp",
    "user_id",
    "username",
    "action",
    "resource",
    "result",
    "details",
    "ip",
    "request_id",
    "service",
    "prev_hash",
)


def timestamp_now() -> str:
    """Fixed-width UTC time, so records sort and filter as strings."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def timestamp_of(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# The fields of a query model (``/audit/logs``, the audit tool) that filter a search.
SEARCH_FIELDS: set[str] = {"user_id", "action", "resource", "result", "from_", "to"}


def search_filters(
    *,
    user_id: str | None,
    action: str | None,
    resource: str | None,
    result: str | None,
    from_: datetime | None,
    to: datetime | None,
) -> dict[str, Any]:
    """The filters of :meth:`AuditLog.search` (the seed's ``/audit/logs`` query)."""
    return {
        "user_id": user_id,
        "action": action,
        "resource": resource,
        "result": result,
        "from": timestamp_of(from_) if from_ else None,
        "to": timestamp_of(to) if to else None,
    }


def _drop_none(value: Any) -> Any:
    # The store drops NONE fields; hashing must see what the store gives back.
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_drop_none(v) for v in value]
    return value


def clip(value: str, limit: int = FIELD_CHARS) -> str:
    """At most ``limit`` characters, saying how many were cut."""
    value = value.replace("\x00", "\ufffd")  # the store keeps NUL but cannot give it back
    if len(value) <= limit:
        return value
    return f"{value[:limit]}…(+{len(value) - limit} chars)"


def bounded(value: Any, depth: int = 0) -> Any:
    """``value`` with strings, lists, mappings and nesting cut to the audit bounds."""
    if isinstance(value, str):
        return clip(value, DETAIL_CHARS)
    if isinstance(value, dict | list | tuple) and depth >= DETAIL_DEPTH:
        return "…(nested deeper)"
    if isinstance(value, dict):
        items = list(value.items())
        out = {clip(str(k), 64): bounded(v, depth + 1) for k, v in items[:DETAIL_ITEMS]}
        if len(items) > DETAIL_ITEMS:
            out["…"] = f"{len(items) - DETAIL_ITEMS} more"
        return out
    if isinstance(value, list | tuple):
        kept = [bounded(v, depth + 1) for v in value[:DETAIL_ITEMS]]
        if len(value) > DETAIL_ITEMS:
            kept.append(f"… {len(value) - DETAIL_ITEMS} more")
        return kept
    return value


def _clip_optional(value: str | None) -> str | None:
    return None if value is None else clip(value)


def canonical(record: dict[str, Any]) -> bytes:
    body = _drop_none({k: record.get(k) for k in HASHED_FIELDS})
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def chain_hash(prev_hash: str, record: dict[str, Any]) -> str:
    return hashlib.sha256(prev_hash.encode() + b"\n" + canonical(record)).hexdigest()


@dataclass(frozen=True)
class AuditEntry:
    """What happened, before it is numbered and chained."""

    action: str
    resource: str
    result: str  # success | failure | denied | rate_limited
    user_id: str | None = None
    username: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    ip: str | None = None
    request_id: str | None = None
    service: str | None = None


@dataclass
class _Pending:
    entry: AuditEntry
    future: asyncio.Future[dict[str, Any]]


@dataclass
class _Tally:
    """Refusals coalesced into the record of the first one, for one window."""

    entry: AuditEntry  # the first refusal, already recorded
    started_s: float  # loop time of the first refusal
    count: int = 0  # refusals after the first
    first_seq: int | None = None  # the first one's record, once written
    last_at: str = ""
    routes: dict[str, None] = field(default_factory=dict)


class AuditLog:
    """Appends entries in order through one task; verifies and searches the chain."""

    def __init__(
        self,
        *,
        verify_page: int = VERIFY_PAGE,
        refusal_window_s: float = REFUSAL_WINDOW_S,
        refusal_keys: int = REFUSAL_KEYS,
    ) -> None:
        self.repo: AuditRepository | None = None
        self.verify_page = verify_page
        self.refusal_window_s = refusal_window_s
        self.refusal_keys = refusal_keys
        self._queue: asyncio.Queue[_Pending | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._tallies: dict[tuple[str | None, ...], _Tally] = {}
        self._seq = 0
        self._hash = ""
        # Held while records are chained on the head and committed (by the appender, or
        # by a caller committing a record with its own change: :meth:`record_with`).
        self._head_lock = asyncio.Lock()

    async def start(self, store: Store) -> None:
        self.repo = AuditRepository(store)
        self._seq, self._hash = await self.repo.head()
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._run(), name="audit-appender")
        self._flusher = asyncio.create_task(self._flush_loop(), name="audit-refusals")

    async def stop(self) -> None:
        """Write what is queued (and the counts of coalesced refusals), then stop."""
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
        if self._task is not None:
            await self.flush_refusals(everything=True)
            await self._queue.put(None)
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def record_as(
        self,
        actor: Actor,
        action: str,
        resource: str,
        result: str,
        *,
        details: dict[str, Any] | None = None,
        user_id: str | None = None,
        username: str | None = None,
    ) -> dict[str, Any]:
        """A service's own record of what ``actor`` did (who defaults to the actor's
        principal); the request's generic record is then left out."""
        actor.mark.recorded = True
        entry = entry_of(actor, action, resource, result, details=details, user_id=user_id, username=username)
        return await self.record(entry)

    async def record(self, entry: AuditEntry) -> dict[str, Any]:
        """Append an entry; returns the stored record once it is durable."""
        if self._task is None or self._task.done():
            raise StoreError("the audit log is not running")
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(entry, future))
        return await future

    async def record_with(
        self, actor: Actor, entry: AuditEntry, commit: Callable[[Sequence[Write]], Awaitable[T]]
    ) -> T:
        """Append ``entry`` in the caller's own commit: ``commit(writes)`` must write
        ``writes`` (the head's compare-and-set and the record) in the one atomic write
        that holds its change, and raise if that write fails. One commit, one sync, for
        a change and its record: neither is durable without the other.

        The chain is held meanwhile (the appender's records wait, then chain after
        this one). Should another process have moved the head, the write fails as a
        whole and ``commit`` is called again with the record chained on the new head.
        Once it returns, ``actor``'s request is marked recorded (the middleware does
        not repeat it); if it raises, the head is as it was and nothing is marked."""
        if self._task is None or self._task.done():
            raise StoreError("the audit log is not running")
        assert self.repo is not None
        async with self._head_lock:
            for _ in range(HEAD_RETRIES):
                rows, seq, head = self._chain([entry])
                try:
                    result = await commit(self.repo.append(self._seq, seq, head, rows))
                except StoreError:
                    # The store names the first statement that failed, which in a big
                    # write is seldom the guard: whether the head moved is read back.
                    current = await self.repo.head()
                    if current == (self._seq, self._hash):
                        raise
                    self._seq, self._hash = current
                    continue
                self._seq, self._hash = seq, head
                actor.mark.recorded = True
                return result
        raise StoreError("the audit chain head kept moving")

    # -- the appender ----------------------------------------------------------------------------

    async def _run(self) -> None:
        stop = False
        while not stop:
            first = await self._queue.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < BATCH_MAX and not self._queue.empty():
                nxt = self._queue.get_nowait()
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            await self._commit(batch)

    def _chain(self, entries: Sequence[AuditEntry]) -> tuple[list[dict[str, Any]], int, str]:
        seq, prev = self._seq, self._hash
        rows = []
        for entry in entries:
            seq += 1
            row: dict[str, Any] = {
                "id": uuid.uuid4().hex,
                "seq": seq,
                "timestamp": timestamp_now(),
                "user_id": _clip_optional(entry.user_id),
                "username": _clip_optional(entry.username),
                "action": clip(entry.action),
                "resource": clip(entry.resource),
                "result": clip(entry.result),
                "details": bounded(redact(entry.details)),
                "ip": _clip_optional(entry.ip),
                "request_id": _clip_optional(entry.request_id),
                "service": _clip_optional(entry.service),
                "prev_hash": prev,
            }
            row = _drop_none(row)
            row["hash"] = prev = chain_hash(prev, row)
            rows.append(row)
        return rows, seq, prev

    async def _commit(self, batch: list[_Pending]) -> None:
        async with self._head_lock:
            await self._commit_held(batch)

    async def _commit_held(self, batch: list[_Pending]) -> None:
        assert self.repo is not None
        error: Exception = StoreError("the audit chain head kept moving")
        entries = [pending.entry for pending in batch]
        for _ in range(HEAD_RETRIES):
            rows, seq, head = self._chain(entries)
            try:
                await self.repo.store.write(*self.repo.append(self._seq, seq, head, rows))
            except StoreError as exc:
                error = exc
                if AUDIT_HEAD_MOVED not in str(exc):
                    break
                self._seq, self._hash = await self.repo.head()  # another process appended
                continue
            self._seq, self._hash = seq, head
            for pending, row in zip(batch, rows, strict=True):
                if not pending.future.done():
                    pending.future.set_result(row)
            return
        log.error("audit records could not be written", extra={"error": str(error)})
        for pending in batch:
            if not pending.future.done():
                pending.future.set_exception(error)

    # -- verification ------------------------------------------------------------------------

    async def verify(self, page: int | None = None) -> dict[str, Any]:
        """Walk the chain from record 1 to the head: ``{valid, records}``, or where it breaks
        (``broken_at``: a record's id, ``broken_seq``, ``reason``).

        The walk reads windows of ``page`` sequence numbers (``first <= seq < first + page``)
        up to the head read at the start, so it cannot skip a record the store returns, and
        holds one window in memory. A sequence number the window lacks is a deleted record;
        one it holds that is not the next whole number is an inserted one; the head and the
        table's row count, read together, catch records deleted after the last one walked
        and rows outside the chain altogether."""
        assert self.repo is not None
        size = max(1, page or self.verify_page)
        head_seq, head_hash, rows = await self.repo.snapshot()
        walk = _ChainWalk()
        first = 1
        while first <= head_seq:
            end = min(first + size, head_seq + 1)
            # One more than the window can hold whole: a stray row among them is then seen.
            for row in await self.repo.window(first, end, end - first + 1):
                broken = walk.step(row)
                if broken is not None:
                    return broken
            first = end
        broken = walk.finish(head_seq, head_hash)
        if broken is not None:
            return broken
        if rows != head_seq:
            stray = await self.repo.stray(head_seq)
            where = "a row"
            if stray is not None:
                seq = stray.get("seq")
                where = f"record {seq}" if seq is not None else "a row without a seq"
                where += f" (id {stray['id']})"
            return {
                "valid": False,
                "records": walk.count,
                "broken_at": stray["id"] if stray else walk.last_id,
                "broken_seq": stray.get("seq") if stray else None,
                "reason": f"the table holds {rows} records but the chain has {head_seq}: "
                f"{where} is not part of the chain",
            }
        return {"valid": True, "records": walk.count}

    # -- refused authentications -------------------------------------------------------------

    async def refused(self, entry: AuditEntry, reason: str, route: str) -> None:
        """Record a refused authentication, coalesced per (service, address, reason, user)
        and window: the first at once, the others as one record with their count."""
        now = asyncio.get_running_loop().time()
        key: tuple[str | None, ...] = (entry.service, entry.ip, reason, entry.user_id)
        tally = await self._live(key, now)
        if tally is None and len(self._tallies) >= self.refusal_keys:
            key = (entry.service, OVERFLOW, reason, None)
            tally = await self._live(key, now)
            entry = replace(entry, details={**entry.details, "overflow": True})
        if tally is not None:
            tally.count += 1
            tally.last_at = timestamp_now()
            if len(tally.routes) < REFUSAL_ROUTES:
                tally.routes[route] = None
            return
        first = replace(entry, details={**entry.details, "count": 1, "window_s": self.refusal_window_s})
        tally = self._tallies[key] = _Tally(first, now, routes={route: None})  # others count from now
        tally.first_seq = (await self.record(first))["seq"]

    async def _live(self, key: tuple[str | None, ...], now: float) -> _Tally | None:
        """The tally of ``key``'s current window; an ended one is summarised first."""
        tally = self._tallies.get(key)
        if tally is not None and now - tally.started_s >= self.refusal_window_s:
            del self._tallies[key]
            await self._summarise(tally)
            return self._tallies.get(key)  # another refusal may have opened the next window meanwhile
        return tally

    async def flush_refusals(self, *, everything: bool = False) -> None:
        """Write the counts of windows that have ended (or of all, ``everything``)."""
        now = asyncio.get_running_loop().time()
        for key, tally in list(self._tallies.items()):
            if everything or now - tally.started_s >= self.refusal_window_s:
                if self._tallies.get(key) is tally:
                    del self._tallies[key]
                await self._summarise(tally)

    async def _summarise(self, tally: _Tally) -> None:
        if tally.count == 0:
            return
        first = tally.entry
        details = {
            "reason": first.details.get("reason"),
            "count": tally.count,
            "first_seq": tally.first_seq,
            "last_at": tally.last_at,
            "routes": list(tally.routes),
            "window_s": self.refusal_window_s,
        }
        if first.details.get("overflow"):
            details["overflow"] = True
        try:
            await self.record(replace(first, details=details, request_id=None))
        except StoreError as exc:
            log.error("could not audit coalesced refusals", extra={"count": tally.count, "error": str(exc)})

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(min(max(self.refusal_window_s / 4, 0.05), 5.0))
            try:
                await self.flush_refusals()
            except Exception:  # keep summarising later windows
                log.exception("could not write the counts of coalesced refusals")

    async def search(
        self, filters: dict[str, Any], limit: int, offset: int = 0, cursor: str | None = None
    ) -> Listing[dict[str, Any]]:
        """A page of records, newest first (see ``AuditRepository.search``)."""
        assert self.repo is not None
        page, total = await self.repo.search(filters, limit, offset, cursor)
        return Listing(page.rows, total, page.next_cursor)


class _ChainWalk:
    """The state of a verification walk: the last good record and the one before it."""

    def __init__(self) -> None:
        self.count = 0
        self.seq = 0
        self.hash = ""
        self.before_hash: str | None = None  # the hash of the record before the last good one
        self.last_id: str | None = None

    def _broken(self, row_id: Any, seq: Any, reason: str) -> dict[str, Any]:
        return {
            "valid": False,
            "records": self.count,
            "broken_at": row_id,
            "broken_seq": seq,
            "reason": reason,
        }

    def step(self, row: dict[str, Any]) -> dict[str, Any] | None:
        """Check the next row the store returned; a report if it breaks the chain."""
        expected = self.seq + 1
        seq = row.get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool):
            return self._broken(
                row.get("id"),
                seq,
                f"record {seq} is not part of the chain: it lies between record "
                f"{self.seq} and record {expected} (inserted)",
            )
        if seq != expected:
            missing = (
                f"record {expected} is" if seq == expected + 1 else f"records {expected} to {seq - 1} are"
            )
            return self._broken(
                row.get("id"),
                expected,
                f"{missing} missing (deleted): record {seq} follows record {self.seq}",
            )
        prev_hash = row.get("prev_hash", "")
        if prev_hash != self.hash:
            if self.before_hash is not None and prev_hash == self.before_hash:
                return self._broken(
                    self.last_id,
                    self.seq,
                    f"record {self.seq} was inserted: record {seq} is chained to record {self.seq - 1}",
                )
            return self._broken(
                row.get("id"),
                seq,
                f"record {seq} is not chained to record {self.seq}: one of them was altered",
            )
        if chain_hash(self.hash, row) != row.get("hash"):
            return self._broken(
                row.get("id"), seq, f"record {seq}'s content does not match its hash (edited)"
            )
        self.before_hash, self.hash = self.hash, str(row["hash"])
        self.seq, self.last_id = seq, row.get("id")
        self.count += 1
        return None

    def finish(self, head_seq: int, head_hash: str) -> dict[str, Any] | None:
        """After the last window: did the walk reach the head?"""
        if self.seq < head_seq:
            missing = self.seq + 1
            return self._broken(
                self.last_id,
                missing,
                f"the chain's head is record {head_seq}; records after {self.seq} are missing",
            )
        if self.hash != head_hash:
            return self._broken(
                self.last_id, self.seq, f"record {self.seq}'s hash does not match the chain's head"
            )
        return None


AUDIT = web.AppKey("audit_log", AuditLog)


def entry_of(
    actor: Actor,
    action: str,
    resource: str,
    result: str,
    *,
    details: dict[str, Any] | None = None,
    user_id: str | None = None,
    username: str | None = None,
) -> AuditEntry:
    """An entry about what ``actor`` did; who defaults to the actor's principal."""
    if actor.principal is not None and user_id is None:
        user_id, username = actor.principal.user_id, actor.principal.username
    return AuditEntry(
        action=action,
        resource=resource,
        result=result,
        user_id=user_id,
        username=username,
        details=details or {},
        ip=actor.ip,
        request_id=actor.request_id,
        service=actor.service,
    )


def entry_for(
    request: web.Request,
    action: str,
    resource: str,
    result: str,
    *,
    details: dict[str, Any] | None = None,
    user_id: str | None = None,
    username: str | None = None,
) -> AuditEntry:
    """An entry about this request; the caller defaults to the authenticated principal."""
    return entry_of(
        actor_of(request), action, resource, result, details=details, user_id=user_id, username=username
    )


async def audit_event(
    request: web.Request,
    action: str,
    resource: str,
    result: str,
    *,
    details: dict[str, Any] | None = None,
    user_id: str | None = None,
    username: str | None = None,
) -> None:
    """Record a security event about this request (and keep the middleware from repeating it).
    For middlewares and stream handlers; services record through their actor (``record_as``)."""
    await request.app[AUDIT].record_as(
        actor_of(request), action, resource, result, details=details, user_id=user_id, username=username
    )


def result_of(status: int) -> str:
    if status < 400:
        return "success"
    if status in (401, 403):
        return "denied"
    if status == 429:
        return "rate_limited"
    return "failure"


@web.middleware
async def audit_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Record every mutating request on a declared route, every refusal of a read (403),
    and every refused authentication (401, coalesced per address and reason)."""
    spec = route_spec(request)
    if spec is None:
        return await handler(request)
    status = 500
    error: Exception | None = None
    try:
        response = await handler(request)
        status = response.status
        return response
    except ProvisioningError as exc:
        status, error = exc.status, exc
        raise
    except web.HTTPException as exc:
        status, error = exc.status, exc
        raise
    finally:
        if not request.get(AUDITED) and not audited(request):
            if status == 401 and request.get(PRINCIPAL) is None:
                await audit_refusal(request, error)
            elif request.method in MUTATING_METHODS or status in (401, 403):
                await _record_request(request, status)


async def audit_refusal(request: web.Request, error: Exception | None, *, channel: str = "http") -> None:
    """Record a refused authentication of this request (a 401, a WebSocket's ``auth``
    message with a bad token): who if the token said so, from where, on which route, why.
    Coalesced (see :meth:`AuditLog.refused`); never raises."""
    request[AUDITED] = True
    reason = error.reason if isinstance(error, Unauthorized) else "unauthorized"
    user = error.user if isinstance(error, Unauthorized) else None
    spec = route_spec(request)
    route = spec.path if spec is not None else clip(request.path)
    details: dict[str, Any] = {"reason": reason, "method": request.method, "route": route, "channel": channel}
    if isinstance(error, ProvisioningError):
        details["message"] = error.message
    entry = entry_for(
        request,
        "auth.refused",
        request.path.lstrip("/") or "root",
        "denied",
        details=details,
        user_id=user[0] if user else None,
        username=user[1] if user else None,
    )
    try:
        await request.app[AUDIT].refused(entry, reason, route)
    except Exception as exc:  # the refusal stands; a lost record is logged, not raised
        log.error(
            "could not audit a refused authentication", extra={"path": clip(request.path), "error": str(exc)}
        )


def request_entry(request: web.Request, status: int) -> AuditEntry:
    """The record of a request on a declared route that answered ``status`` (what the
    middleware writes, and what :func:`record_request_with` commits with a change)."""
    spec = route_spec(request)
    if spec is not None and spec.resource and spec.action:
        name = f"{spec.resource}.{spec.action}"
    else:
        name = request.path.strip("/").replace("/", ".") or "root"
    details: dict[str, Any] = {"method": request.method, "status": status}
    details.update(request.get(AUDIT_DETAILS, {}))
    return entry_for(request, name, request.path.lstrip("/"), result_of(status), details=details)


async def record_request_with(
    request: web.Request, status: int, commit: Callable[[Sequence[Write]], Awaitable[T]]
) -> T:
    """Commit a change and this request's record (as answering ``status``) in one write
    (:meth:`AuditLog.record_as`'s one-commit sibling: see :meth:`AuditLog.record_with`).
    For a handler whose change is one commit and whose answer is known before it: the
    answer then waits for one sync, not two."""
    return await request.app[AUDIT].record_with(actor_of(request), request_entry(request, status), commit)


async def _record_request(request: web.Request, status: int) -> None:
    try:
        await request.app[AUDIT].record(request_entry(request, status))
    except Exception as exc:  # the change is done; a lost record is logged, not raised
        log.error("could not audit a request", extra={"path": clip(request.path), "error": str(exc)})
