"""An engine on an in-memory store, started and stopped (no fixtures here)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from orchestrator.engine import Engine
from orchestrator.rollback import RollbackService
from shared.events.bus import EventBus
from shared.settings import load_settings
from shared.store.store import Store


async def running_engine(**settings: Any) -> AsyncIterator[Engine]:
    """Yield a started engine on ``mem://`` with these settings; stop both after."""
    store = Store("mem://")
    await store.open()
    engine = Engine(load_settings(db_url="mem://", **settings), store, EventBus(), rollbacks=RollbackService)
    await engine.start()
    yield engine
    await engine.stop()
    await store.close()
