"""The extensions of one orchestrator: discovered at start, loaded at start (``eager``)
or on their first request, enabled and disabled without a restart, each with its
state, metrics and health.

Loading runs ``get_extension()``, then ``setup(context)`` with only the granted
handles, then ``on_startup()``; each step has ``ext_hook_timeout_s`` (10 s). Any
failure (an import error, an exception, a timeout, an incompatible ``requires_api``)
leaves the extension ``failed`` with its error type and message, undoes what it had
registered, and the product goes on serving. Effective capabilities are the
requested ones that are also granted: by the manifest for built-ins, by
``[extensions.<id>] grants`` for every other one; nothing is granted by default.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from aiohttp import web

from orchestrator.extensions.context import (
    BackgroundHandle,
    EventsHandle,
    ExtensionContext,
    Mount,
    ProvidersHandle,
    ScopedTools,
    cancel_all,
)
from orchestrator.extensions.discovery import BUILTIN_DIR, Candidate, discover
from orchestrator.extensions.manifest import Capability
from orchestrator.extensions.metrics import (
    EXTENSION_CONNECTIONS,
    EXTENSION_ERRORS,
    EXTENSION_LATENCY,
    EXTENSION_REQUESTS,
)
from orchestrator.extensions.routes_api import RoutesHandle, StaticHandle
from orchestrator.extensions.streams import EventStreams
from orchestrator.providers.registry import ProviderRegistry
from orchestrator.tools import ToolRegistry
from shared.errors import NotFound
from shared.settings import Settings

log = logging.getLogger(__name__)


class ExtensionState(StrEnum):
    """Where an extension stands; the values are what ``/ext/status`` shows."""

    LOADED, PENDING = "loaded", "pending"  # running / discovered, loads on its first request
    DISABLED, FAILED = "disabled", "failed"  # by manifest, settings or an admin / with its error


class HookTimeout(TimeoutError):
    """A hook did not finish in time."""


@dataclass(eq=False)
class Extension:
    """One discovered extension and what became of it."""

    candidate: Candidate
    granted: frozenset[Capability]
    state: ExtensionState
    error_type: str | None = None
    error: str | None = None
    traceback: str | None = None
    loaded_ms: int | None = None
    instance: Any = None
    mount: Mount | None = None
    requests_total: int = 0
    errors_total: int = 0
    latency_ms_sum: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def id(self) -> str:
        return self.candidate.key

    @property
    def requested(self) -> frozenset[Capability]:
        manifest = self.candidate.manifest
        return manifest.requested if manifest is not None else frozenset()

    def fail(self, error_type: str, message: str, trace: str | None = None) -> None:
        self.state = ExtensionState.FAILED
        self.error_type, self.error, self.traceback = error_type, message, trace


class ExtensionManager:
    """Discovers, loads, enables, disables and reports on extensions."""

    def __init__(
        self,
        settings: Settings,
        *,
        tools: ToolRegistry,
        streams: EventStreams,
        providers: Callable[[], ProviderRegistry | None] = lambda: None,
        builtin_dir: Path = BUILTIN_DIR,
    ) -> None:
        self.settings = settings
        self.tools = tools
        self.streams = streams
        self.providers = providers
        self.hook_timeout_s = settings.ext_hook_timeout_s
        self.extensions: dict[str, Extension] = {}
        self.duplicates: list[Extension] = []
        candidates, self.sources = discover(settings.ext_paths, builtin_dir=builtin_dir)
        for candidate in candidates:
            self._add(candidate)

    # -- discovery ------------------------------------------------------------------------

    def _add(self, candidate: Candidate) -> None:
        configured = self.settings.extensions.get(candidate.key, {})
        manifest = candidate.manifest
        if manifest is None:
            granted: frozenset[Capability] = frozenset()
        elif candidate.builtin:
            granted = manifest.requested
        else:
            granted = manifest.requested & frozenset(Capability(g) for g in configured.get("grants", ()))
        ext = Extension(candidate, granted, ExtensionState.PENDING)
        if candidate.key in self.extensions:
            first = self.extensions[candidate.key]
            ext.fail(
                "DuplicateExtension",
                f"id {candidate.key!r} is already provided by {first.candidate.source} "
                f"({first.candidate.location}); this one ({candidate.source}, "
                f"{candidate.location}) is ignored",
            )
            self.duplicates.append(ext)
            return
        self.extensions[candidate.key] = ext
        if manifest is None:
            ext.fail("ManifestError", candidate.problem or "invalid manifest")
        elif (problem := manifest.api_problem()) is not None:
            ext.fail("IncompatibleAPI", problem)
        elif not manifest.enabled or configured.get("enabled") is False:
            ext.state = ExtensionState.DISABLED
        if ext.state is ExtensionState.FAILED:
            log.warning(
                "an extension cannot be loaded",
                extra={"extension": ext.id, "error_type": ext.error_type, "error": ext.error},
            )

    def get(self, ext_id: str) -> Extension:
        found = self.extensions.get(ext_id)
        if found is None:
            raise NotFound(f"no extension {ext_id!r}", details={"extension_id": ext_id})
        return found

    # -- life cycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Load the eager extensions (each failure is recorded; the service starts anyway)."""
        for ext in list(self.extensions.values()):
            manifest = ext.candidate.manifest
            if manifest is not None and manifest.eager and ext.state is ExtensionState.PENDING:
                await self.ensure_loaded(ext.id)

    async def close_streams(self) -> None:
        """``on_shutdown``: end every open WebSocket and event stream of the extensions."""
        for ext in self.extensions.values():
            if ext.mount is not None:
                _close_streams(ext.mount)

    async def stop(self) -> None:
        for ext in reversed(list(self.extensions.values())):
            if ext.state is ExtensionState.LOADED:
                async with ext.lock:
                    await self._unload(ext)
                    ext.state = ExtensionState.PENDING

    async def ensure_loaded(self, ext_id: str) -> Extension:
        """Load a pending extension (its first request, or at start when eager)."""
        ext = self.get(ext_id)
        if ext.state is not ExtensionState.PENDING:
            return ext
        async with ext.lock:
            if ext.state is ExtensionState.PENDING:
                await self._load(ext)
        return ext

    async def enable(self, ext_id: str) -> Extension:
        ext = self.get(ext_id)
        async with ext.lock:
            if ext.state is ExtensionState.DISABLED or (
                ext.state is ExtensionState.FAILED and ext.error_type not in _PERMANENT
            ):
                ext.state = ExtensionState.PENDING
                ext.error_type = ext.error = ext.traceback = None
                await self._load(ext)
        return ext

    async def disable(self, ext_id: str) -> Extension:
        ext = self.get(ext_id)
        async with ext.lock:
            if ext.state is ExtensionState.LOADED:
                await self._unload(ext)
            if ext.state is not ExtensionState.FAILED or ext.error_type not in _PERMANENT:
                ext.state = ExtensionState.DISABLED
        return ext

    async def _hook(self, ext: Extension, name: str, *args: Any) -> Any:
        fn = getattr(ext.instance, name, None)
        if fn is None:
            return None
        try:
            async with asyncio.timeout(self.hook_timeout_s):
                result = fn(*args)
                if inspect.isawaitable(result):
                    result = await result
                return result
        except TimeoutError:
            raise HookTimeout(f"{name}() did not finish within {self.hook_timeout_s:g} s") from None

    async def _load(self, ext: Extension) -> None:
        started = time.perf_counter()
        assert ext.candidate.loader is not None and ext.candidate.manifest is not None
        mount = Mount(ext.id)
        try:
            factory = ext.candidate.loader()
            ext.instance = factory()
            if not callable(getattr(ext.instance, "setup", None)):
                raise TypeError("get_extension() must return an object with a setup(context) method")
            ext.mount = mount
            await self._hook(ext, "setup", self._context(ext, mount))
            await self._hook(ext, "on_startup")
        except Exception as exc:
            trace = traceback.format_exc()
            ext.fail(type(exc).__name__, str(exc) or type(exc).__name__, trace)
            log.error(
                "an extension failed to load",
                extra={"extension": ext.id, "error_type": ext.error_type, "error": ext.error},
            )
            log.debug("the extension's traceback", extra={"extension": ext.id, "traceback": trace})
            await self._teardown(mount)
            ext.mount = None
            return
        ext.state = ExtensionState.LOADED
        ext.loaded_ms = round((time.perf_counter() - started) * 1000)
        log.info("extension loaded", extra={"extension": ext.id, "loaded_ms": ext.loaded_ms})

    def _context(self, ext: Extension, mount: Mount) -> ExtensionContext:
        manifest = ext.candidate.manifest
        assert manifest is not None
        granted = ext.granted
        routes = RoutesHandle(mount, builtin=ext.candidate.builtin)
        registry = self.providers() if Capability.PROVIDERS in granted else None
        events_caps = {Capability.EVENTS_PUB, Capability.EVENTS_SUB}
        static = StaticHandle(routes, builtin=ext.candidate.builtin) if Capability.STATIC in granted else None
        return ExtensionContext(
            extension_id=ext.id,
            version=manifest.version,
            capabilities=granted,
            log=logging.getLogger(f"provisioning.ext.{ext.id}"),
            routes=routes if Capability.ROUTES in granted else None,
            tools=ScopedTools(self.tools, mount) if Capability.TOOLS in granted else None,
            events=EventsHandle(self.streams, mount, granted) if granted & events_caps else None,
            background=BackgroundHandle(mount) if Capability.BACKGROUND_TASKS in granted else None,
            providers=ProvidersHandle(registry, mount) if registry is not None else None,
            static=static,
        )

    async def _unload(self, ext: Extension) -> None:
        try:
            await self._hook(ext, "on_shutdown")
        except Exception as exc:
            log.error(
                "an extension's on_shutdown failed",
                extra={"extension": ext.id, "error_type": type(exc).__name__, "error": str(exc)},
            )
        if ext.mount is not None:
            await self._teardown(ext.mount)
        ext.mount = None
        ext.instance = None

    async def _teardown(self, mount: Mount) -> None:
        """Undo every registration of a mount: streams, tasks, subscriptions, tools, providers."""
        _close_streams(mount)
        await cancel_all(*mount.tasks.values())
        mount.tasks.clear()
        await self.streams.drop_owner(mount.ext_id)
        mount.subscriptions.clear()
        for name in mount.tools:
            self.tools.unregister(name)
        mount.tools.clear()
        registry = self.providers()
        if registry is not None:
            for name in mount.providers:
                registry.providers.pop(name, None)
        mount.providers.clear()
        mount.router = web.UrlDispatcher()
        mount.specs.clear()

    # -- reports --------------------------------------------------------------------------

    def observe(
        self, ext_id: str, endpoint: str, method: str, status: int, elapsed_s: float, error_type: str | None
    ) -> None:
        """Count one request to an extension route."""
        EXTENSION_REQUESTS.labels(ext_id, endpoint, method, str(status)).inc()
        EXTENSION_LATENCY.labels(ext_id, endpoint, method).observe(elapsed_s)
        ext = self.extensions.get(ext_id)
        if ext is not None:
            ext.requests_total += 1
            ext.latency_ms_sum += elapsed_s * 1000
        if error_type is not None:
            EXTENSION_ERRORS.labels(ext_id, endpoint, error_type).inc()
            if ext is not None:
                ext.errors_total += 1

    @staticmethod
    def connection(ext_id: str, endpoint: str, delta: int) -> None:
        EXTENSION_CONNECTIONS.labels(ext_id, endpoint).inc(delta)

    def status(self) -> dict[str, Any]:
        """``GET /ext/status``: the seed's shape, plus each extension's source and requests."""
        entries = {ext.id: self.entry(ext) for ext in self.extensions.values()}
        states = [ext.state for ext in self.extensions.values()]
        return {
            "extensions": entries,
            "duplicates": [self.entry(ext) for ext in self.duplicates],
            "discovery_sources": list(self.sources),
            "total_extensions": len(entries) + len(self.duplicates),
            "loaded_extensions": states.count(ExtensionState.LOADED),
            "failed_extensions": states.count(ExtensionState.FAILED) + len(self.duplicates),
        }

    def entry(self, ext: Extension) -> dict[str, Any]:
        manifest = ext.candidate.manifest
        info = {
            "id": ext.id,
            "name": manifest.name if manifest else ext.id,
            "version": manifest.version if manifest else "",
            "description": manifest.description if manifest else "",
        }
        out: dict[str, Any] = {
            "state": ext.state.value,
            "info": info,
            "capabilities": sorted(c.value for c in ext.granted),
            "requested": sorted(c.value for c in ext.requested),
            "source": ext.candidate.source,
            "eager": bool(manifest and manifest.eager),
            "loaded_ms": ext.loaded_ms,
            "metrics": {
                "requests_total": float(ext.requests_total),
                "errors_total": float(ext.errors_total),
                "latency_ms_sum": round(ext.latency_ms_sum, 3),
            },
        }
        if ext.state is ExtensionState.FAILED:
            out["error_type"] = ext.error_type
            out["error"] = ext.error
            if ext.traceback and self.settings.log_level == "DEBUG":  # tracebacks name code and paths
                out["traceback"] = ext.traceback
        return out

    async def health(self, ext_id: str) -> dict[str, Any]:
        """``GET /ext/{id}/health``: ``{status, timestamp, version, checks}``."""
        ext = self.get(ext_id)
        manifest = ext.candidate.manifest
        checks: dict[str, str] = {}
        status = "healthy"
        if ext.state is not ExtensionState.LOADED:
            status = ext.state.value
        else:
            if ext.mount is not None and ext.mount.task_errors:
                checks["background_tasks"] = "unhealthy"
                status = "unhealthy"
            elif ext.mount is not None and ext.mount.tasks:
                checks["background_tasks"] = "healthy"
            try:
                own = await self._hook(ext, "health")
            except Exception as exc:
                own = {"health": f"unhealthy: {type(exc).__name__}"}
            if isinstance(own, dict):
                for name, value in own.items():
                    checks[str(name)[:80]] = str(value)[:200]
            if any(v.startswith("unhealthy") for v in checks.values()):
                status = "unhealthy"
        return {
            "status": status,
            "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "version": manifest.version if manifest else "",
            "checks": checks,
        }


def _close_streams(mount: Mount) -> None:
    """Tell the mount's WebSockets and event streams to end: each closes itself (1001 for a
    WebSocket, see ``RoutesHandle.websocket``) without holding up the caller."""
    mount.closing.set()


# Failures that enabling again cannot cure: the manifest, the API fence, a duplicate id.
_PERMANENT = frozenset({"ManifestError", "IncompatibleAPI", "DuplicateExtension"})
