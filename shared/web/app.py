"""How a service's ``web.Application`` is put together, the same way for both."""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from aiohttp import web

from shared.events.bus import EventBus
from shared.security.audit import AUDIT, audit_middleware
from shared.security.auth import AUTH_BACKEND, AuthBackend, OpenAccess, auth_middleware
from shared.security.backend import SECURITY, security_for
from shared.security.ratelimit import RATE_LIMITS, rate_limit_headers_middleware, rate_limit_middleware
from shared.settings import Settings
from shared.store.fsperms import secure_data_dir
from shared.store.scans import apply_fetch_size
from shared.store.secrets import load_secret_box
from shared.store.store import Store
from shared.web.cors import cors_middleware
from shared.web.keys import BUS, SERVICE_KEY, SETTINGS, STORE
from shared.web.middlewares import request_context_middleware, secure_response_headers, version_middleware
from shared.web.routing import Api

log = logging.getLogger(__name__)


def open_store(settings: Settings) -> Store:
    """A store for the configured URL, with the key that seals its secrets; the embedded
    file engine gets the directory lock and a private data directory: umask ``077``
    before it creates anything, the directory checked and repaired (a warning per
    path someone widened), and quietly again right after the engine connects (it
    makes its own directories ``0750`` at every open)."""
    secrets = load_secret_box(settings)
    lock_dir = None
    after_connect: Callable[[], None] | None = None
    if settings.is_embedded_file_store:
        secure_data_dir(settings)
        after_connect = functools.partial(secure_data_dir, settings, quiet=True)
        # Lock the directory that holds the database actually opened, wherever the URL
        # points, so two processes can never share one embedded store unknowingly.
        url = settings.resolved_db_url
        lock_dir = Path(url.split("://", 1)[1]).resolve().parent
    apply_fetch_size(settings.store_scan_fetch_size)
    return Store(
        settings.resolved_db_url,
        namespace=settings.db_namespace,
        database=settings.db_database,
        lock_dir=lock_dir,
        write_batch_max=settings.write_batch_max,
        lazy_delay_s=settings.row_apply_idle_s,
        lazy_max_age_s=settings.row_apply_max_age_s,
        lazy_unsettled_max_age_s=settings.row_apply_unsettled_max_age_s,
        list_scan_budget=settings.list_scan_budget,
        secrets=secrets,
        after_connect=after_connect,
        sync_commits=settings.sync_commits,
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
    """An app with the shared middlewares, keys and routes; opens its own store if not given.

    Security (tokens, policy, audit, rate limits) is shared by every app on the same
    ``store``. With ``settings.auth_enabled`` its backend guards every non-public
    route and the rate limits apply; without it everyone is admitted (development)
    but changes are still audited.
    """
    security = security_for(settings, store)
    # CORS inside the error envelope (refused preflights are envelopes too, allowed
    # origins can read errors) and outside audit (a preflight is not an action).
    middlewares = [request_context_middleware, cors_middleware, version_middleware, audit_middleware]
    if settings.auth_enabled:
        # Outside auth, so that refused credentials get rate-limit headers too.
        middlewares.append(rate_limit_headers_middleware)
    middlewares.append(auth_middleware)
    if settings.auth_enabled:
        middlewares.append(rate_limit_middleware)
    app = web.Application(client_max_size=settings.max_body_bytes, middlewares=middlewares)
    app.on_response_prepare.append(secure_response_headers)
    app[SERVICE_KEY] = service
    app[SETTINGS] = settings
    app[BUS] = bus or EventBus(settings.event_retention_count, settings.event_retention_s)
    app[SECURITY] = security
    app[AUDIT] = security.audit
    app[RATE_LIMITS] = security.rate_limits
    if auth is None and settings.auth_enabled:
        auth = security.backend
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
    app.cleanup_ctx.append(security.ctx)
    api.register(app)
    return app
