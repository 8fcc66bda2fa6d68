"""The ``ROUTES`` and ``STATIC`` handles: what an extension mounts under ``/ext/{id}/``.

Each loaded extension has a router of its own (its :class:`Mount`'s); the
orchestrator's router asks it at request time (``orchestrator/extensions/mount_api.py``),
so routes come and go with the extension, without a restart. Every route gets a
spec like the product's own (resource ``ext:{id}``, an action among read, write,
invoke), so the same authentication, policy, rate limits and audit apply.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import mimetypes
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

from aiohttp import web

from orchestrator.extensions.context import (
    ACTIONS,
    EXTENSION_ATTR,
    RESERVED_PATHS,
    WS_CLOSE_GOING_AWAY,
    Mount,
    cancel_all,
)
from shared.errors import NotFound
from shared.security.backend import QUERY_TOKEN_ATTR
from shared.web.routing import SPEC_ATTR, Api, RouteSpec

WS_CLOSE_NORMAL = 1000
WS_CLOSE_TIMEOUT_S = 2.0  # a peer that does not answer the close frame in time is cut off


class RoutesHandle:
    """Routes under ``/ext/{id}/`` (``ROUTES``)."""

    def __init__(self, mount: Mount, *, builtin: bool) -> None:
        self._mount = mount
        self._builtin = builtin
        self.prefix = f"/ext/{mount.ext_id}"
        self.resource = f"ext:{mount.ext_id}"

    def _full_path(self, path: str) -> str:
        path = path if path.startswith("/") else "/" + path
        if path in RESERVED_PATHS:
            raise ValueError(f"{self.prefix}{path} is answered by the framework")
        return self.prefix + path

    def _check(self, method: str, path: str, public: bool, action: str | None) -> None:
        if public and not self._builtin:
            raise ValueError(f"{method} {path}: only built-in extensions may declare public routes")
        if not public and action not in ACTIONS:
            choices = ", ".join(ACTIONS)
            raise ValueError(f"{method} {path}: the action must be one of {choices}, not {action!r}")

    def _add(self, spec: RouteSpec, handler: Callable[..., Awaitable[web.StreamResponse]]) -> RouteSpec:
        async def routed(request: web.Request) -> web.StreamResponse:
            return await handler(request)

        routed.__name__ = f"{self._mount.ext_id}_{getattr(handler, '__name__', 'handler')}"
        spec = dataclasses.replace(spec, handler=routed)
        setattr(routed, SPEC_ATTR, spec)
        setattr(routed, EXTENSION_ATTR, self._mount.ext_id)
        if getattr(handler, QUERY_TOKEN_ATTR, False):
            setattr(routed, QUERY_TOKEN_ATTR, True)
        self._mount.router.add_route(spec.method, spec.path, routed)
        return spec

    def include(self, api: Api) -> None:
        """Routes declared with ``Api.route`` at paths relative to ``/ext/{id}``; the
        resource is always ``ext:{id}``, the action one of read, write, invoke."""
        for spec in api.specs:
            path = self._full_path(spec.path)
            self._check(spec.method, path, spec.public, spec.action)
            routed = dataclasses.replace(
                spec, path=path, resource=None if spec.public else self.resource, tags=(self.resource,)
            )
            self._mount.specs.append(self._add(routed, spec.handler))

    def add(self, defs: Iterable[web.RouteDef]) -> None:
        """Plain aiohttp route definitions (not in the OpenAPI document). ``kwargs`` may say
        ``public=True`` (built-ins only: the handler authenticates itself) or
        ``action="invoke"``; otherwise GET/HEAD are ``read`` and the rest ``write``."""
        for d in defs:
            options = dict(d.kwargs)
            public = bool(options.pop("public", False))
            action = options.pop("action", "read" if d.method in ("GET", "HEAD") else "write")
            path = self._full_path(d.path)
            self._check(d.method, path, public, action)
            spec = RouteSpec(
                d.method,
                path,
                d.handler,  # type: ignore[arg-type]
                None if public else self.resource,
                None if public else action,
                public=public,
                tags=(self.resource,),
            )
            self._add(spec, d.handler)  # type: ignore[arg-type]

    def websocket(
        self,
        path: str,
        handler: Callable[[web.Request, web.WebSocketResponse], Awaitable[None]],
        *,
        action: str = "read",
    ) -> None:
        """``GET /ext/{id}/ws/{path}``: ``handler`` gets the open socket; it is cancelled and
        the socket closed (1001) when the extension is disabled or the service stops."""
        mount = self._mount
        full = self._full_path("/ws/" + path.lstrip("/"))
        self._check("GET", full, False, action)

        async def upgrade(request: web.Request) -> web.StreamResponse:
            ws = web.WebSocketResponse(heartbeat=30.0)
            await ws.prepare(request)
            mount.sockets.add(ws)
            work: asyncio.Future[Any] = asyncio.ensure_future(handler(request, ws))
            stop: asyncio.Future[Any] = asyncio.ensure_future(mount.closing.wait())
            try:
                await asyncio.wait({work, stop}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                await cancel_all(work, stop)
                # The one place this socket is closed: 1001 when the extension stops.
                code = WS_CLOSE_GOING_AWAY if mount.closing.is_set() else WS_CLOSE_NORMAL
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(WS_CLOSE_TIMEOUT_S):
                        await ws.close(
                            code=code, message=b"extension stopped" if mount.closing.is_set() else b""
                        )
                mount.sockets.discard(ws)
            return ws

        upgrade.__name__ = getattr(handler, "__name__", "websocket")
        spec = RouteSpec(
            "GET", full, upgrade, self.resource, action, tags=(self.resource,), upgrade=True, summary=""
        )
        mount.specs.append(self._add(spec, upgrade))


class StaticHandle:
    """Files of one directory served under ``/ext/{id}/static/`` (``STATIC``)."""

    def __init__(self, routes: RoutesHandle, *, builtin: bool) -> None:
        self._routes = routes
        self._builtin = builtin

    def serve(self, directory: Path, *, prefix: str = "/static/", public: bool = False) -> None:
        """Serve ``directory`` at ``/ext/{id}{prefix}…``; a directory answers its index.html."""
        root = directory.resolve()

        async def static_file(request: web.Request) -> web.StreamResponse:
            found = resolve_file(root, request.match_info.get("path", ""))
            if found is None:
                raise NotFound(f"no such file: {request.path}")
            kind = mimetypes.guess_type(found.name)[0] or "application/octet-stream"
            return web.FileResponse(found, headers={"Content-Type": kind})

        route = web.get(prefix.rstrip("/") + "/{path:.*}", static_file, public=public)
        self._routes.add([route])


def resolve_file(root: Path, relative: str) -> Path | None:
    """``root/relative`` if it is a file inside ``root`` (a directory: its index.html)."""
    if "\x00" in relative:
        return None
    candidate = (root / relative.lstrip("/")).resolve()
    if candidate != root and root not in candidate.parents:
        return None
    if candidate.is_dir():
        candidate = candidate / "index.html"
    return candidate if candidate.is_file() else None
