"""How a service's ``web.Application`` is put together, the same way for both."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from shared.auth import AUTH_BACKEND, AuthBackend, OpenAccess, auth_middleware
from shared.events import EventBus
from shared.http import SERVICE_KEY, Api, request_context_middleware, version_middleware
from shared.keys import BUS, SETTINGS, STORE
from shared.settings import Settings
from shared.store import Store

log = logging.getLogger(__name__)


def open_store(settings: Settings) -> Store:
    """A store for the configured URL; the embedded file engine gets the directory lock."""
    lock_dir = settings.data_dir.resolve() if settings.is_embedded_file_store else None
    return Store(
        settings.resolved_db_url,
        namespace=settings.db_namespace,
        database=settings.db_database,
        lock_dir=lock_dir,
        write_batch_max=settings.write_batch_max,
    )


def base_app(
    settings: Settings,
    *,
    service: str,
    api: Api,
    store: Store | None = None,
    bus: EventBus | None = None,
    auth: AuthBackend | None = None,
) -> web.Application:
    """An app with the shared middlewares, keys and routes; opens its own store if not given."""
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[request_context_middleware, version_middleware, auth_middleware],
    )
    app[SERVICE_KEY] = service
    app[SETTINGS] = settings
    app[BUS] = bus or EventBus(settings.event_retention_count, settings.event_retention_s)
    if auth is None:
        auth = OpenAccess()
        log.warning(
            "authentication is not configured: every request is admitted",
            extra={"service": service},
        )
    app[AUTH_BACKEND] = auth
    if store is not None:
        app[STORE] = store
    else:
        async def store_ctx(app: web.Application) -> AsyncIterator[None]:
            own = open_store(settings)
            await own.open()
            app[STORE] = own
            yield
            await own.close()

        app.cleanup_ctx.append(store_ctx)
    api.register(app)
    return app
