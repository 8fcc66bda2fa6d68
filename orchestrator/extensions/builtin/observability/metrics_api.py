"""``GET /ext/observability/metrics``."""

from __future__ import annotations

from aiohttp import web

from shared.web.openapi import PROMETHEUS_TEXT, metrics_response
from shared.web.routing import Api

api = Api()


@api.route(
    "GET",
    "/metrics",
    public=True,
    summary="Prometheus metrics, extension metrics included",
    media={PROMETHEUS_TEXT: {"schema": {"type": "string", "description": "Prometheus text format"}}},
    errors=(401,),  # only when PROVISIONING_METRICS_TOKEN is set
)
async def metrics(request: web.Request) -> web.Response:
    """The orchestrator's metrics (``extension_*`` among them), as ``/metrics`` serves them."""
    return metrics_response(request)
