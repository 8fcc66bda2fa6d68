"""The composition root: ``build_apps`` builds the chosen services on one store and bus."""

from __future__ import annotations

import pytest

from provisioning.server import build_apps
from shared.events.bus import EventBus
from shared.settings import Settings
from shared.store.store import Store
from shared.web.keys import BUS, SERVICE_KEY, STORE


def test_both_apps_share_one_store_and_one_bus_and_start_control_center_first(
    settings: Settings, store: Store
) -> None:
    bus = EventBus()
    apps = build_apps(settings, store, bus)
    order = apps.in_start_order()
    assert [name for name, _ in order] == ["control_center", "orchestrator"]
    for name, app in order:
        assert app[STORE] is store and app[BUS] is bus and app[SERVICE_KEY] == name


def test_one_service_alone_and_an_unknown_one_refused(settings: Settings, store: Store) -> None:
    apps = build_apps(settings, store, EventBus(), ("orchestrator",))
    assert apps.control_center is None and apps.orchestrator is not None
    with pytest.raises(ValueError, match="unknown services"):
        build_apps(settings, store, EventBus(), ("orchestrator", "registry"))
