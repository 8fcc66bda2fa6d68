"""``/ws`` and ``/events``: the orchestrator's live stream of task, batch and rollback events."""

from __future__ import annotations

from orchestrator.events import VOCABULARY
from shared.events.streams import StreamConfig, stream_api

# Connecting needs workflows:read; each kind of event then needs its own permission.
CONFIG = StreamConfig(VOCABULARY, resource="workflows", action="read")

api = stream_api(CONFIG)
