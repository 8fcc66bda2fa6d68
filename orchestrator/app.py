"""``create_app(settings)`` for the orchestrator."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from orchestrator.api import batch, events, rollback, state, tasks
from orchestrator.checkpoints import Checkpoints
from orchestrator.engine import Engine
from orchestrator.events import VOCABULARY
from orchestrator.journal import OutboxHook
from orchestrator.keys import CHECKPOINTS, ENGINE, ROLLBACKS, STATE, WORKFLOWS
from orchestrator.repository import InventoryRepository, Repository
from orchestrator.rollback import RollbackService
from orchestrator.state import StateService
from orchestrator.workflows import WorkflowService
from shared.events.bus import EventBus
from shared.events.streams import install as install_streams
from shared.security.auth import AuthBackend
from shared.settings import Settings
from shared.store.store import Store
from shared.web.app import base_app
from shared.web.keys import BUS, SETTINGS, STORE
from shared.web.openapi import add_standard_routes
from shared.web.routing import Api
from shared.webhooks.dispatcher import DISPATCHER, dispatcher_ctx

HEALTH_MESSAGE = "Orchestrator is healthy"


def build_api() -> Api:
    api = Api()

    async def health(request: web.Request) -> str:
        return HEALTH_MESSAGE

    add_standard_routes(api, title="provisioning orchestrator", health=health)
    for module in (tasks, batch, state, rollback, events):
        api.include(module.api)
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
    app = base_app(settings, service="orchestrator", api=build_api(), store=store, bus=bus, auth=auth)

    async def engine_ctx(app: web.Application) -> AsyncIterator[None]:
        hook = outbox if outbox is not None else app[DISPATCHER].outbox
        engine = Engine(app[SETTINGS], app[STORE], app[BUS], rollbacks=RollbackService, outbox=hook)
        app[ENGINE] = engine
        app[ROLLBACKS] = engine.rollbacks
        app[CHECKPOINTS] = Checkpoints(engine)
        repo = Repository(app[STORE])
        app[WORKFLOWS] = WorkflowService(engine, repo, max_age_s=app[SETTINGS].live_document_max_age_s)
        app[STATE] = StateService(
            app[SETTINGS], repo, InventoryRepository(app[STORE]), coordinator_healthy=lambda: engine.healthy
        )
        await engine.start()
        yield
        await engine.stop()

    app[BUS].registry.register(VOCABULARY)
    install_streams(app, events.CONFIG)
    app.cleanup_ctx.append(dispatcher_ctx)  # before the engine: see dispatcher_ctx
    app.cleanup_ctx.append(engine_ctx)
    return app
