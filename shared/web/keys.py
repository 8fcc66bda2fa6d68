"""Typed application keys shared by both services."""

from __future__ import annotations

from aiohttp import web

from shared.events.bus import EventBus
from shared.settings import Settings
from shared.store.store import Store

SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", Store)
BUS = web.AppKey("bus", EventBus)
SERVICE_KEY = web.AppKey("service_name", str)
