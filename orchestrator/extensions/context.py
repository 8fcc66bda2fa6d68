"""What an extension is given: an :class:`ExtensionContext` holding one handle per
capability it was granted, and nothing else (no app, no store, no settings).

* ``routes`` (``ROUTES``): routes under ``/ext/{id}/`` declared with
  :class:`shared.web.routing.Api` (documented in the OpenAPI document) or as plain aiohttp
  route definitions, and WebSockets under ``/ext/{id}/ws/{path}``;
* ``tools`` (``TOOLS``): the shared tool registry, where it registers only ``ext.{id}.*``
  tools (resource ``ext:{id}``, action ``invoke``), and lists, gets and calls any tool;
* ``events`` (``EVENTS_PUB`` / ``EVENTS_SUB``): named event streams;
* ``background`` (``BACKGROUND_TASKS``): named tasks, cancelled with the extension;
* ``providers`` (``PROVIDERS``): orchestrator providers that batches can name;
* ``static`` (``STATIC``): a directory served under ``/ext/{id}/static/``.

A handle not granted is ``None``; :meth:`ExtensionContext.require` says which
capability is missing in the product's error envelope. Everything a handle registers
is recorded in the extension's :class:`Mount` and undone when it is disabled, fails or
the service stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pydantic
from aiohttp import web

from orchestrator.extensions.manifest import Capability
from orchestrator.extensions.streams import (
    EventStreams,
    Handler,
    StreamEvent,
    Subscription,
    check_stream,
    parse_event_id,
)
from orchestrator.providers.base import Provider
from orchestrator.providers.registry import ProviderRegistry
from orchestrator.tools import Tool, ToolCall, ToolRegistry
from shared.errors import Forbidden, NotFound
from shared.web.routing import RouteSpec

if TYPE_CHECKING:  # the handles that see requests live in routes_api, which imports this module
    from orchestrator.extensions.routes_api import RoutesHandle, StaticHandle

log = logging.getLogger(__name__)

ACTIONS = ("read", "write", "invoke")
RESERVED_PATHS = ("/health",)  # answered by the framework for every extension
EXTENSION_ATTR = "__extension__"  # the extension id, on the handlers of extension routes
WS_CLOSE_GOING_AWAY = 1001


class CapabilityMissing(Forbidden):
    """An extension used a capability it was not granted."""

    code = "capability_missing"


async def cancel_all(*tasks: asyncio.Future[Any] | None) -> None:
    """Cancel these tasks and wait for them, whatever they end with."""
    for task in tasks:
        if task is not None and not task.done():
            task.cancel()
    for task in tasks:
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration, Exception):
                await task


def _denied(capability: Capability, granted: Iterable[Capability]) -> CapabilityMissing:
    names = sorted(c.value for c in granted)
    return CapabilityMissing(
        f"this extension was not granted {capability.value}",
        details={"required_capability": capability.value, "granted_capabilities": names},
    )


@dataclass(eq=False)
class Mount:
    """Everything one loaded extension registered, to undo it."""

    ext_id: str
    router: web.UrlDispatcher = field(default_factory=web.UrlDispatcher)
    specs: list[RouteSpec] = field(default_factory=list)  # documented routes
    tools: list[str] = field(default_factory=list)
    subscriptions: list[Subscription] = field(default_factory=list)
    tasks: dict[str, asyncio.Task[Any]] = field(default_factory=dict)
    task_errors: dict[str, str] = field(default_factory=dict)
    providers: list[str] = field(default_factory=list)
    sockets: set[web.WebSocketResponse] = field(default_factory=set)
    closing: asyncio.Event = field(default_factory=asyncio.Event)  # set: end every open stream


class ScopedTools(ToolRegistry):
    """The shared registry as an extension sees it (``TOOLS``): it registers and removes
    only its own ``ext.{id}.*`` tools; listing, reading and calling go to the registry
    (each call authorized for its caller)."""

    def __init__(self, registry: ToolRegistry, mount: Mount) -> None:  # no super(): a view
        self._registry = registry
        self._mount = mount
        self.prefix = f"ext.{mount.ext_id}."
        self.resource = f"ext:{mount.ext_id}"

    def tool(
        self,
        name: str,
        description: str,
        input_model: type[pydantic.BaseModel],
        handler: Callable[[ToolCall, pydantic.BaseModel], Awaitable[Any]],
        output_schema: dict[str, Any] | None = None,
    ) -> Tool:
        """Register ``ext.{id}.{name}`` (resource ``ext:{id}``, action ``invoke``)."""
        built = Tool(
            self.prefix + name, description, input_model, handler, self.resource, "invoke", output_schema
        )
        self.register(built)
        return built

    def register(self, tool: Tool) -> None:
        if not tool.name.startswith(self.prefix) or len(tool.name) == len(self.prefix):
            raise ValueError(f"an extension's tools are named {self.prefix}<name>, not {tool.name!r}")
        if tool.resource != self.resource or tool.action != "invoke":
            raise ValueError(f"an extension's tools are authorized as {self.resource}:invoke")
        self._registry.register(tool)
        self._mount.tools.append(tool.name)

    def unregister(self, name: str) -> None:
        if name not in self._mount.tools:
            raise ValueError(f"{name!r} is not one of this extension's tools")
        self._mount.tools.remove(name)
        self._registry.unregister(name)

    def get(self, name: str) -> Tool | None:
        return self._registry.get(name)

    def list(self) -> list[Tool]:
        return self._registry.list()

    async def call(self, name: str, arguments: dict[str, Any], call: ToolCall) -> Any:
        return await self._registry.call(name, arguments, call)


class EventsHandle:
    """Named event streams (``EVENTS_PUB`` to publish, ``EVENTS_SUB`` to subscribe and read)."""

    def __init__(self, streams: EventStreams, mount: Mount, granted: frozenset[Capability]) -> None:
        self._streams = streams
        self._mount = mount
        self._granted = granted

    def _need(self, capability: Capability) -> None:
        if capability not in self._granted:
            raise _denied(capability, self._granted)

    async def publish(self, stream: str, data: dict[str, Any]) -> str:
        """Append an event; its id (``<ms>-<seq>``) once it is durable."""
        self._need(Capability.EVENTS_PUB)
        return (await self._streams.publish(stream, data)).id

    async def subscribe(self, pattern: str, handler: Handler) -> None:
        """Call ``handler`` with each event of the streams ``pattern`` matches (``*``, ``?``)."""
        self._need(Capability.EVENTS_SUB)
        self._mount.subscriptions.append(await self._streams.subscribe(self._mount.ext_id, pattern, handler))

    async def unsubscribe(self, pattern: str) -> None:
        self._need(Capability.EVENTS_SUB)
        await self._streams.unsubscribe(self._mount.ext_id, pattern)
        self._mount.subscriptions = [s for s in self._mount.subscriptions if s.pattern != pattern]

    def read(self, stream: str, after: str | None = None) -> AsyncIterator[StreamEvent]:
        """``stream``'s events after ``after`` (``None``: new ones only), then live ones;
        the iteration ends when the extension is disabled or the service stops."""
        self._need(Capability.EVENTS_SUB)
        check_stream(stream)
        if after is not None:
            parse_event_id(after)
        return self._until_closed(self._streams.tail(stream, after))

    async def _until_closed(self, source: AsyncGenerator[StreamEvent, None]) -> AsyncIterator[StreamEvent]:
        closing = asyncio.ensure_future(self._mount.closing.wait())
        following: asyncio.Future[StreamEvent] | None = None
        try:
            while True:
                following = asyncio.ensure_future(anext(source))
                done, _ = await asyncio.wait({following, closing}, return_when=asyncio.FIRST_COMPLETED)
                if following not in done:
                    return
                event = following.result()
                following = None
                yield event
        except StopAsyncIteration:
            return
        finally:
            await cancel_all(following, closing)
            await source.aclose()


@dataclass(frozen=True)
class TaskInfo:
    name: str
    state: str  # running | done | failed | cancelled
    error: str | None = None


class BackgroundHandle:
    """Named long-running tasks (``BACKGROUND_TASKS``), cancelled with the extension."""

    def __init__(self, mount: Mount) -> None:
        self._mount = mount

    async def start_task(self, name: str, coro: Coroutine[Any, Any, Any]) -> None:
        tasks = self._mount.tasks
        if name in tasks and not tasks[name].done():
            coro.close()
            raise ValueError(f"a task named {name!r} is already running")
        task = asyncio.create_task(coro, name=f"ext-{self._mount.ext_id}-{name}")
        tasks[name] = task
        self._mount.task_errors.pop(name, None)

        def finished(done: asyncio.Task[Any]) -> None:
            if not done.cancelled() and done.exception() is not None:
                exc = done.exception()
                self._mount.task_errors[name] = f"{type(exc).__name__}: {exc}"
                log.error(
                    "an extension's background task failed",
                    extra={"extension": self._mount.ext_id, "task": name, "error": str(exc)},
                )

        task.add_done_callback(finished)

    async def stop_task(self, name: str) -> None:
        task = self._mount.tasks.pop(name, None)
        if task is None:
            raise NotFound(f"no task named {name!r}")
        await cancel_all(task)

    def list_tasks(self) -> list[TaskInfo]:
        out = []
        for name, task in sorted(self._mount.tasks.items()):
            if not task.done():
                out.append(TaskInfo(name, "running"))
            elif task.cancelled():
                out.append(TaskInfo(name, "cancelled"))
            elif name in self._mount.task_errors:
                out.append(TaskInfo(name, "failed", self._mount.task_errors[name]))
            else:
                out.append(TaskInfo(name, "done"))
        return out


class ProvidersHandle:
    """Orchestrator providers (``PROVIDERS``): batches name them as ``provider``."""

    def __init__(self, registry: ProviderRegistry, mount: Mount) -> None:
        self._registry = registry
        self._mount = mount

    def register(self, name: str, provider: Provider) -> None:
        if name in self._registry.providers:
            raise ValueError(f"a provider named {name!r} already exists")
        for method in ("apply", "rollback", "check", "describe"):
            if not callable(getattr(provider, method, None)):
                raise ValueError(f"provider {name!r} has no {method}()")
        self._registry.providers[name] = provider
        self._mount.providers.append(name)

    def unregister(self, name: str) -> None:
        if name not in self._mount.providers:
            raise ValueError(f"{name!r} is not one of this extension's providers")
        self._mount.providers.remove(name)
        self._registry.providers.pop(name, None)

    def names(self) -> list[str]:
        return self._registry.known_names()


@dataclass(frozen=True)
class ExtensionContext:
    """One extension's view of the product: its granted handles, and nothing else."""

    extension_id: str
    version: str
    capabilities: frozenset[Capability]
    log: logging.Logger
    routes: RoutesHandle | None = None
    tools: ScopedTools | None = None
    events: EventsHandle | None = None
    background: BackgroundHandle | None = None
    providers: ProvidersHandle | None = None
    static: StaticHandle | None = None

    def require(self, capability: Capability) -> None:
        """Raise the product's 403 (``capability_missing``) unless ``capability`` was granted."""
        if capability not in self.capabilities:
            raise _denied(capability, self.capabilities)
