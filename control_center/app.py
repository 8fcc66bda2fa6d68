"""``create_app(settings)`` for the control center."""

from __future__ import annotations

from aiohttp import web

from shared.app import base_app
from shared.events import EventBus
from shared.http import Api, add_standard_routes
from shared.settings import Settings
from shared.store import Store


def build_api() -> Api:
    api = Api()

    async def health(request: web.Request) -> str:
        return "Control Center is healthy"

    add_standard_routes(api, title="provisioning control center", health=health)
    return api


def create_app(
    settings: Settings, *, store: Store | None = None, bus: EventBus | None = None
) -> web.Application:
    """The control center application; opens its own store unless one is shared."""
    return base_app(settings, service="control_center", api=build_api(), store=store, bus=bus)
