"""``create_app(settings)`` for the orchestrator."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from orchestrator.api import batch, events, rollback, state, tasks
from orchestrator.checkpoints import Checkpoints
from orchestrator.engine import Engine
from orchestrator.events import VOCABULARY
from orchestrator.extensions import mount_api
from orchestrator.extensions.manager import ExtensionManager
from orchestrator.extensions.repository import StreamRepository
from orchestrator.extensions.streams import EventStreams, RedisStreams, StoreStreams, StreamBackend
from orchestrator.journal import OutboxHook
from orchestrator.keys import CHECKPOINTS, ENGINE, EXTENSIONS, ROLLBACKS, STATE, WORKFLOWS
from orchestrator.mcp.http_api import document_mcp, well_known_api
from orchestrator.product_tools import product_tools
from orchestrator.repository import InventoryRepository, Repository
from orchestrator.retention import retention_ctx
from orchestrator.rollback import RollbackService
from orchestrator.state import StateService
from orchestrator.tools import TOOLS, ToolRegistry
from orchestrator.workflows import WorkflowService
from shared.events.bus import EventBus
from shared.events.streams import install as install_streams
from shared.security.audit import AUDIT
from shared.security.auth import AUTH_BACKEND, AuthBackend
from shared.settings import Settings
from shared.store.store import Store
from shared.web.app import base_app
from shared.web.keys import BUS, SETTINGS, STORE
from shared.web.openapi import add_standard_routes
from shared.web.routing import Api
from shared.webhooks.dispatcher import DISPATCHER, dispatcher_ctx

HEALTH_MESSAGE = "Orchestrator is healthy"


def build_api() -> Api:
    """The orchestrator's routes (extensions' routes, MCP's included, are mounted under
    ``/ext/`` by :mod:`orchestrator.extensions.mount_api`)."""
    api = Api()

    async def health(request: web.Request) -> str:
        return HEALTH_MESSAGE

    def customize(request: web.Request, doc: dict[str, Any]) -> None:
        mount_api.document_extensions(request, doc)
        document_mcp(doc)  # the mcp_http built-in's endpoint, as it really answers

    add_standard_routes(api, title="provisioning orchestrator", health=health, customize=customize)
    for module in (tasks, batch, state, rollback, events, mount_api):
        api.include(module.api)
    api.include(well_known_api)
    return api


def create_app(
    settings: Settings,
    *,
    store: Store | None = None,
    bus: EventBus | None = None,
    auth: AuthBackend | None = None,
    outbox: OutboxHook | None = None,
) -> web.Application:
    """The orchestrator; opens its own store unless one is shared, and resumes workflows."""
    registry = ToolRegistry()
    app = base_app(settings, service="orchestrator", api=build_api(), store=store, bus=bus, auth=auth)
    registry.bind(app[AUTH_BACKEND], app[AUDIT])
    for tool in product_tools(app):
        registry.register(tool)
    app[TOOLS] = registry

    async def engine_ctx(app: web.Application) -> AsyncIterator[None]:
        hook = outbox if outbox is not None else app[DISPATCHER].outbox
        engine = Engine(app[SETTINGS], app[STORE], app[BUS], rollbacks=RollbackService, outbox=hook)
        app[ENGINE] = engine
        app[ROLLBACKS] = engine.rollbacks
        app[CHECKPOINTS] = Checkpoints(engine)
        repo = Repository(app[STORE], answers_kept=app[SETTINGS].list_answers_kept)
        app[WORKFLOWS] = WorkflowService(engine, repo, max_age_s=app[SETTINGS].live_document_max_age_s)
        app[STATE] = StateService(
            app[SETTINGS], repo, InventoryRepository(app[STORE]), coordinator_healthy=lambda: engine.healthy
        )
        await engine.start()
        yield
        await app[WORKFLOWS].close()  # the finished documents being kept in the store
        await engine.stop()

    async def extensions_ctx(app: web.Application) -> AsyncIterator[None]:
        """After the engine (extensions may register providers); stopped before it."""
        settings = app[SETTINGS]
        backend: StreamBackend
        if settings.events_redis_url:
            backend = RedisStreams(settings.events_redis_url, keep=settings.ext_event_retention_count)
        else:
            backend = StoreStreams(
                StreamRepository(app[STORE]),
                keep=settings.ext_event_retention_count,
                max_age_s=settings.ext_event_retention_s,
            )
        streams = EventStreams(backend, max_event_bytes=settings.ext_event_max_bytes)
        await streams.start()
        manager = ExtensionManager(
            settings, tools=app[TOOLS], streams=streams, providers=lambda: app[ENGINE].registry
        )
        app[EXTENSIONS] = manager
        await manager.start()
        yield
        await manager.stop()
        await streams.stop()

    async def close_extension_streams(app: web.Application) -> None:
        manager = app.get(EXTENSIONS)
        if manager is not None:
            await manager.close_streams()

    mount_api.mount(app)
    app.on_shutdown.append(close_extension_streams)
    app[BUS].registry.register(VOCABULARY)
    install_streams(app, events.CONFIG)
    app.cleanup_ctx.append(dispatcher_ctx)  # before the engine: see dispatcher_ctx
    app.cleanup_ctx.append(engine_ctx)
    app.cleanup_ctx.append(retention_ctx)  # after the engine: it has caught up with the journal
    app.cleanup_ctx.append(extensions_ctx)
    return app
