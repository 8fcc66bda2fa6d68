"""The observability extension: the product's metrics under ``/ext/observability/``."""

from __future__ import annotations

from orchestrator.extensions.builtin.observability import metrics_api
from orchestrator.extensions.context import ExtensionContext


class Observability:
    def setup(self, context: ExtensionContext) -> None:
        assert context.routes is not None  # granted by the manifest
        context.routes.include(metrics_api.api)


def get_extension() -> Observability:
    return Observability()
