"""Metrics every extension gets, whatever it does (``/ext/observability/metrics`` and the
orchestrator's ``/metrics`` show them). ``endpoint`` is the route's template
(``/ext/hello/greet/{name}``), so the label set stays bounded."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EXTENSION_REQUESTS = Counter(
    "extension_requests",
    "Requests to extension routes by extension, endpoint, method and status",
    ["extension", "endpoint", "method", "status"],
)  # exported as extension_requests_total
EXTENSION_LATENCY = Histogram(
    "extension_request_duration_seconds",
    "Latency of extension routes by extension, endpoint and method",
    ["extension", "endpoint", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
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
