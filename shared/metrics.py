"""Prometheus metrics for both services.

Every metric lives in the process-wide registry, but each service's
``/metrics`` shows only its own share, so a Prometheus scraping both counts
nothing twice: samples labelled ``service`` appear on that service alone, and
everything else (``process_*``, ``python_*``, engine, store, bus and webhook
metrics) on one service of the process: the orchestrator when it runs in the
process, otherwise the control center (see :func:`set_process_metrics_owner`).
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

# Request latency buckets (seconds), shared by every request histogram.
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
HTTP_REQUESTS = Counter(
    "http_requests_total",
    "HTTP requests by service, route, method and status",
    ["service", "route", "method", "status"],
)
HTTP_LATENCY = Histogram(
    "http_request_duration_seconds",
    "HTTP request latency by service, route and method",
    ["service", "route", "method"],
    buckets=LATENCY_BUCKETS_S,
)
TASKS_TOTAL = Counter(
    "orchestrator_tasks", "Total number of tasks by final status", ["status"]
)  # exported as orchestrator_tasks_total
TASK_DURATION = Histogram(
    "orchestrator_task_duration_seconds",
    "Task execution duration",
    buckets=(0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)
WORKFLOWS_ACTIVE = Gauge("orchestrator_workflows_active", "Workflows currently running")
STORE_COMMITS = Counter("store_commits_total", "Group commits written to the store")
EVENTS_PUBLISHED = Counter("events_published_total", "Events published on the bus", ["type"])
WEBSOCKET_CONNECTIONS = Gauge(
    "websocket_connections", "Open event streams (WebSocket and SSE)", ["service", "transport"]
)
WEBHOOK_DELIVERIES = Counter(
    "webhook_deliveries",
    "Webhook delivery attempts by result (delivered, retrying, failed)",
    ["result"],
)  # exported as webhook_deliveries_total
WEBHOOK_DELIVERY_SECONDS = Histogram(
    "webhook_delivery_seconds",
    "Time from sending a webhook to its endpoint's answer",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
WEBHOOK_OUTBOX_PENDING = Gauge("webhook_outbox_pending", "Webhook deliveries waiting to go out")

# Connections (shared/web/serve.py)
HTTP_CONNECTIONS_OPEN = Gauge("http_connections_open", "Open HTTP connections by service", ["service"])
HTTP_CONNECTIONS_REFUSED = Counter(
    "http_connections_refused",
    "Connections refused at accept by service and reason (per_ip, capacity)",
    ["service", "reason"],
)  # exported as http_connections_refused_total
HTTP_CONNECTION_TIMEOUTS = Counter(
    "http_connection_timeouts",
    "Connections closed because request headers or a body came too slowly",
    ["service", "phase"],
)  # exported as http_connection_timeouts_total
HTTP_ACCEPT_ERRORS = Counter(
    "http_accept_errors", "accept() failures for want of descriptors or memory"
)  # exported as http_accept_errors_total

SERVICE_LABEL = "service"
DEFAULT_PROCESS_METRICS_OWNER = "orchestrator"
_owner = DEFAULT_PROCESS_METRICS_OWNER


def set_process_metrics_owner(service: str) -> None:
    """Name the service whose ``/metrics`` carries the process-wide metrics."""
    global _owner
    _owner = service


def process_metrics_owner() -> str:
    return _owner


class ServiceView(Collector):
    """The registry as one service exposes it (a collector for ``generate_latest``)."""

    def __init__(self, service: str, with_process: bool) -> None:
        self.service = service
        self.with_process = with_process

    def collect(self) -> Iterable[Metric]:
        for family in REGISTRY.collect():
            samples = [
                s
                for s in family.samples
                if (
                    s.labels[SERVICE_LABEL] == self.service
                    if SERVICE_LABEL in s.labels
                    else self.with_process
                )
            ]
            if not samples and family.samples:
                continue  # every sample belongs to another service
            if not samples and not self.with_process:
                continue  # a family nothing has touched yet: listed once, by the owner
            kept = Metric(family.name, family.documentation, family.type, family.unit)
            kept.samples = samples
            yield kept


def render(service: str) -> tuple[bytes, str]:
    """``service``'s exposition text and its content type."""
    view = ServiceView(service, with_process=service == _owner)
    return generate_latest(view), CONTENT_TYPE_LATEST
