"""Metrics every extension gets, whatever it does (``/ext/observability/metrics`` and the
orchestrator's ``/metrics`` show them). ``endpoint`` is the route's template
(``/ext/hello/greet/{name}``), so the label set stays bounded."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from shared.metrics import LATENCY_BUCKETS_S

EXTENSION_REQUESTS = Counter(
    "extension_requests",
    "Requests to extension routes by extension, endpoint, method and status",
    ["extension", "endpoint", "method", "status"],
)  # exported as extension_requests_total
_ROUTE = ["extension", "endpoint", "method"]
EXTENSION_LATENCY = Histogram(
    "extension_request_duration_seconds", "Latency of extension routes", _ROUTE, buckets=LATENCY_BUCKETS_S
)
EXTENSION_ERRORS = Counter(
    "extension_errors",
    "Extension requests answered with an error, by error type (the envelope's code)",
    ["extension", "endpoint", "error_type"],
)  # exported as extension_errors_total
EXTENSION_CONNECTIONS = Gauge(
    "extension_active_connections",
    "Open WebSocket and event-stream connections of extension routes",
    ["extension", "endpoint"],
)
