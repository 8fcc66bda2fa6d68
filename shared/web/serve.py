"""Listening sockets for the services, with the connection limits aiohttp leaves out.

aiohttp's server closes idle keep-alive connections but has no deadline for a
request's headers or body, no cap on connections and no per-client limit, so a
few hundred connections that send half a request each hold their descriptors
for an hour, and a few thousand exhaust the process (slowloris). :func:`listen`
serves an app with:

* a **header deadline**: a connection must deliver a complete request head
  within ``header_timeout_s`` of connecting, or of the first byte of its next
  request; otherwise it gets ``408`` and is closed. Trickling bytes does not
  extend it.
* a **body deadline**: a request's body must arrive whole within
  ``body_timeout_s`` of its headers; a handler still reading it gets a ``408``
  and the connection is closed.
* an **idle deadline**: a keep-alive connection between requests is closed after
  ``idle_timeout_s`` (aiohttp's keep-alive timer).
* a **per-address limit** and a **global cap** on open connections, kept below
  the descriptor limit; connections over them get ``429`` / ``503`` and are closed.
* **rate-limited logging** of accept errors (``EMFILE`` …) and refusals: one line
  per interval with a count, never a traceback per connection.

WebSocket and SSE streams are requests whose handler runs for the stream's
life: none of the deadlines applies to them once their headers are in.

The hooks are aiohttp's public seams: a protocol wrapped around each
``RequestHandler`` the runner's :class:`~aiohttp.web.Server` makes, and the
server's ``request_factory`` / ``request_handler``, which see every request
as its head is parsed and as its handler ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.streams import StreamReader

from shared.errors import ValidationFailed
from shared.metrics import (
    HTTP_ACCEPT_ERRORS,
    HTTP_CONNECTION_TIMEOUTS,
    HTTP_CONNECTIONS_OPEN,
    HTTP_CONNECTIONS_REFUSED,
)
from shared.settings import Settings
from shared.web.keys import SERVICE_KEY

log = logging.getLogger(__name__)
# What aiohttp's request handlers log through (see _QuietBodyTimeouts).
SERVER_LOG = logging.getLogger("provisioning.http.server")

ACCEPT_ERROR_MESSAGE = "socket.accept() out of system resource"
MIN_CONNECTIONS = 16  # below this a cap derived from the descriptor limit is a misconfiguration
LISTEN_BACKLOG = 128


def _reply(status: str, code: str, message: str, extra: str = "") -> bytes:
    body = f'{{"success":false,"error":"{message}","code":"{code}"}}'.encode()
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        f"{extra}Connection: close\r\n\r\n"
    )
    return head.encode() + body


# Written straight to the socket: these connections never reach the app.
HEADER_TIMEOUT_REPLY = _reply(
    "408 Request Timeout", "request_timeout", "the request headers did not arrive in time"
)
PER_IP_REPLY = _reply(
    "429 Too Many Requests",
    "too_many_connections",
    "too many open connections from this address",
    "Retry-After: 1\r\n",
)
CAPACITY_REPLY = _reply(
    "503 Service Unavailable", "server_busy", "the server is at its connection limit", "Retry-After: 1\r\n"
)


class RequestBodyTimeout(web.HTTPRequestTimeout):
    """Raised into a handler reading a body that did not arrive in time (answered 408)."""


# -- limits ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConnectionLimits:
    """The limits of :func:`listen`, from settings (``PROVISIONING_HTTP_*``)."""

    header_timeout_s: float = 10.0
    body_timeout_s: float = 60.0
    idle_timeout_s: float = 75.0
    max_per_ip: int = 100
    max_connections: int = 1000
    exempt: frozenset[str] = frozenset()  # addresses without a per-address limit (trusted proxies)
    log_interval_s: float = 10.0

    @classmethod
    def from_settings(cls, settings: Settings, fd_limit: int | None = None) -> ConnectionLimits:
        """Checked limits; the global cap comes from the descriptor limit unless set lower."""
        for name in ("http_header_timeout_s", "http_body_timeout_s", "http_idle_timeout_s"):
            if not getattr(settings, name) > 0:
                raise ValidationFailed(f"{name} must be greater than 0 (seconds)")
        if settings.http_max_connections_per_ip < 1:
            raise ValidationFailed("http_max_connections_per_ip must be at least 1")
        if settings.http_max_connections < 0 or settings.http_fd_reserve < 0:
            raise ValidationFailed("http_max_connections and http_fd_reserve may not be negative")
        cap = connection_cap(
            fd_limit if fd_limit is not None else descriptor_limit(),
            settings.http_fd_reserve,
            settings.http_max_connections,
        )
        return cls(
            header_timeout_s=settings.http_header_timeout_s,
            body_timeout_s=settings.http_body_timeout_s,
            idle_timeout_s=settings.http_idle_timeout_s,
            max_per_ip=settings.http_max_connections_per_ip,
            max_connections=cap,
            exempt=frozenset(_address(a) for a in settings.trusted_proxies),
            log_interval_s=max(settings.http_accept_error_log_s, 0.0),
        )


def _address(raw: str) -> str:
    """An address in one spelling (``::ffff:127.0.0.1`` is ``127.0.0.1``)."""
    try:
        ip = ipaddress.ip_address(raw.strip())
    except ValueError:
        return raw.strip()
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def descriptor_limit() -> int:
    """The process's soft descriptor limit, raised to the hard limit when allowed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as exc:
            log.warning(
                "could not raise the descriptor limit", extra={"soft": soft, "hard": hard, "error": str(exc)}
            )
        else:
            log.info("raised the descriptor limit", extra={"from": soft, "to": hard})
            soft = hard
    if soft == resource.RLIM_INFINITY:
        return 1 << 20
    return int(soft)


def connection_cap(fd_limit: int, reserve: int, configured: int = 0) -> int:
    """Open connections allowed: the descriptor limit minus the reserve kept for the store,
    pipes, subprocesses and outgoing connections (never more, whatever is configured)."""
    room = fd_limit - reserve
    if room < MIN_CONNECTIONS:
        raise ValidationFailed(
            f"the descriptor limit ({fd_limit}) leaves fewer than {MIN_CONNECTIONS} connections after "
            f"http_fd_reserve ({reserve}); raise the limit (ulimit -n) or lower the reserve"
        )
    if configured and configured > room:
        log.warning(
            "http_max_connections is above what the descriptor limit allows; using the lower value",
            extra={"configured": configured, "used": room, "fd_limit": fd_limit, "reserve": reserve},
        )
    return min(configured, room) if configured else room


# -- rate-limited logging ----------------------------------------------------------------------


class RateLimitedLog:
    """One log line per ``interval_s`` at most for a condition that can fire thousands of
    times a second; each line says how many occurrences it stands for."""

    def __init__(
        self,
        logger: logging.Logger,
        message: str,
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
        level: int = logging.WARNING,
    ) -> None:
        self.logger = logger
        self.message = message
        self.interval_s = interval_s
        self.level = level
        self._clock = clock
        self._last: float | None = None
        self._count = 0
        self._extra: dict[str, Any] = {}

    def note(self, **extra: Any) -> bool:
        """Count one occurrence; write a line (and return True) if the interval has passed."""
        self._count += 1
        self._extra = extra
        now = self._clock()
        if self._last is not None and now - self._last < self.interval_s:
            return False
        self._write(now)
        return True

    def flush(self) -> None:
        """Write what was counted since the last line, if anything."""
        if self._count:
            self._write(self._clock())

    def _write(self, now: float) -> None:
        since = None if self._last is None else round(now - self._last, 3)
        self.logger.log(
            self.level, self.message, extra={**self._extra, "count": self._count, "over_s": since}
        )
        self._count = 0
        self._last = now


class _QuietBodyTimeouts(logging.Filter):
    """aiohttp logs a traceback when the lingering read after a response meets the body
    timeout it was given; that is the timeout working, not an error."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, RequestBodyTimeout)


SERVER_LOG.addFilter(_QuietBodyTimeouts())


# -- the guard ---------------------------------------------------------------------------------


class ConnectionGuard:
    """Connection counts for the whole process (every listener shares the descriptor table)."""

    def __init__(self, limits: ConnectionLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self.open = 0
        self.per_ip: dict[str, int] = {}
        interval = limits.log_interval_s
        self.refusals = RateLimitedLog(log, "connections refused", interval, clock)
        self.accept_errors = RateLimitedLog(log, "accept errors", interval, clock, level=logging.ERROR)

    def admit(self, ip: str) -> str | None:
        """Take a slot for a new connection from ``ip``, or say why not (``per_ip``, ``capacity``)."""
        if self.open >= self.limits.max_connections:
            return "capacity"
        held = self.per_ip.get(ip, 0)
        if held >= self.limits.max_per_ip and ip not in self.limits.exempt:
            return "per_ip"
        self.open += 1
        self.per_ip[ip] = held + 1
        return None

    def release(self, ip: str) -> None:
        self.open -= 1
        left = self.per_ip.get(ip, 1) - 1
        if left > 0:
            self.per_ip[ip] = left
        else:
            self.per_ip.pop(ip, None)

    def handle_loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """The loop's exception handler: accept errors are counted and logged at a rate."""
        if context.get("message") == ACCEPT_ERROR_MESSAGE:
            HTTP_ACCEPT_ERRORS.inc()
            exc = context.get("exception")
            self.accept_errors.note(
                error=str(exc) if exc else ACCEPT_ERROR_MESSAGE, open_connections=self.open
            )
            return
        loop.default_exception_handler(context)

    @contextlib.contextmanager
    def installed(self, loop: asyncio.AbstractEventLoop) -> Any:
        """This guard's exception handler on ``loop`` for the duration."""
        previous = loop.get_exception_handler()
        loop.set_exception_handler(self.handle_loop_exception)
        try:
            yield self
        finally:
            loop.set_exception_handler(previous)
            self.accept_errors.flush()
            self.refusals.flush()


# -- one connection ------------------------------------------------------------------------------


class _Connection(asyncio.Protocol):
    """Wraps aiohttp's ``RequestHandler`` for one connection: admission and deadlines."""

    def __init__(self, listener: Listener) -> None:
        self._listener = listener
        self._inner: web.RequestHandler | None = None
        self._transport: asyncio.Transport | None = None
        self._ip = ""
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._in_request = False

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        listener = self._listener
        peer = transport.get_extra_info("peername")
        self._ip = _address(str(peer[0])) if peer else ""
        server = listener.runner.server
        # A runner shutting down has no server: nothing new is taken on.
        refusal = listener.guard.admit(self._ip) if server is not None else "capacity"
        if refusal is not None or server is None:
            refusal = refusal or "capacity"
            HTTP_CONNECTIONS_REFUSED.labels(listener.service, refusal).inc()
            listener.guard.refusals.note(reason=refusal, ip=self._ip, service=listener.service)
            transport.write(PER_IP_REPLY if refusal == "per_ip" else CAPACITY_REPLY)
            transport.close()
            return
        HTTP_CONNECTIONS_OPEN.labels(listener.service).inc()
        self._transport = transport
        self._inner = server()
        listener.connections[self._inner] = self
        self._arm_head()
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._inner is None:
            return
        if not self._in_request and self._head_timer is None:
            self._arm_head()  # the first byte of the next request on a kept-alive connection
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        if self._inner is not None:
            self._inner.eof_received()
        return None  # the transport closes its side; aiohttp's handler does the same

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        inner = self._inner
        if inner is None:
            return
        self._cancel_timers()
        self._inner = None
        self._listener.connections.pop(inner, None)
        self._listener.guard.release(self._ip)
        HTTP_CONNECTIONS_OPEN.labels(self._listener.service).dec()
        inner.connection_lost(exc)

    # request boundaries, from the listener's hooks

    def request_started(self, payload: StreamReader) -> None:
        self._in_request = True
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        if not payload.is_eof():
            loop = asyncio.get_running_loop()
            self._body_timer = loop.call_later(
                self._listener.guard.limits.body_timeout_s, self._body_late, payload
            )

    def request_finished(self) -> None:
        self._in_request = False
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    # deadlines

    def _arm_head(self) -> None:
        loop = asyncio.get_running_loop()
        self._head_timer = loop.call_later(self._listener.guard.limits.header_timeout_s, self._head_late)

    def _head_late(self) -> None:
        self._head_timer = None
        inner, transport = self._inner, self._transport
        if inner is None or transport is None or self._in_request:
            return
        HTTP_CONNECTION_TIMEOUTS.labels(self._listener.service, "headers").inc()
        if not transport.is_closing():
            transport.write(HEADER_TIMEOUT_REPLY)
        inner.force_close()

    def _body_late(self, payload: StreamReader) -> None:
        self._body_timer = None
        if payload.is_eof() or self._inner is None:
            return
        HTTP_CONNECTION_TIMEOUTS.labels(self._listener.service, "body").inc()
        # The handler reading the body gets a 408; the connection closes after the answer,
        # since what is left of the body can never be told apart from a next request.
        payload.set_exception(RequestBodyTimeout(text="the request body did not arrive in time"))
        self._inner.close()

    def _cancel_timers(self) -> None:
        for timer in (self._head_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._body_timer = None


# -- a listener ------------------------------------------------------------------------------------


class Listener:
    """One app served on one address; :meth:`close` stops it."""

    def __init__(self, runner: web.AppRunner, guard: ConnectionGuard, service: str) -> None:
        self.runner = runner
        self.guard = guard
        self.service = service
        self.connections: dict[web.RequestHandler, _Connection] = {}
        self.server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self.server is not None and self.server.sockets
        return int(self.server.sockets[0].getsockname()[1])

    def _hook(self) -> None:
        """See each request's head (``request_factory``) and its handler's end."""
        server = self.runner.server
        assert server is not None
        make_request = server.request_factory
        handle = server.request_handler

        def request_factory(
            message: Any,
            payload: StreamReader,
            protocol: web.RequestHandler,
            writer: Any,
            task: asyncio.Task[None],
        ) -> web.BaseRequest:
            conn = self.connections.get(protocol)
            if conn is not None:
                conn.request_started(payload)
            return make_request(message, payload, protocol, writer, task)

        async def request_handler(request: web.BaseRequest) -> web.StreamResponse:
            try:
                return await handle(request)
            finally:
                conn = self.connections.get(request.protocol)
                if conn is not None:
                    conn.request_finished()

        server.request_factory = request_factory
        server.request_handler = request_handler

    async def close(self) -> None:
        """Stop accepting, close the connections (streams via the app's on_shutdown)."""
        if self.server is not None:
            self.server.close()
        await self.runner.cleanup()
        if self.server is not None:
            await self.server.wait_closed()


async def listen(
    app: web.Application,
    host: str,
    port: int,
    guard: ConnectionGuard,
    *,
    access_log_class: type[AbstractAccessLogger] | None = None,
    shutdown_timeout_s: float = 5.0,
) -> Listener:
    """Serve ``app`` on ``host:port`` (``0``: any free port) within ``guard``'s limits."""
    kwargs: dict[str, Any] = {
        "access_log": logging.getLogger("aiohttp.access"),
        "shutdown_timeout": shutdown_timeout_s,
        "keepalive_timeout": guard.limits.idle_timeout_s,
        "logger": SERVER_LOG,
    }
    if access_log_class is not None:
        kwargs["access_log_class"] = access_log_class
    runner = web.AppRunner(app, **kwargs)
    await runner.setup()
    listener = Listener(runner, guard, app.get(SERVICE_KEY, "app"))
    listener._hook()
    loop = asyncio.get_running_loop()
    try:
        listener.server = await loop.create_server(
            lambda: _Connection(listener), host, port, backlog=LISTEN_BACKLOG, reuse_address=True
        )
    except BaseException:
        await runner.cleanup()
        raise
    return listener
