"""The audit log: append-only, hash-chained, and the middleware that feeds it.

Every record carries ``prev_hash`` (the hash of the record before it) and
``hash`` = SHA-256 over ``prev_hash`` and the record's canonical JSON, so
editing, inserting or deleting a record breaks the chain at that point and
:meth:`AuditLog.verify` names it. One appender task per process chains records
in order and writes each batch in one transaction guarded by a compare-and-set
on the chain's head, so appenders in other processes cannot fork the chain:
the loser re-reads the head and chains again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from shared.auth import PRINCIPAL
from shared.client import client_ip
from shared.errors import ProvisioningError, StoreError
from shared.http import REQUEST_ID, SERVICE_KEY, route_spec
from shared.keys import SETTINGS
from shared.logs import redact
from shared.security_repos import AUDIT_HEAD_MOVED, AuditRepository
from shared.store import Store

log = logging.getLogger(__name__)

MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
BATCH_MAX = 500
HEAD_RETRIES = 10
VERIFY_PAGE = 1000
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


def _drop_none(value: Any) -> Any:
    # The store drops NONE fields; hashing must see what the store gives back.
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_drop_none(v) for v in value]
    return value


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


class AuditLog:
    """Appends entries in order through one task; verifies and searches the chain."""

    def __init__(self) -> None:
        self.repo: AuditRepository | None = None
        self._queue: asyncio.Queue[_Pending | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._seq = 0
        self._hash = ""

    async def start(self, store: Store) -> None:
        self.repo = AuditRepository(store)
        self._seq, self._hash = await self.repo.head()
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._run(), name="audit-appender")

    async def stop(self) -> None:
        """Write what is queued, then stop."""
        if self._task is not None:
            await self._queue.put(None)
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def record(self, entry: AuditEntry) -> dict[str, Any]:
        """Append an entry; returns the stored record once it is durable."""
        if self._task is None or self._task.done():
            raise StoreError("the audit log is not running")
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(entry, future))
        return await future

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

    def _chain(self, batch: list[_Pending]) -> tuple[list[dict[str, Any]], int, str]:
        seq, prev = self._seq, self._hash
        rows = []
        for pending in batch:
            seq += 1
            entry = pending.entry
            row: dict[str, Any] = {
                "id": uuid.uuid4().hex,
                "seq": seq,
                "timestamp": timestamp_now(),
                "user_id": entry.user_id,
                "username": entry.username,
                "action": entry.action,
                "resource": entry.resource,
                "result": entry.result,
                "details": redact(entry.details),
                "ip": entry.ip,
                "request_id": entry.request_id,
                "service": entry.service,
                "prev_hash": prev,
            }
            row = _drop_none(row)
            row["hash"] = prev = chain_hash(prev, row)
            rows.append(row)
        return rows, seq, prev

    async def _commit(self, batch: list[_Pending]) -> None:
        assert self.repo is not None
        error: Exception = StoreError("the audit chain head kept moving")
        for _ in range(HEAD_RETRIES):
            rows, seq, head = self._chain(batch)
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

    async def verify(self) -> dict[str, Any]:
        """Walk the chain from the start: ``{valid, records[, broken_at, reason]}``."""
        assert self.repo is not None
        prev_hash, prev_seq, count, last_id = "", 0, 0, None
        while True:
            page = await self.repo.walk(prev_seq, VERIFY_PAGE)
            for row in page:
                reason = None
                if int(row.get("seq", -1)) != prev_seq + 1:
                    reason = f"expected record {prev_seq + 1}, found {row.get('seq')}"
                elif row.get("prev_hash", "") != prev_hash:
                    reason = "prev_hash does not match the record before"
                elif chain_hash(prev_hash, row) != row.get("hash"):
                    reason = "the record's content does not match its hash"
                if reason is not None:
                    return {"valid": False, "records": count, "broken_at": row["id"], "reason": reason}
                prev_hash, prev_seq, last_id = row["hash"], prev_seq + 1, row["id"]
                count += 1
            if len(page) < VERIFY_PAGE:
                break
        head_seq, head_hash = await self.repo.head()
        if head_seq != prev_seq or head_hash != prev_hash:
            return {
                "valid": False,
                "records": count,
                "broken_at": last_id,
                "reason": f"the chain's head is record {head_seq}; records after {prev_seq} are missing",
            }
        return {"valid": True, "records": count}

    async def search(
        self,
        filters: dict[str, Any],
        limit: int,
        offset: int,
    ) -> tuple[list[dict[str, Any]], int]:
        assert self.repo is not None
        return await self.repo.search(filters, limit, offset)


AUDIT = web.AppKey("audit_log", AuditLog)


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
    principal = request.get(PRINCIPAL)
    if principal is not None and user_id is None:
        user_id, username = principal.user_id, principal.username
    settings = request.app[SETTINGS]
    return AuditEntry(
        action=action,
        resource=resource,
        result=result,
        user_id=user_id,
        username=username,
        details=details or {},
        ip=client_ip(request, settings.trusted_proxies),
        request_id=request.get(REQUEST_ID),
        service=request.app.get(SERVICE_KEY),
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
    """Record a security event about this request (and keep the middleware from repeating it)."""
    request[AUDITED] = True
    entry = entry_for(request, action, resource, result, details=details, user_id=user_id, username=username)
    await request.app[AUDIT].record(entry)


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
    """Record every mutating request on a declared route, and every refusal of a read."""
    spec = route_spec(request)
    if spec is None:
        return await handler(request)
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except ProvisioningError as exc:
        status = exc.status
        raise
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        mutating = request.method in MUTATING_METHODS
        if (mutating or status == 403) and not request.get(AUDITED):
            await _record_request(request, spec.resource, spec.action, status)


async def _record_request(
    request: web.Request, resource: str | None, action: str | None, status: int
) -> None:
    if resource and action:
        name = f"{resource}.{action}"
    else:
        name = request.path.strip("/").replace("/", ".") or "root"
    details: dict[str, Any] = {"method": request.method, "status": status}
    details.update(request.get(AUDIT_DETAILS, {}))
    entry = entry_for(request, name, request.path.lstrip("/"), result_of(status), details=details)
    try:
        await request.app[AUDIT].record(entry)
    except Exception as exc:  # the change is done; a lost record is logged, not raised
        log.error("could not audit a request", extra={"path": request.path, "error": str(exc)})
