"""The CLI's one door to the services: HTTP (the envelope, pagination, a refreshed token)
and the live WebSocket, over ``aiohttp`` only.

It knows URLs and the API's conventions, nothing of the servers' code: it imports
no service and no ``shared`` module, so the CLI works against any deployment.

* A successful answer is the envelope's ``data``; an error answer raises
  :class:`ApiError` with the HTTP status, the API's message, its ``code`` and
  ``details``; a service that cannot be reached raises :class:`ServerDown`.
* Lists follow the ``Link: <…>; rel="next"`` header (offset or cursor links alike)
  and read ``X-Total-Count`` when the server sends it.
* A few routes answer their JSON without the envelope (``GET /ext/status``):
  :meth:`Client.raw` returns it as it is (an error answer is still an :class:`ApiError`).
* On a 401 the client asks its ``refresher`` for a new access token (the
  credentials file's refresh token, rotated) and tries the call once more.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

import aiohttp

ACCEPT = "application/vnd.provisioning.v1+json"
MAX_PAGE = 1000  # the API's largest ``limit``
REQUEST_TIMEOUT_S = 30.0
_LINK = re.compile(r'<([^>]*)>\s*;\s*rel="?([^";]+)"?')

Refresher = Callable[[], Awaitable[str | None]]


class ApiError(Exception):
    """An error answer: its HTTP status, the API's message, ``code`` and ``details``."""

    def __init__(
        self,
        status: int,
        message: str,
        details: Any = None,
        *,
        code: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details
        self.code = code
        self.request_id = request_id


class ServerDown(Exception):
    """The service did not answer at all (refused, unresolvable, timed out, cut off)."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach {url}: {reason}")
        self.url = url
        self.reason = reason


@dataclass
class Page:
    """One page of a list: its items, the total the server counted, the next page's URL."""

    items: list[Any]
    total: int | None = None
    next_url: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


def next_link(header: str | None) -> str | None:
    """The ``rel="next"`` target of a ``Link`` header, or None."""
    for target, rel in _LINK.findall(header or ""):
        if "next" in rel.split():
            return str(target)
    return None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0]


class Client:
    """Calls one service (``base_url``) with a bearer token, refreshed once on a 401."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        refresher: Refresher | None = None,
        *,
        timeout_s: float = REQUEST_TIMEOUT_S,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.refresher = refresher
        self.timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Client:
        self._session = aiohttp.ClientSession(
            headers={"Accept": ACCEPT}, timeout=aiohttp.ClientTimeout(total=None, sock_read=self.timeout_s)
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("use the client as 'async with Client(...)'")
        return self._session

    def url(self, path: str) -> str:
        """An absolute URL: ``path`` relative to the service (a Link target may be either)."""
        return path if "://" in path else urljoin(self.base_url + "/", path.lstrip("/"))

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    async def refresh(self) -> bool:
        """A new access token from the refresher; True if there is one."""
        token = await self.refresher() if self.refresher is not None else None
        if token:
            self.token = token
        return bool(token)

    # -- HTTP ---------------------------------------------------------------------------

    async def call(
        self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None
    ) -> Any:
        """The ``data`` of a call's envelope."""
        data, _ = await self.request(method, path, body, params)
        return data

    async def request(
        self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, str]]:
        """The ``data`` of a call's envelope and the answer's headers."""
        return await self._refreshed_request(method, path, body, params, raw=False)

    async def raw(self, path: str, params: dict[str, Any] | None = None) -> Any:
        """A GET whose answer has no envelope (``GET /ext/status``): its JSON as it is."""
        data, _ = await self._refreshed_request("GET", path, None, params, raw=True)
        return data

    async def _refreshed_request(
        self, method: str, path: str, body: Any, params: dict[str, Any] | None, *, raw: bool
    ) -> tuple[Any, dict[str, str]]:
        """One call, tried once more with a refreshed token after a 401."""
        try:
            return await self._request(method, path, body, params, raw)
        except ApiError as exc:
            if exc.status != 401 or not await self.refresh():
                raise
            return await self._request(method, path, body, params, raw)

    async def _request(
        self, method: str, path: str, body: Any, params: dict[str, Any] | None, raw: bool
    ) -> tuple[Any, dict[str, str]]:
        url = self.url(path)
        query = {k: str(v) for k, v in (params or {}).items() if v is not None}
        try:
            async with self.session.request(
                method, url, json=body, params=query or None, headers=self._headers()
            ) as resp:
                text = await resp.text()
                headers = dict(resp.headers)
                status = resp.status
        except (aiohttp.ClientConnectionError, aiohttp.InvalidURL, TimeoutError, OSError) as exc:
            raise ServerDown(self.base_url, _reason(exc)) from exc
        try:
            doc = json.loads(text)
        except ValueError:
            raise ApiError(status, text.strip()[:300] or f"HTTP {status}") from None
        if raw and status < 400:
            return doc, headers
        if not isinstance(doc, dict) or not doc.get("success"):
            message = doc.get("error") if isinstance(doc, dict) else None
            details = doc.get("details") if isinstance(doc, dict) else None
            code = doc.get("code") if isinstance(doc, dict) else None
            raise ApiError(
                status,
                str(message or f"HTTP {status}"),
                details,
                code=code,
                request_id=headers.get("X-Request-ID"),
            )
        return doc.get("data"), headers

    async def page(self, path: str, params: dict[str, Any] | None = None) -> Page:
        data, headers = await self.request("GET", path, params=params)
        total = headers.get("X-Total-Count")
        return Page(
            items=list(data or []),
            total=int(total) if total and total.isdigit() else None,
            next_url=next_link(headers.get("Link")),
            headers=headers,
        )

    async def collect(
        self, path: str, params: dict[str, Any] | None = None, *, limit: int | None = 50, every: bool = False
    ) -> Page:
        """Up to ``limit`` items (every one with ``every``), following ``rel="next"`` links."""
        query = dict(params or {})
        query["limit"] = MAX_PAGE if every or limit is None else max(1, min(limit, MAX_PAGE))
        first = await self.page(path, query)
        items = list(first.items)
        nxt = first.next_url
        while nxt and (every or limit is None or len(items) < limit):
            page = await self.page(nxt)
            if not page.items:
                break
            items.extend(page.items)
            nxt = page.next_url
        if not every and limit is not None:
            items = items[:limit]
        return Page(items=items, total=first.total, next_url=nxt, headers=first.headers)

    async def lines(self, path: str, params: dict[str, Any] | None = None) -> AsyncIterator[bytes]:
        """A streamed, non-envelope answer (an export) line by line."""
        query = {k: str(v) for k, v in (params or {}).items() if v is not None}
        for attempt in range(2):
            try:
                async with self.session.get(self.url(path), params=query, headers=self._headers()) as resp:
                    if resp.status == 401 and attempt == 0 and await self.refresh():
                        continue
                    if resp.status >= 400:
                        text = await resp.text()
                        try:
                            doc = json.loads(text)
                        except ValueError:
                            doc = {"error": text.strip()[:300]}
                        raise ApiError(resp.status, str(doc.get("error") or f"HTTP {resp.status}"))
                    async for line in resp.content:
                        yield line
                    return
            except (aiohttp.ClientConnectionError, TimeoutError, OSError) as exc:
                raise ServerDown(self.base_url, _reason(exc)) from exc

    # -- WebSocket ----------------------------------------------------------------------

    @asynccontextmanager
    async def websocket(
        self, path: str, params: dict[str, Any] | None = None
    ) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
        """The live stream, authenticated by the ``Authorization`` header of the upgrade."""
        url = self.url(path)
        query = {k: str(v) for k, v in (params or {}).items() if v is not None}
        ws: aiohttp.ClientWebSocketResponse | None = None
        for attempt in range(2):
            try:
                ws = await self.session.ws_connect(url, params=query, headers=self._headers(), heartbeat=30)
                break
            except aiohttp.WSServerHandshakeError as exc:
                if exc.status == 401 and attempt == 0 and await self.refresh():
                    continue
                raise ApiError(exc.status, exc.message or f"HTTP {exc.status}") from exc
            except (aiohttp.ClientConnectionError, TimeoutError, OSError) as exc:
                raise ServerDown(self.base_url, _reason(exc)) from exc
        assert ws is not None
        try:
            yield ws
        finally:
            await ws.close()
