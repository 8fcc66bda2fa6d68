"""The events demo extension: named event streams over HTTP."""

from __future__ import annotations

from orchestrator.extensions.builtin.events_demo import events_api
from orchestrator.extensions.context import ExtensionContext


class EventsDemo:
    def setup(self, context: ExtensionContext) -> None:
        assert context.routes is not None and context.events is not None  # granted by the manifest
        context.routes.include(events_api.build_api(context.events))


def get_extension() -> EventsDemo:
    return EventsDemo()
